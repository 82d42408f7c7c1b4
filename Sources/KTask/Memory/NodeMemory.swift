import CKTaskShims

#if canImport(Glibc)
import Glibc
#endif

extension KTask {
    /// Puts memory on NUMA nodes, and says where its pages are: so that the pages a job touches land on
    /// the node whose threads touch them.
    public enum NodeMemory {
        /// Binds a region (page-aligned, e.g. from mmap) to `nodes` with `mbind(MPOL_BIND)`: pages faulted
        /// in afterwards are allocated only there. A memory-only node (HBM, NVM, CXL) is bound like any other.
        /// - Throws: ``KTask/Error/memoryNodeNotAllowed(_:allowed:)`` for a node the process may not place
        ///   memory on, naming the allowed ones; ``KTask/Error/memoryPolicyFailed(call:errno:)`` if mbind fails.
        public static func bind(_ region: UnsafeMutableRawBufferPointer, to nodes: [Int]) throws(KTask.Error) {
            guard !nodes.isEmpty else { throw .noNodes }
            guard let base = region.baseAddress, region.count > 0 else { return }
            guard let highest = nodes.max(), nodes.allSatisfy({ $0 >= 0 }), highest < 1 << 20 else {
                throw .unknownNode(nodes.first { $0 < 0 || $0 >= 1 << 20 } ?? -1, available: SystemLimits.current().nodeIDs)
            }
            let limits = SystemLimits.current(nodeCPUs: .never)
            try check(nodes, available: limits.nodeIDs, allowed: limits.allowedMemoryNodes)
            var mask = [UInt](repeating: 0, count: highest / UInt.bitWidth + 1)
            for node in nodes { mask[node / UInt.bitWidth] |= 1 << UInt(node % UInt.bitWidth) }
            // maxnode counts bits; the kernel ignores the last one, hence + 1.
            let rc = CKTask_mbind_bind(base, UInt(region.count), mask, UInt(mask.count * UInt.bitWidth + 1))
            if rc != 0 { throw .memoryPolicyFailed(call: "mbind", errno: errno) }
        }

        /// Throws unless every node exists and may hold this process's memory (`allowed` nil: every node).
        static func check(_ nodes: [Int], available: [Int], allowed: CPUList?) throws(KTask.Error) {
            if let unknown = nodes.first(where: { !available.contains($0) }) { throw .unknownNode(unknown, available: available) }
            if let allowed, let refused = nodes.first(where: { !allowed.contains($0) }) {
                throw .memoryNodeNotAllowed(refused, allowed: allowed.cpus)
            }
        }

        /// Pages of a region on each node (``nodes(ofPagesIn:pageSize:)`` counted): where a populate placed on
        /// nodes put its pages. Pages not mapped in this process or not queryable are left out, and a region
        /// that cannot be queried gives none: for a file's pages (some allocated through its descriptor, not
        /// mapped here) use ``MappedFile/pageCountsPerNode()``. One `move_pages` query per page: not free for
        /// a large region.
        public static func pageCounts(in region: UnsafeRawBufferPointer, pageSize: Int) -> [Int: Int] {
            var counts: [Int: Int] = [:]
            for node in (try? nodes(ofPagesIn: region, pageSize: pageSize)) ?? [] {
                if let node { counts[node, default: 0] += 1 }
            }
            return counts
        }

        /// The node of each page of a region (first byte of each page): a node id, or nil for a page not
        /// faulted in or not queryable.
        public static func nodes(ofPagesIn region: UnsafeRawBufferPointer, pageSize: Int) throws(KTask.Error) -> [Int?] {
            guard let base = region.baseAddress, region.count > 0 else { return [] }
            let count = (region.count + pageSize - 1) / pageSize
            var pages = (0..<count).map { Optional(UnsafeMutableRawPointer(mutating: base + $0 * pageSize)) }
            var status = [Int32](repeating: 0, count: count)
            let rc = CKTask_move_pages_query(UInt(count), &pages, &status)
            if rc != 0 { throw .memoryPolicyFailed(call: "move_pages", errno: errno) }
            return status.map { $0 >= 0 ? Int($0) : nil }
        }
    }
}

extension KTask.NodeRange {
    /// `count` items cut into one range per node, in order, each about `count / nodes.count` items with
    /// boundaries on multiples of `align` (the last range takes the rest): how a populate placed on nodes
    /// cuts its pages (2 MiB-aligned, so no chunk straddles two nodes' memory), and how the workloads cut
    /// their items to match.
    package static func split(_ count: Int, across nodes: [Int], align: Int) -> [KTask.NodeRange] {
        nodes.indices.map { index in
            let lower = count * index / nodes.count / align * align
            let upper = index == nodes.count - 1 ? count : count * (index + 1) / nodes.count / align * align
            return KTask.NodeRange(node: nodes[index], range: lower..<upper)
        }
    }
}
