import CKTaskShims

/// What bounds a job's threads on the live machine, from one reading shared by the engine, `ktask info`
/// and the tests: the usable CPUs (online ∩ affinity ∩ cgroup cpuset, ``CPUBudget/usable(online:affinity:cpuset:)``),
/// per node and in total, the CPU quota and whether the machine saves energy.
///
/// The affinity mask is read for every job (one system call). The cgroup, topology and energy files
/// take a dozen reads, so they are re-read only when the last reading is older than ``refreshInterval``:
/// a CPU hot-plugged or a process moved to another cgroup is seen within that time.
struct SystemLimits: Sendable {
    /// Threads the process may run at once: min(usable CPUs, ⌈quota⌉), at least 1.
    package let budget: Int
    package let energyRestricted: Bool
    /// Every node with the CPUs on it this process may use (empty for a node it may not run on); empty
    /// when the job did not ask for them (see ``current(nodeCPUs:)``).
    package let nodes: [NodeCPUs]
    /// Every node id the machine has, whether or not the job asked for node CPUs.
    let nodeIDs: [Int]
    /// More than one node has CPUs this process may use: where helpers run on the caller's node matters.
    let severalNodes: Bool
    /// The nodes memory may be placed on; nil: every node (``CPUBudget/allowedMemoryNodes``).
    package let allowedMemoryNodes: CPUList?

    static let refreshInterval = Duration.milliseconds(100)

    /// The part read from files, cached.
    private struct FileLimits: Sendable {
        let online: CPUList
        /// The cgroup cpuset where it restricts the online CPUs; nil where it holds them all.
        let cpuset: CPUList?
        let quotaCPUCount: Int?
        let energyRestricted: Bool
        let topology: [NUMANode]
        let severalNodes: Bool
        let allowedMemoryNodes: CPUList?
        let readAt: ContinuousClock.Instant
    }

    private static let cache = Locked<FileLimits?>(nil)

    /// When a job needs each node's usable CPUs (to pin helpers to nodes).
    enum NodeCPUsNeeded {
        case always
        /// Only where more than one node has usable CPUs (placement on the caller's node).
        case ifSeveralNodes
        case never
    }

    /// The limits now, with each node's usable CPUs where `nodeCPUs` asks for them.
    package static func current(nodeCPUs: NodeCPUsNeeded = .always) -> SystemLimits {
        let files = fileLimits()
        let withNodes = nodeCPUs == .always || (nodeCPUs == .ifSeveralNodes && files.severalNodes)
        let ids = files.topology.map(\.id)
        guard withNodes || files.cpuset != nil else {
            // The common case: no cpuset restriction, and node CPUs not needed. One system call.
            return SystemLimits(budget: budget(usable: affinityCount(), quota: files.quotaCPUCount),
                                energyRestricted: files.energyRestricted, nodes: [], nodeIDs: ids,
                                severalNodes: files.severalNodes, allowedMemoryNodes: files.allowedMemoryNodes)
        }
        let usable = CPUBudget.usable(online: files.online, affinity: Affinity.current(), cpuset: files.cpuset).cpus
        // A memory-only node's CPUs are those that serve it (its initiators', else the nearest).
        let nodes = withNodes ? files.topology.map { node in
            NodeCPUs(id: node.id, cpus: CPUBudget.servingCPUs(of: node, nodes: files.topology, usable: usable).cpus,
                     memoryOnly: node.cpus.isEmpty, distances: node.distances)
        } : []
        return SystemLimits(budget: budget(usable: usable.count, quota: files.quotaCPUCount),
                            energyRestricted: files.energyRestricted, nodes: nodes, nodeIDs: ids,
                            severalNodes: files.severalNodes, allowedMemoryNodes: files.allowedMemoryNodes)
    }

    /// How many CPUs the calling thread's mask holds: the per-job read, at most ``ThreadPriority/cacheNanoseconds``
    /// old (no system call most of the time, no allocation).
    private static func affinityCount() -> Int {
        let cached = CKTask_cached_affinity_count(ThreadPriority.cacheNanoseconds)
        if cached > 0 { return Int(cached) }
        return Affinity.withMask(of: 0) { words in words.reduce(0) { $0 + $1.nonzeroBitCount } } ?? 1
    }

    private static func budget(usable: Int, quota: Int?) -> Int { max(1, min(usable, quota ?? Int.max)) }

    private static func fileLimits() -> FileLimits {
        let now = ContinuousClock.now
        return cache.withLock { cached in
            if let cached, now - cached.readAt < refreshInterval { return cached }
            let cgroup = CgroupLimits.read(root: .live)
            let topology = NUMATopology.read(root: .live)
            let usableByFiles = CPUBudget.usable(online: topology.online, affinity: nil, cpuset: cgroup.cpuset).cpus
            let nodesWithCPUs = topology.nodes.filter { !$0.cpus.intersection(usableByFiles).isEmpty }.count
            // A cpuset holding every online CPU (the root's) restricts nothing: a job then needs only the
            // affinity count, not the list.
            let restricting = cgroup.cpuset.flatMap { cpuset in
                topology.online.cpus.allSatisfy(cpuset.contains) ? nil : cpuset
            }
            let fresh = FileLimits(online: topology.online, cpuset: restricting, quotaCPUCount: cgroup.quotaCPUCount,
                                   energyRestricted: EnergyState.read(root: .live).restricted, topology: topology.nodes,
                                   severalNodes: nodesWithCPUs > 1,
                                   allowedMemoryNodes: CPUBudget.allowedMemoryNodes(status: SystemRoot.live.read("/proc/self/status"), cgroup: cgroup,
                                                                                    topology: topology).nodes,
                                   readAt: now)
            cached = fresh
            return fresh
        }
    }
}

/// A node and the CPUs a job placed on it runs on: the node's own usable CPUs, or for a memory-only
/// node those that serve it (``CPUBudget/servingCPUs(of:)``).
struct NodeCPUs: Sendable, Equatable {
    package let id: Int
    package let cpus: CPUList
    /// The node has memory and no CPU of its own (HBM, NVM, CXL, GPU memory).
    let memoryOnly: Bool
    /// Distance to each node id (10 = local; sysfs `nodeN/distance`); empty where unknown.
    let distances: [Int: Int]

    init(id: Int, cpus: CPUList, memoryOnly: Bool = false, distances: [Int: Int] = [:]) {
        self.id = id
        self.cpus = cpus
        self.memoryOnly = memoryOnly
        self.distances = distances
    }
}
