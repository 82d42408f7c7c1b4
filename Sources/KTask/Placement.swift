extension KTask {
    /// Where a job's helper threads run.
    public enum Placement: Sendable, Equatable, CustomStringConvertible {
        /// The caller's NUMA node first, then the nearest nodes (the default), as the kernel's ktask did:
        /// helpers fill the usable CPUs of the node the calling thread is on (where its memory most likely
        /// is), and a job with more threads than that spills to the other nodes in order of distance (equally
        /// near nodes share by their CPUs), each lane pinned to its node. On a machine with one node that has
        /// usable CPUs, this is the same as ``anywhere``.
        case callerNode
        /// Only the caller's node: a job never uses more threads than that node's usable CPUs (work whose
        /// memory must stay local).
        case callerNodeOnly
        /// On these nodes: helpers are spread over them in proportion to their usable CPUs, each pinned to
        /// its node's usable CPUs. The calling thread stays where it is.
        case nodes([Int])
        /// Wherever the scheduler puts them.
        case anywhere

        /// A one-line account for logs and error messages.
        public var description: String {
            switch self {
            case .callerNode: "the caller's node, then the nearest"
            case .callerNodeOnly: "the caller's node only"
            case .nodes(let ids): "nodes \(ids.map(String.init).joined(separator: ","))"
            case .anywhere: "any node"
            }
        }
    }
}

extension KTask {
    /// One node's share of a job that carries a range per node (the kernel's `ktask_run_numa`): its items
    /// are worked by threads pinned to that node first; a node whose range is done helps the others.
    public struct NodeRange: Sendable, Equatable {
        /// The NUMA node id (as in `/sys/devices/system/node/nodeN`).
        public let node: Int
        /// The node's work items.
        public let range: Range<Int>

        /// One node's share: `range`'s items are worked by threads on `node` first.
        public init(node: Int, range: Range<Int>) {
            self.node = node
            self.range = range
        }
    }
}
