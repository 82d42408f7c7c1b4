import CKTaskShims

/// The CPUs this process may really use, and why: online ∩ affinity mask ∩ cgroup cpuset, and the CPU
/// budget = min(that count, ⌈cgroup quota⌉). Every limit names the file it came from.
public struct CPUBudget: Sendable, Equatable {
    public let root: SystemRoot
    public let topology: NUMATopology
    /// The affinity mask: `sched_getaffinity` on the live machine; under another root, the root's
    /// `proc/self/status` `Cpus_allowed_list` where present, else every CPU.
    public let affinity: CPUList?
    public let cgroup: CgroupLimits
    /// online ∩ affinity ∩ cpuset; never empty.
    public let usable: CPUList
    /// How many threads may run at once: min(usable CPUs, ⌈quota ÷ period⌉), at least 1.
    public let budget: Int
    /// Every limit found, in the order they apply.
    public let limits: [CPULimit]
    /// Fallbacks taken, each with its reason.
    public let notes: [String]

    public static func read(root: SystemRoot = .live) -> CPUBudget {
        let topology = NUMATopology.read(root: root)
        var notes = topology.notes
        var limits = [CPULimit(kind: "online", source: topology.onlineSource, value: topology.online.description)]

        let affinity: CPUList?
        if root.isLive {
            affinity = Affinity.current()
            if let affinity { limits.append(CPULimit(kind: "affinity", source: "sched_getaffinity", value: affinity.description)) }
            else { notes.append("sched_getaffinity failed; affinity not applied") }
        } else if let list = Affinity.fromStatus(root: root) {
            affinity = list
            limits.append(CPULimit(kind: "affinity", source: "/proc/self/status Cpus_allowed_list", value: list.description))
        } else {
            affinity = nil
            notes.append("no /proc/self/status Cpus_allowed_list under \(root.path): affinity taken as every CPU")
        }

        let cgroup = CgroupLimits.read(root: root)
        notes += cgroup.notes
        limits += cgroup.limits

        var usable = topology.online
        if let affinity { usable = usable.intersection(affinity) }
        if let cpuset = cgroup.cpuset { usable = usable.intersection(cpuset) }
        if usable.isEmpty {
            notes.append("online ∩ affinity ∩ cpuset is empty; using the online CPUs")
            usable = topology.online
        }
        let budget = min(usable.count, cgroup.quotaCPUCount ?? Int.max)
        return CPUBudget(root: root, topology: topology, affinity: affinity, cgroup: cgroup, usable: usable,
                         budget: max(1, budget), limits: limits, notes: notes)
    }

    /// Each node's usable CPUs (empty for a node the process may not run on), every node listed.
    public var usableByNode: [(node: NUMANode, cpus: CPUList)] {
        topology.nodes.map { ($0, $0.cpus.intersection(usable)) }
    }
}

/// The calling process's CPU affinity mask.
enum Affinity {
    /// `sched_getaffinity(2)` of the calling thread; nil if it fails.
    static func current() -> CPUList? { of(thread: 0) }

    /// The main thread's mask: what `taskset` set for the process, as opposed to one thread's pinning.
    static func process() -> CPUList? { of(thread: CKTask_getpid()) }

    static func of(thread tid: Int32) -> CPUList? {
        var capacity = 256
        while true {
            var buffer = [Int32](repeating: 0, count: capacity)
            let count = Int(CKTask_affinity_cpus(tid, &buffer, Int32(capacity)))
            if count < 0 { return nil }
            if count <= capacity { return CPUList(buffer[..<count].map(Int.init)) }
            capacity = count
        }
    }

    /// How many CPUs the mask holds: the per-job read (one system call, no allocation).
    static func currentCount() -> Int {
        let count = CKTask_affinity_cpus(0, nil, 0)
        return count > 0 ? Int(count) : 1
    }

    /// Pins the calling thread to `cpus`; false if the kernel refused (e.g. none of them allowed).
    @discardableResult
    static func pinCurrentThread(to cpus: CPUList) -> Bool {
        let list = cpus.cpus.map(Int32.init)
        return list.withUnsafeBufferPointer { CKTask_set_thread_affinity($0.baseAddress, Int32($0.count)) } == 0
    }

    /// `Cpus_allowed_list:` of a snapshot's `proc/self/status`.
    static func fromStatus(root: SystemRoot) -> CPUList? {
        guard let status = root.read("/proc/self/status") else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("Cpus_allowed_list:") {
            return CPUList(parsing: String(line.dropFirst("Cpus_allowed_list:".count)))
        }
        return nil
    }
}
