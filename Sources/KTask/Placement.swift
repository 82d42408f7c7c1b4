/// Where a job's helper threads run.
public enum Placement: Sendable, Equatable, CustomStringConvertible {
    /// On the NUMA node of the CPU the calling thread is on (the default). On a machine with one node
    /// that has usable CPUs, this is the same as ``anywhere``.
    case callerNode
    /// On these nodes: helpers are spread over them in proportion to their usable CPUs, each pinned to
    /// its node's usable CPUs. The calling thread stays where it is.
    case nodes([Int])
    /// Wherever the scheduler puts them.
    case anywhere

    public var description: String {
        switch self {
        case .callerNode: "the caller's node"
        case .nodes(let ids): "nodes \(ids.map(String.init).joined(separator: ","))"
        case .anywhere: "any node"
        }
    }
}

/// One node's share of a job that carries a range per node (the kernel's `ktask_run_numa`): its items
/// are worked by threads pinned to that node first; a node whose range is done helps the others.
public struct NodeRange: Sendable, Equatable {
    public let node: Int
    public let range: Range<Int>

    public init(node: Int, range: Range<Int>) {
        self.node = node
        self.range = range
    }
}

/// A node and the CPUs on it the process may use.
struct NodeCPUs: Sendable, Equatable {
    let id: Int
    let cpus: CPUList
}

/// How one job's threads are spread: for each lane (a node, or anywhere), how many helpers, pinned to
/// which CPUs, starting on which part of the job. Pure: computed from the topology and limits.
struct LanePlan: Equatable {
    struct Lane: Equatable {
        /// The node the lane's helpers count against (per-node caps); nil for an unpinned lane.
        let node: Int?
        /// The CPUs its helpers are pinned to; nil: not pinned.
        let cpus: CPUList?
        /// Helpers wanted on this lane.
        let helpers: Int
        /// The part of the job (its range, for a per-node job) the lane's helpers start on.
        let part: Int
    }

    let lanes: [Lane]
    /// The part the calling thread starts on.
    let callerPart: Int

    var helpers: Int { lanes.reduce(0) { $0 + $1.helpers } }

    /// Spreads a single-range job. `threads` is already bounded by maxThreads, the budget and the
    /// useful thread count; a node placement bounds it further by the nodes' usable CPUs.
    static func single(placement: Placement, threads: Int, callerCPU: Int, nodes: [NodeCPUs]) throws(KTaskError) -> LanePlan {
        let usableNodes = nodes.filter { !$0.cpus.isEmpty }
        switch placement {
        case .anywhere:
            return LanePlan(lanes: [Lane(node: nil, cpus: nil, helpers: threads - 1, part: 0)], callerPart: 0)
        case .callerNode:
            guard usableNodes.count > 1, let home = usableNodes.first(where: { $0.cpus.contains(callerCPU) }) else {
                return try single(placement: .anywhere, threads: threads, callerCPU: callerCPU, nodes: nodes)
            }
            let helpers = min(threads, home.cpus.count) - 1
            return LanePlan(lanes: [Lane(node: home.id, cpus: home.cpus, helpers: helpers, part: 0)], callerPart: 0)
        case .nodes(let ids):
            let chosen = try resolve(ids, nodes: nodes)
            var capacity = chosen.map { node in node.cpus.count - (node.cpus.contains(callerCPU) ? 1 : 0) }
            let helpers = spread(threads - 1, over: &capacity)
            let lanes = chosen.indices.map { Lane(node: chosen[$0].id, cpus: chosen[$0].cpus, helpers: helpers[$0], part: 0) }
            return LanePlan(lanes: lanes.filter { $0.helpers > 0 }, callerPart: 0)
        }
    }

    /// Spreads a job with one range per node: each node gets up to its usable CPUs (and the useful
    /// threads for its range), the caller counting on its own node; `threadLimit` bounds the total.
    static func perNode(_ parts: [(node: Int, usefulThreads: Int)], threadLimit: Int, callerCPU: Int,
                        nodes: [NodeCPUs]) throws(KTaskError) -> LanePlan {
        let chosen = try resolve(parts.map(\.node), nodes: nodes)
        let callerPart = chosen.firstIndex { $0.cpus.contains(callerCPU) } ?? 0
        var capacity = parts.indices.map { index in
            min(chosen[index].cpus.count, parts[index].usefulThreads) - (index == callerPart ? 1 : 0)
        }
        capacity = capacity.map { max(0, $0) }
        let helpers = spread(threadLimit - 1, over: &capacity)
        let lanes = parts.indices.map { Lane(node: chosen[$0].id, cpus: chosen[$0].cpus, helpers: helpers[$0], part: $0) }
        return LanePlan(lanes: lanes, callerPart: callerPart)
    }

    /// The nodes named, each with usable CPUs; a typed error for an unknown or CPU-less one.
    static func resolve(_ ids: [Int], nodes: [NodeCPUs]) throws(KTaskError) -> [NodeCPUs] {
        guard !ids.isEmpty else { throw .noNodes }
        var result: [NodeCPUs] = []
        for id in ids {
            guard let node = nodes.first(where: { $0.id == id }) else {
                throw .unknownNode(id, available: nodes.map(\.id))
            }
            guard !node.cpus.isEmpty else { throw .nodeWithoutUsableCPUs(id) }
            result.append(node)
        }
        return result
    }

    /// Hands out `count` helpers one at a time to the lane with the most room left (ties: the first),
    /// so that they follow each node's share of CPUs.
    static func spread(_ count: Int, over capacity: inout [Int]) -> [Int] {
        var given = [Int](repeating: 0, count: capacity.count)
        for _ in 0..<max(0, count) {
            guard let index = capacity.indices.max(by: { capacity[$0] < capacity[$1] || (capacity[$0] == capacity[$1] && $0 > $1) }),
                  capacity[index] > 0
            else { break }
            given[index] += 1
            capacity[index] -= 1
        }
        return given
    }
}
