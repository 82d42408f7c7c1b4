/// One NUMA node as sysfs describes it.
package struct NUMANode: Sendable, Equatable {
    /// The kernel's node id (ids can be sparse: 0, 8, 250...).
    package let id: Int
    /// Every CPU the kernel lists for the node (online or not, usable or not).
    package let cpus: CPUList
    /// MemTotal of the node, nil where `nodeN/meminfo` is missing.
    package let memoryBytes: Int?
    /// Distance to each node id (10 = local), empty where `nodeN/distance` is missing.
    let distances: [Int: Int]
    /// The nodes whose CPUs access this node's memory best, per access class (`access0/initiators`, then
    /// `access1/initiators`; empty where sysfs has none): how a memory-only node is served.
    var accessInitiators: [[Int]] = []
}

/// CPUs and NUMA nodes of a machine, read from sysfs under a ``SystemRoot``, with a note for every
/// fallback taken.
package struct NUMATopology: Sendable, Equatable {
    /// Nodes by ascending id; a machine without NUMA information is one node 0 with every online CPU.
    package let nodes: [NUMANode]
    /// Online CPUs.
    package let online: CPUList
    /// Where `online` came from (a file, or the per-CPU files it was pieced from).
    let onlineSource: String
    /// CPUs present but offline: `cpu/present` (else the `cpuN` folders) minus the online ones. Unlike
    /// the kernel's `cpu/offline`, this leaves out CPUs that are possible but absent.
    package let offline: CPUList
    /// What could not be read and what was assumed instead.
    package let notes: [String]
    /// Node id → its memory tier (`/sys/devices/virtual/memory_tiering/memory_tierN/nodelist`), where present.
    var memoryTiers: [Int: Int] = [:]

    package static func read(root: SystemRoot) -> NUMATopology {
        var notes: [String] = []
        let (online, onlineSource) = readOnlineCPUs(root: root, notes: &notes)
        let nodes = readNodes(root: root, online: online, notes: &notes)
        let present = root.read("\(cpuDirectory)/present").flatMap { CPUList(parsing: $0) }?.cpus
            ?? root.numberedEntries(cpuDirectory, prefix: "cpu") ?? []
        // Both sources are ascending without repeats, and so is what the filter keeps.
        let offline = CPUList(sortedUnique: present.filter { !online.contains($0) })
        var tiers: [Int: Int] = [:]
        let tiering = "/sys/devices/virtual/memory_tiering"
        for tier in root.numberedEntries(tiering, prefix: "memory_tier") ?? [] {
            for node in root.read("\(tiering)/memory_tier\(tier)/nodelist").flatMap({ CPUList(parsing: $0) })?.cpus ?? [] {
                tiers[node] = tier
            }
        }
        return NUMATopology(nodes: nodes, online: online, onlineSource: onlineSource, offline: offline, notes: notes,
                            memoryTiers: tiers)
    }

    /// What memory a node holds, where sysfs says it: "dram" for a node with CPUs and memory; for a
    /// memory-only node, by its memory tier against the CPU nodes' tier (`memory_tiering/memory_tierN`,
    /// lower is faster): "hbm" below, "nvm" above (Linux puts CXL expanders and PMEM there alike);
    /// nil where nothing says.
    package func memoryKind(of node: NUMANode) -> String? {
        if !node.cpus.isEmpty { return node.memoryBytes == 0 ? nil : "dram" }
        guard let nodeTier = memoryTiers[node.id] else { return nil }
        let cpuTiers = nodes.filter { !$0.cpus.isEmpty }.compactMap { memoryTiers[$0.id] }
        guard let dramTier = cpuTiers.min() else { return nil }
        return nodeTier < dramTier ? "hbm" : nodeTier > dramTier ? "nvm" : "dram"
    }

    /// The node a CPU belongs to, nil for a CPU in no node.
    package func node(ofCPU cpu: Int) -> NUMANode? { nodes.first { $0.cpus.contains(cpu) } }

    static let cpuDirectory = "/sys/devices/system/cpu"
    static let nodeDirectory = "/sys/devices/system/node"

    /// `cpu/online` where present; else every `cpuN` folder whose `online` file is missing or 1 (old
    /// kernels, and CPUs that cannot go offline, have no such file).
    private static func readOnlineCPUs(root: SystemRoot, notes: inout [String]) -> (CPUList, String) {
        if let text = root.read("\(cpuDirectory)/online") {
            if let list = CPUList(parsing: text), !list.isEmpty { return (list, "\(cpuDirectory)/online") }
            notes.append("\(cpuDirectory)/online is malformed (\(text.debugDescription)); using cpuN/online files")
        }
        guard let numbers = root.numberedEntries(cpuDirectory, prefix: "cpu"), !numbers.isEmpty else {
            notes.append("no CPU list in \(root.resolve(cpuDirectory)); assuming CPU 0 alone")
            return (CPUList([0]), "assumed")
        }
        let online = numbers.filter { cpu in
            guard let flag = root.read("\(cpuDirectory)/cpu\(cpu)/online") else { return true }
            return flag.trimmingCharacters(in: " \n\0") != "0"
        }
        return (CPUList(online), "\(cpuDirectory)/cpuN/online")
    }

    private static func readNodes(root: SystemRoot, online: CPUList, notes: inout [String]) -> [NUMANode] {
        var ids = root.numberedEntries(nodeDirectory, prefix: "node") ?? []
        if let text = root.read("\(nodeDirectory)/online"), let onlineNodes = CPUList(parsing: text) {
            ids = ids.filter(onlineNodes.contains)
        }
        guard !ids.isEmpty else {
            notes.append("no NUMA nodes in \(root.resolve(nodeDirectory)); treating the machine as node 0")
            return [NUMANode(id: 0, cpus: online, memoryBytes: nil, distances: [:])]
        }
        let nodes = ids.map { id in
            let base = "\(nodeDirectory)/node\(id)"
            var cpus = CPUList([])
            if let text = root.read("\(base)/cpulist"), let list = CPUList(parsing: text) {
                cpus = list
            } else if let text = root.read("\(base)/cpumap"), let mask = CPUList(parsingMask: text) {
                cpus = mask
            } else {
                notes.append("node \(id) has no readable cpulist or cpumap; taken as CPU-less")
            }
            let distances: [Int: Int] = root.read("\(base)/distance").map { text in
                let values = text.split(whereSeparator: { " \n\0".contains($0) }).compactMap { Int($0) }
                return Dictionary(zip(ids, values), uniquingKeysWith: { first, _ in first })
            } ?? [:]
            let initiators = (0..<2).map { access in
                root.numberedEntries("\(base)/access\(access)/initiators", prefix: "node") ?? []
            }
            return NUMANode(id: id, cpus: cpus, memoryBytes: root.read("\(base)/meminfo").flatMap(parseMemTotal),
                            distances: distances, accessInitiators: initiators)
        }
        return consistent(nodes, online: online, notes: &notes)
    }

    /// Nodes whose CPU sets overlap cannot be true (a firmware bug): like hwloc, read the machine as one
    /// node holding every CPU (the nodes' and the online ones), with a note saying why.
    private static func consistent(_ nodes: [NUMANode], online: CPUList, notes: inout [String]) -> [NUMANode] {
        var owner: [Int: Int] = [:]
        for node in nodes {
            for cpu in node.cpus.cpus {
                if let first = owner[cpu] {
                    notes.append("nodes \(first) and \(node.id) both claim CPU \(cpu): the firmware's NUMA data is "
                                 + "inconsistent; read as one node holding every CPU (as hwloc does)")
                    let memory = nodes.allSatisfy { $0.memoryBytes != nil }
                        ? nodes.reduce(0) { $0 &+ ($1.memoryBytes ?? 0) } : nil
                    let cpus = CPUList(nodes.flatMap(\.cpus.cpus) + online.cpus)
                    return [NUMANode(id: nodes[0].id, cpus: cpus, memoryBytes: memory, distances: [:])]
                }
                owner[cpu] = node.id
            }
        }
        return nodes
    }

    /// "Node 0 MemTotal:   47925628 kB" → bytes.
    static func parseMemTotal(_ meminfo: String) -> Int? { meminfoBytes(meminfo, field: "MemTotal") }
}

/// A meminfo field in bytes, from `/proc/meminfo` ("MemAvailable:  123 kB") or a node's
/// ("Node 0 MemTotal:  123 kB"); a negative or overflowing size is not a size: nil.
func meminfoBytes(_ meminfo: String, field: String) -> Int? {
    let label = Substring(field + ":")
    for line in meminfo.split(separator: "\n") where line.contains(label) {
        let fields = line.split(separator: " ")
        if let index = fields.firstIndex(of: label), index + 1 < fields.count, let kilobytes = Int(fields[index + 1]), kilobytes >= 0 {
            let (bytes, overflow) = kilobytes.multipliedReportingOverflow(by: 1024)
            return overflow ? nil : bytes
        }
    }
    return nil
}
