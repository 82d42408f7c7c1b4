import CKTaskShims

#if canImport(Glibc)
import Glibc
#endif

/// Puts memory on NUMA nodes, and says where its pages are: so that the pages a job touches land on
/// the node whose threads touch them.
public enum NodeMemory {
    /// Binds a region (page-aligned, e.g. from mmap) to `nodes` with `mbind(MPOL_BIND)`: pages faulted
    /// in afterwards are allocated only there.
    public static func bind(_ region: UnsafeMutableRawBufferPointer, to nodes: [Int]) throws(KTaskError) {
        guard !nodes.isEmpty else { throw .noNodes }
        guard let base = region.baseAddress, region.count > 0 else { return }
        let ids = nodes.map(Int32.init)
        let rc = ids.withUnsafeBufferPointer { CKTask_mbind_nodes(base, UInt(region.count), $0.baseAddress, Int32($0.count)) }
        if rc != 0 { throw .memoryPolicyFailed(call: "mbind", errno: errno) }
    }

    /// The node of each page of a region (first byte of each page): a node id, or nil for a page not
    /// faulted in or not queryable.
    public static func nodes(ofPagesIn region: UnsafeRawBufferPointer, pageSize: Int) throws(KTaskError) -> [Int?] {
        guard let base = region.baseAddress, region.count > 0 else { return [] }
        let count = (region.count + pageSize - 1) / pageSize
        var pages = (0..<count).map { Optional(UnsafeMutableRawPointer(mutating: base + $0 * pageSize)) }
        var status = [Int32](repeating: 0, count: count)
        let rc = CKTask_page_nodes(UInt(count), &pages, &status)
        if rc != 0 { throw .memoryPolicyFailed(call: "move_pages", errno: errno) }
        return status.map { $0 >= 0 ? Int($0) : nil }
    }
}
