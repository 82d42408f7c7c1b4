import Synchronization

/// What bounds a job's threads now: the CPU budget (affinity ∩ cgroup cpuset, CPU quota) and whether
/// the machine is saving energy. Asked for every job that could use helpers.
///
/// The affinity mask is read each time (one system call). The cgroup and energy files take a dozen
/// reads, so they are re-read when the last reading is older than ``refreshInterval``: a CPU hot-plugged
/// or a process moved to another cgroup is seen within that time.
struct JobLimits: Sendable {
    /// Threads the process may run at once (≥ 1).
    let budget: Int
    let energyRestricted: Bool
    /// Each NUMA node with its online CPUs inside the cgroup cpuset.
    let nodes: [NodeCPUs]

    static let refreshInterval = Duration.milliseconds(100)

    private struct SlowLimits: Sendable {
        let cpuset: CPUList?
        let quotaCPUCount: Int?
        let energyRestricted: Bool
        let nodes: [NodeCPUs]
        let readAt: ContinuousClock.Instant
    }

    private static let cache = Mutex<SlowLimits?>(nil)

    static func current() -> JobLimits {
        let now = ContinuousClock.now
        let slow = cache.withLock { cached -> SlowLimits in
            if let cached, now - cached.readAt < refreshInterval { return cached }
            let cgroup = CgroupLimits.read(root: .live)
            let topology = NUMATopology.read(root: .live)
            let nodes = topology.nodes.map { node in
                var cpus = node.cpus.intersection(topology.online)
                if let cpuset = cgroup.cpuset { cpus = cpus.intersection(cpuset) }
                return NodeCPUs(id: node.id, cpus: cpus)
            }
            // A cpuset holding every online CPU (the root's) restricts nothing: the per-job path then needs
            // only the affinity count, not the list.
            let restricting = cgroup.cpuset.flatMap { cpuset in
                topology.online.cpus.allSatisfy(cpuset.contains) ? nil : cpuset
            }
            let fresh = SlowLimits(cpuset: restricting, quotaCPUCount: cgroup.quotaCPUCount,
                                   energyRestricted: EnergyState.read(root: .live).restricted, nodes: nodes, readAt: now)
            cached = fresh
            return fresh
        }
        var usable: Int
        if let cpuset = slow.cpuset, let affinity = Affinity.current() {
            usable = affinity.intersection(cpuset).count
            if usable == 0 { usable = affinity.count }
        } else {
            usable = Affinity.currentCount()
        }
        return JobLimits(budget: max(1, min(usable, slow.quotaCPUCount ?? Int.max)),
                         energyRestricted: slow.energyRestricted, nodes: slow.nodes)
    }
}
