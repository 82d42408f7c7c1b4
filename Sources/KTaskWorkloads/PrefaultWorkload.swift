import KTask
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Faults in every page of a fresh anonymous mapping, a chunk of pages per call: what starting a VM
/// with preallocated (or pinned, VFIO) memory does. Pages of the chosen mode: 4 KiB, transparent huge
/// pages (as QEMU asks for guest RAM) or hugetlb 2 MiB / 1 GiB. Uses `MADV_POPULATE_WRITE` where the
/// kernel has it (one system call per chunk), else touches each page once (an atomic OR of 0: a write fault that changes no byte).
public final class PrefaultWorkload: BenchWorkload, Sendable {
    /// How pages are faulted in.
    public enum Method: String, Sendable {
        case populateWrite = "MADV_POPULATE_WRITE"
        case touch = "touching one byte per page"
    }

    public let bytes: Int
    /// Pages of `pageMode`.
    public let items: Int
    public let method: Method
    public let pageMode: KTask.PageMode
    /// One range of pages per node, each bound to its node; nil: one range, placed by the options.
    public let nodes: [Int]?
    let pageSize: Int

    /// Pages per PMD (2 MiB on x86-64): chunks aligned to it never share a page-table page.
    static let pagesPerPageTable = 512
    /// Chunks of at least 2 MiB, aligned to it: a page-table page of 4 KiB pages, or whole huge pages.
    public var minChunk: Int { max(1, (2 << 20) / pageSize) }
    public var align: Int { minChunk }

    public init(bytes: Int, nodes: [Int]? = nil, pageMode: KTask.PageMode = .base) throws(WorkloadError) {
        pageSize = pageMode.pageSize
        guard bytes >= pageSize else { throw .sizeTooSmall(workload: "prefault", size: bytes, minimum: pageSize) }
        self.bytes = bytes - bytes % pageSize
        self.items = self.bytes / pageSize
        self.method = MemoryPopulator.kernelHasPopulate ? .populateWrite : .touch
        self.nodes = nodes
        self.pageMode = pageMode
    }

    public var summary: String {
        "prefault \(bytes) bytes (\(items) pages of \(pageMode)) by \(method.rawValue)"
            + (nodes.map { ", a range per node \($0.map(String.init).joined(separator: ","))" } ?? "")
    }

    public func prepareRun() throws -> PreparedRun {
        let memory = try KTask.Memory(bytes: bytes, pages: pageMode)
        // A size beyond free memory or the cgroup's limit is an error with numbers, not an OOM kill.
        if !pageMode.isHugetlb { try MemoryHeadroom.check(needed: bytes) }
        let populate = MemoryPopulator(base: UInt(bitPattern: memory.base), pageSize: pageSize, write: true)
        return PreparedRun(
            perNode: try nodes.map { try bindPerNode(base: memory.base, nodes: $0) },
            body: { pages in try populate(pages) },
            // The check holds the memory: it is unmapped when the run is dropped.
            check: { try Self.verifyResident(memory.buffer) })
    }

    /// One range of pages per node, each bound to its node before it is faulted in.
    func bindPerNode(base: UnsafeMutableRawPointer, nodes: [Int]) throws -> [KTask.NodeRange] {
        let ranges = splitPerNode(items, nodes: nodes, align: align)
        for part in ranges where !part.range.isEmpty {
            let start = base + part.range.lowerBound * pageSize
            try KTask.NodeMemory.bind(UnsafeMutableRawBufferPointer(start: start, count: part.range.count * pageSize), to: [part.node])
        }
        return ranges
    }

    /// Faults in a whole mapping with ktask (set-up for other workloads); with `nodes`, one range per
    /// node, each bound to its node.
    static func prefault(_ mapping: AnonymousMapping, nodes: [Int]? = nil) throws {
        let workload = try PrefaultWorkload(bytes: mapping.bytes, nodes: nodes)
        let populate = MemoryPopulator(base: UInt(bitPattern: mapping.base), pageSize: workload.pageSize, write: true)
        let options = KTask.Options(minChunk: workload.minChunk, align: workload.align)
        if let nodes {
            try KTask.run(perNode: try workload.bindPerNode(base: mapping.base, nodes: nodes), options: options) { try populate($0) }
        } else {
            try KTask.run(0..<workload.items, options: options) { try populate($0) }
        }
    }

    /// Every page must be resident after the job (mincore).
    static func verifyResident(_ buffer: UnsafeMutableRawBufferPointer) throws(WorkloadError) {
        let page = AnonymousMapping.pageSize
        var vector = [UInt8](repeating: 0, count: buffer.count / page)
        guard mincore(buffer.baseAddress, buffer.count, &vector) == 0 else {
            throw .wrongResult(workload: "prefault", detail: "mincore failed (errno \(errno))")
        }
        if let missing = vector.firstIndex(where: { $0 & 1 == 0 }) {
            throw .wrongResult(workload: "prefault", detail: "page \(missing) of \(vector.count) is not resident")
        }
    }
}
