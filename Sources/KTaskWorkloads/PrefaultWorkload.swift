import CKTaskWorkloadShims
import KTask
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Faults in every page of a fresh anonymous mapping, a chunk of pages per call: what starting a VM
/// with pinned (VFIO) memory does. Uses `MADV_POPULATE_WRITE` where the kernel has it (one system call
/// per chunk), else writes one byte per page.
public final class PrefaultWorkload: BenchWorkload, Sendable {
    /// How pages are faulted in.
    public enum Method: String, Sendable {
        case populateWrite = "MADV_POPULATE_WRITE"
        case touch = "touching one byte per page"
    }

    public let bytes: Int
    public let items: Int
    public let method: Method
    /// One range of pages per node, each bound to its node; nil: one range, placed by the options.
    public let nodes: [Int]?
    let pageSize = AnonymousMapping.pageSize

    /// Pages per PMD (2 MiB on x86-64): chunks aligned to it never share a page-table page.
    static let pagesPerPageTable = 512
    public var minChunk: Int { Self.pagesPerPageTable }
    public var align: Int { Self.pagesPerPageTable }

    public init(bytes: Int, nodes: [Int]? = nil) throws(WorkloadError) {
        guard bytes >= pageSize else { throw .sizeTooSmall(workload: "prefault", size: bytes, minimum: pageSize) }
        self.bytes = bytes - bytes % pageSize
        self.items = self.bytes / pageSize
        self.method = Self.kernelHasPopulateWrite() ? .populateWrite : .touch
        self.nodes = nodes
    }

    public var summary: String {
        "prefault \(bytes) bytes (\(items) pages) by \(method.rawValue)"
            + (nodes.map { ", a range per node \($0.map(String.init).joined(separator: ","))" } ?? "")
    }

    public func prepareRun() throws -> PreparedRun {
        let mapping = try AnonymousMapping(bytes: bytes)
        let base = UInt(bitPattern: mapping.base)
        return PreparedRun(
            perNode: try nodes.map { try bindPerNode(mapping, nodes: $0) },
            body: { [pageSize, method] pages in try Self.prefault(base: base, pages: pages, pageSize: pageSize, method: method) },
            // The check holds the mapping: it is unmapped when the run is dropped.
            check: { [items] in try Self.verifyResident(mapping, pages: items) })
    }

    /// One range of pages per node, each bound to its node before it is faulted in.
    func bindPerNode(_ mapping: AnonymousMapping, nodes: [Int]) throws -> [KTask.NodeRange] {
        let ranges = splitPerNode(items, nodes: nodes, align: Self.pagesPerPageTable)
        for part in ranges where !part.range.isEmpty {
            let start = mapping.base + part.range.lowerBound * pageSize
            try KTask.NodeMemory.bind(UnsafeMutableRawBufferPointer(start: start, count: part.range.count * pageSize), to: [part.node])
        }
        return ranges
    }

    /// Faults in a whole mapping with ktask (set-up for other workloads); with `nodes`, one range per
    /// node, each bound to its node.
    static func prefault(_ mapping: AnonymousMapping, nodes: [Int]? = nil) throws {
        let workload = try PrefaultWorkload(bytes: mapping.bytes, nodes: nodes)
        let base = UInt(bitPattern: mapping.base)
        let options = KTask.Options(minChunk: pagesPerPageTable, align: pagesPerPageTable)
        let body: @Sendable (Range<Int>) throws -> Void = { [pageSize = workload.pageSize, method = workload.method] pages in
            try prefault(base: base, pages: pages, pageSize: pageSize, method: method)
        }
        if let nodes {
            try KTask.run(perNode: try workload.bindPerNode(mapping, nodes: nodes), options: options, body)
        } else {
            try KTask.run(0..<workload.items, options: options, body)
        }
    }

    static func prefault(base: UInt, pages: Range<Int>, pageSize: Int, method: Method) throws(WorkloadError) {
        let start = UnsafeMutableRawPointer(bitPattern: base + UInt(pages.lowerBound * pageSize))!
        switch method {
        case .populateWrite:
            if madvise(start, pages.count * pageSize, CKTask_MADV_POPULATE_WRITE()) != 0 {
                throw .prefaultFailed(errno: errno)
            }
        case .touch:
            for page in 0..<pages.count {
                start.storeBytes(of: 1, toByteOffset: page * pageSize, as: UInt8.self)
            }
        }
    }

    /// Every page must be resident after the job (mincore).
    static func verifyResident(_ mapping: AnonymousMapping, pages items: Int) throws(WorkloadError) {
        var vector = [UInt8](repeating: 0, count: items)
        guard mincore(mapping.base, mapping.bytes, &vector) == 0 else {
            throw .wrongResult(workload: "prefault", detail: "mincore failed (errno \(errno))")
        }
        if let missing = vector.firstIndex(where: { $0 & 1 == 0 }) {
            throw .wrongResult(workload: "prefault", detail: "page \(missing) of \(items) is not resident")
        }
    }

    static func kernelHasPopulateWrite() -> Bool {
        guard let mapping = try? AnonymousMapping(bytes: AnonymousMapping.pageSize) else { return false }
        return madvise(mapping.base, mapping.bytes, CKTask_MADV_POPULATE_WRITE()) == 0
    }
}
