import CKTaskShims

/// The CPUs this process may really use, and why: online ∩ affinity mask ∩ cgroup cpuset, and the CPU
/// budget = min(that count, ⌈cgroup quota⌉). Every limit names the file it came from.
package struct CPUBudget: Sendable, Equatable {
    package let root: SystemRoot
    package let topology: NUMATopology
    /// The affinity mask: `sched_getaffinity` on the live machine; under another root, the root's
    /// `proc/self/status` `Cpus_allowed_list` where present, else every CPU.
    package let affinity: CPUList?
    package let cgroup: CgroupLimits
    /// online ∩ affinity ∩ cpuset; never empty.
    package let usable: CPUList
    /// How many threads may run at once: min(usable CPUs, ⌈quota ÷ period⌉), at least 1.
    package let budget: Int
    /// Every limit found, in the order they apply.
    package let limits: [CPULimit]
    /// Fallbacks taken, each with its reason.
    package let notes: [String]
    /// The nodes this process may place memory on; nil: every node. From `Mems_allowed_list` in
    /// `/proc/self/status`, else the cgroup cpuset's mems.
    package let allowedMemoryNodes: CPUList?
    /// Where ``allowedMemoryNodes`` was read ("" where nothing restricts memory).
    package let allowedMemorySource: String

    package static func read(root: SystemRoot = .live) -> CPUBudget {
        let topology = NUMATopology.read(root: root)
        var notes = topology.notes
        var limits = [CPULimit(kind: "online", source: topology.onlineSource, value: topology.online.description)]

        // Read once: a snapshot's affinity mask and the memory nodes allowed both come from it.
        let status = root.read("/proc/self/status")
        let affinity: CPUList?
        if root.isLive {
            affinity = Affinity.current()
            if let affinity { limits.append(CPULimit(kind: "affinity", source: "sched_getaffinity", value: affinity.description)) }
            else { notes.append("sched_getaffinity failed; affinity not applied") }
        } else if let list = Self.list("Cpus_allowed_list", in: status) {
            affinity = list
            limits.append(CPULimit(kind: "affinity", source: "/proc/self/status Cpus_allowed_list", value: list.description))
        } else {
            affinity = nil
            notes.append("no /proc/self/status Cpus_allowed_list under \(root.path): affinity taken as every CPU")
        }

        let cgroup = CgroupLimits.read(root: root)
        notes += cgroup.notes
        limits += cgroup.limits

        let (usable, fallback) = Self.usable(online: topology.online, affinity: affinity, cpuset: cgroup.cpuset)
        if let fallback { notes.append(fallback) }
        let budget = min(usable.count, cgroup.quotaCPUCount ?? Int.max)
        let memory = allowedMemoryNodes(status: status, cgroup: cgroup, topology: topology)
        return CPUBudget(root: root, topology: topology, affinity: affinity, cgroup: cgroup, usable: usable,
                         budget: max(1, budget), limits: limits, notes: notes, allowedMemoryNodes: memory.nodes,
                         allowedMemorySource: memory.source)
    }

    /// The CPUs a process may use: online ∩ affinity ∩ cpuset (a nil limit restricts nothing). Where
    /// that is empty (a snapshot whose files disagree), online ∩ affinity, else the online CPUs, with a
    /// note saying which. The one rule for the engine (``SystemLimits``) and `ktask info`.
    static func usable(online: CPUList, affinity: CPUList?, cpuset: CPUList?) -> (cpus: CPUList, fallback: String?) {
        let allowed = affinity.map(online.intersection) ?? online
        let usable = cpuset.map(allowed.intersection) ?? allowed
        if !usable.isEmpty { return (usable, nil) }
        if !allowed.isEmpty { return (allowed, "online ∩ affinity ∩ cpuset is empty; using online ∩ affinity") }
        return (online, "online ∩ affinity is empty; using the online CPUs")
    }

    /// The CPUs a job placed on `node` runs on, and why: a node's own usable CPUs; for a memory-only node
    /// (the kernel lists no CPU for it: HBM, NVM, CXL or GPU memory) the usable CPUs of the nodes that
    /// access it best (`access0` initiators, else `access1`), else of the nodes at the smallest distance.
    package func servingCPUs(of node: NUMANode) -> (cpus: CPUList, reason: String) {
        Self.servingCPUs(of: node, nodes: topology.nodes, usable: usable)
    }

    /// ``servingCPUs(of:)`` for any set of nodes and usable CPUs: the one rule for the engine and `ktask info`.
    static func servingCPUs(of node: NUMANode, nodes: [NUMANode], usable: CPUList) -> (cpus: CPUList, reason: String) {
        guard node.cpus.isEmpty else { return (node.cpus.intersection(usable), "its own CPUs") }
        func usableCPUs(of ids: [Int]) -> CPUList {
            CPUList(nodes.filter { ids.contains($0.id) }.flatMap { $0.cpus.intersection(usable).cpus })
        }
        for (access, initiators) in node.accessInitiators.enumerated() where !initiators.isEmpty {
            let cpus = usableCPUs(of: initiators)
            if !cpus.isEmpty {
                return (cpus, "access\(access) initiators: node\(initiators.count > 1 ? "s" : "") "
                              + initiators.map(String.init).joined(separator: ","))
            }
        }
        let withCPUs = nodes.filter { !$0.cpus.intersection(usable).isEmpty && node.distances[$0.id] != nil }
        if let nearest = withCPUs.map({ node.distances[$0.id]! }).min() {
            let ids = withCPUs.filter { node.distances[$0.id] == nearest }.map(\.id)
            return (usableCPUs(of: ids), "nearest by distance (\(nearest)): node\(ids.count > 1 ? "s" : "") "
                                          + ids.map(String.init).joined(separator: ","))
        }
        return (usable, "no initiators or distances: every usable CPU")
    }

    /// The nodes memory may be placed on: `Mems_allowed_list` in `/proc/self/status` (what the kernel
    /// enforces), else the cgroup cpuset's mems; nil where every node is allowed.
    static func allowedMemoryNodes(status: String?, cgroup: CgroupLimits, topology: NUMATopology)
        -> (nodes: CPUList?, source: String) {
        var memory = (nodes: cgroup.memoryNodes, source: cgroup.memoryNodesSource)
        if let list = list("Mems_allowed_list", in: status), !list.isEmpty { memory = (list, "/proc/self/status Mems_allowed_list") }
        if let nodes = memory.nodes, topology.nodes.allSatisfy({ nodes.contains($0.id) }) { return (nil, "") }
        return memory
    }

    /// A list field (`Cpus_allowed_list`, `Mems_allowed_list`) of a `/proc/self/status` text.
    static func list(_ field: String, in status: String?) -> CPUList? {
        guard let status else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            return CPUList(parsing: String(line.dropFirst(field.count + 1)))
        }
        return nil
    }

    /// Whether this process may place memory on `node` (the cgroup cpuset's mems, or `Mems_allowed_list`).
    package func memoryAllowed(on node: Int) -> Bool { allowedMemoryNodes?.contains(node) ?? true }

    /// Each node's usable CPUs (empty for a node the process may not run on), every node listed.
    package var usableByNode: [(node: NUMANode, cpus: CPUList)] {
        topology.nodes.map { ($0, $0.cpus.intersection(usable)) }
    }
}
