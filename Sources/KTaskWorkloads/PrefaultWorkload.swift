import KTask

/// Faults in every page of a fresh anonymous mapping with `KTask.populate`, as a user calls it: what
/// starting a VM with preallocated (or pinned, VFIO) memory does. Pages of the chosen mode: 4 KiB,
/// transparent huge pages (as QEMU asks for guest RAM) or hugetlb 2 MiB / 1 GiB. `MADV_POPULATE_WRITE` where
/// the kernel has it (one system call per chunk), else one touch per page (an atomic OR of 0: a write fault
/// that changes no byte). `ktask compare`'s peers run the same chunk function over the same chunks.
package final class PrefaultWorkload: BenchWorkload, Sendable {
    /// How pages are faulted in.
    package enum Method: String, Sendable {
        case populateWrite = "MADV_POPULATE_WRITE"
        case touch = "touching one byte per page"
    }

    package let bytes: Int
    /// Pages of `pageMode`.
    package let items: Int
    package let method: Method
    package let pageMode: KTask.PageMode
    /// One range of pages per node, each bound to its node; nil: one range, placed by the options.
    package let nodes: [Int]?

    /// KTask.populate's chunks: at least 2 MiB, aligned to it.
    package var minChunk: Int { KTask.pagesPerPopulateChunk(pageSize: pageMode.pageSize) }
    package var align: Int { minChunk }

    package init(bytes: Int, nodes: [Int]? = nil, pageMode: KTask.PageMode = .base) throws(WorkloadError) {
        let pageSize = pageMode.pageSize
        guard bytes >= pageSize else { throw .sizeTooSmall(workload: "prefault", size: bytes, minimum: pageSize) }
        self.bytes = bytes - bytes % pageSize
        self.items = self.bytes / pageSize
        self.method = MemoryPopulator.kernelHasPopulate ? .populateWrite : .touch
        self.nodes = nodes
        self.pageMode = pageMode
    }

    package var summary: String {
        "prefault \(bytes) bytes (\(items) pages of \(pageMode)) by \(method.rawValue)"
            + (nodes.map { ", a range per node \($0.map(String.init).joined(separator: ","))" } ?? "")
    }

    package func prepareRun() throws -> PreparedRun {
        let memory = try KTask.Memory(bytes: bytes, pages: pageMode)
        // A size beyond free memory or the cgroup's limit is an error with numbers, not an OOM kill: checked
        // here for the peers, which run the chunks without KTask.populate (which checks again, as for any user).
        if !pageMode.isHugetlb { try MemoryHeadroom.check(needed: bytes) }
        let populate = MemoryPopulator(base: UInt(bitPattern: memory.base), pageSize: pageMode.pageSize, write: true)
        let nodes = nodes
        return PreparedRun(
            perNode: nil,
            body: { pages in try populate(pages) },
            // The check holds the memory: it is unmapped when the run is dropped.
            check: { try Self.verifyResident(memory.buffer) },
            job: { options in
                if let nodes { try KTask.populate(memory.buffer, pageMode: memory.pageMode, onNodes: nodes, options: options) }
                else { try KTask.populate(memory, options: options) }
            })
    }

    /// Faults in a whole mapping with `KTask.populate` (set-up for other workloads); with `nodes`, one range
    /// per node, each bound to its node.
    static func prefault(_ mapping: AnonymousMapping, nodes: [Int]? = nil) throws {
        let region = UnsafeMutableRawBufferPointer(start: mapping.base, count: mapping.bytes)
        if let nodes {
            try KTask.populate(region, pageMode: .base, onNodes: nodes)
        } else {
            try KTask.populate(region, pageMode: .base)
        }
    }

    /// Every page must be resident after the job (mincore).
    static func verifyResident(_ buffer: UnsafeMutableRawBufferPointer) throws(WorkloadError) {
        let resident = KTask.residentBytes(buffer)
        if resident != buffer.count {
            throw .wrongResult(workload: "prefault", detail: "\(resident) of \(buffer.count) bytes resident afterwards")
        }
    }
}
