import KTask
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A page descriptor laid out like the kernel's `struct page`: 64 bytes.
struct PageDescriptor {
    var flags: UInt64
    var refcount: Int32
    var mapcount: Int32
    var mapping: UInt64
    var index: UInt64
    /// The LRU list links, pointing at the descriptor itself (an empty list, as INIT_LIST_HEAD does).
    var lruNext: UInt64
    var lruPrev: UInt64
    var privateData: UInt64
    var memcgData: UInt64
}

/// Initialises an array of 64-byte page descriptors in a buffer that is already faulted in: what
/// the kernel's deferred struct-page initialisation does at boot. Memory-bandwidth bound.
package final class PageInitWorkload: BenchWorkload, Sendable {
    package let bytes: Int
    package let items: Int
    /// One range of descriptors per node, its memory bound there; nil: one range.
    package let nodes: [Int]?
    private let mapping: AnonymousMapping
    /// Changes every run, so a check can tell this run's writes from the last one's.
    private let nextGeneration = Atomic<UInt64>(0)

    /// Descriptors per chunk at least, and chunk alignment: 64 descriptors fill one 4 KiB page.
    static let minChunkDescriptors = 4096
    static let alignDescriptors = 64
    package var minChunk: Int { Self.minChunkDescriptors }
    package var align: Int { Self.alignDescriptors }

    package init(bytes: Int, nodes: [Int]? = nil) throws {
        let stride = MemoryLayout<PageDescriptor>.stride
        guard bytes >= stride else { throw WorkloadError.sizeTooSmall(workload: "init", size: bytes, minimum: stride) }
        self.items = bytes / stride
        self.bytes = items * stride
        self.nodes = nodes
        // Whole pages, so that per-node slices can be bound; the tail past `bytes` is never touched.
        let pageSize = AnonymousMapping.pageSize
        mapping = try AnonymousMapping(bytes: (self.bytes + pageSize - 1) / pageSize * pageSize)
        // Faulted in before any run (with ktask itself): this workload measures initialisation, not faults.
        try PrefaultWorkload.prefault(mapping, nodes: nodes)
    }

    package var summary: String {
        "initialise \(items) 64-byte page descriptors (\(bytes) bytes)"
            + (nodes.map { ", a range per node \($0.map(String.init).joined(separator: ","))" } ?? "")
    }

    package func prepareRun() throws -> PreparedRun {
        let generation = nextGeneration.add(1, ordering: .relaxed).newValue
        let flags = generation << 32 | 0x2  // generation tag | PG_referenced-like bit
        let base = UInt(bitPattern: mapping.base)
        // Per node: the same split as the memory's (64 descriptors per page), so page boundaries line up.
        let perNode = nodes.map {
            KTask.NodeRange.split(items, across: $0, align: Self.alignDescriptors * KTask.pagesPerPopulateChunk(pageSize: AnonymousMapping.pageSize))
        }
        return PreparedRun(
            perNode: perNode,
            body: { descriptors in Self.initialise(base: base, descriptors: descriptors, flags: flags) },
            check: { try self.verify(flags: flags) })
    }

    @inline(__always)
    static func initialise(base: UInt, descriptors: Range<Int>, flags: UInt64) {
        let table = UnsafeMutablePointer<PageDescriptor>(bitPattern: base)!
        for index in descriptors {
            let address = UInt64(base) &+ UInt64(index &* MemoryLayout<PageDescriptor>.stride)
            table[index] = PageDescriptor(
                flags: flags, refcount: 1, mapcount: -1, mapping: 0, index: UInt64(index),
                lruNext: address &+ 32, lruPrev: address &+ 32, privateData: 0, memcgData: 0)
        }
    }

    /// Checks 4096 descriptors spread over the table, both ends included.
    func verify(flags: UInt64) throws(WorkloadError) {
        let table = mapping.base.assumingMemoryBound(to: PageDescriptor.self)
        let step = max(1, items / 4096)
        for index in Array(Swift.stride(from: 0, to: items, by: step)) + [items - 1] {
            let descriptor = table[index]
            guard descriptor.flags == flags, descriptor.index == UInt64(index), descriptor.refcount == 1 else {
                throw .wrongResult(workload: "init", detail: "descriptor \(index) was not initialised by this run")
            }
        }
    }
}
