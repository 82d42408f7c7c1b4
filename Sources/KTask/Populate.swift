import CKTaskShims
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension KTask {
    /// Faults in every page of `memory` on the calling thread and helpers: with `write`, each page is
    /// allocated and zeroed (what starting a VM with preallocated RAM does); else read in (a file's page
    /// cache). Chunks are whole pages of the memory's page mode, at least 2 MiB, so no huge page is split
    /// between threads. Placement, cancellation and the other options work as for any job.
    ///
    /// Uses `MADV_POPULATE_WRITE`/`MADV_POPULATE_READ` (Linux 5.14+), which report an exhausted hugetlb pool
    /// or an out-of-memory cgroup as an error instead of a SIGBUS or the OOM killer; older kernels touch
    /// one byte per page.
    ///
    /// - Throws: ``KTask/Error/populateFailed(offset:reason:)`` naming the first byte that could not be
    ///   populated and why; ``KTask/Error`` for invalid options or cancellation.
    @discardableResult
    @available(*, noasync, message: "blocks the calling thread; run it from a synchronous context")
    public static func populate(_ memory: Memory, write: Bool = true, options: KTask.Options = KTask.Options()) throws -> KTask.Report {
        try populate(memory.buffer, pageMode: memory.pageMode, write: write, options: options)
    }

    /// Faults in a region the caller mapped itself, in pages of `pageMode`; as ``populate(_:write:options:)-(KTask.Memory,_,_)``.
    /// The region must start and end on page boundaries of `pageMode`.
    @discardableResult
    @available(*, noasync, message: "blocks the calling thread; run it from a synchronous context")
    public static func populate(_ region: UnsafeMutableRawBufferPointer, pageMode: PageMode, write: Bool = true,
                                options: KTask.Options = KTask.Options()) throws -> KTask.Report {
        let (populate, options) = try prepare(region, pageMode: pageMode, write: write, options: options)
        return try KTask.run(0..<(region.count / pageMode.pageSize), options: options) { pages in try populate(pages) }
    }

    /// What both populates need: the region checked (page boundaries), memory that is not resident yet
    /// checked to fit (the OOM killer gives no reason; hugetlb pages are already promised to the mapping by
    /// the pool), the chunk function, and chunks of at least 2 MiB — a page-table page of base pages, or
    /// whole huge pages.
    static func prepare(_ region: UnsafeMutableRawBufferPointer, pageMode: PageMode, write: Bool,
                        options: KTask.Options) throws(KTask.Error) -> (MemoryPopulator, KTask.Options) {
        let pageSize = pageMode.pageSize
        guard let base = region.baseAddress, Int(bitPattern: base) % pageSize == 0, region.count % pageSize == 0 else {
            throw .invalidParameter(name: "region", value: "\(region.count) bytes at \(region.baseAddress.map { "\($0)" } ?? "nil")",
                                    allowed: "a non-empty region on \(pageSize)-byte page boundaries")
        }
        if write && !pageMode.isHugetlb { try MemoryHeadroom.check(needed: region.count - residentBytes(region)) }
        var options = options
        let pagesPerChunk = max(1, (2 << 20) / pageSize)
        options.minChunk = max(options.minChunk, pagesPerChunk)
        options.align = max(options.align, pagesPerChunk)
        return (MemoryPopulator(base: UInt(bitPattern: base), pageSize: pageSize, write: write), options)
    }
}

extension KTask {
    /// What a populate placed on nodes did: the job's report, and the pages of the region on each node
    /// afterwards (read back from the kernel with `move_pages`).
    public struct PopulateReport: Sendable {
        public let report: KTask.Report
        /// Pages of the region's page mode on each node; a page the kernel could not place is not counted.
        public let pagesPerNode: [Int: Int]
        /// The CPUs the chunks ran on (`sched_getcpu`), to check that they stayed on the nodes.
        public let cpusUsed: [Int]
    }

    /// Populates `region` as one range per node in `nodes` (equal, 2 MiB-aligned parts, in order), each bound
    /// to its node first (mbind) and worked by threads on that node, as ``run(perNode:options:undo:_:)-954zg``
    /// does; the calling thread works from the nodes' CPUs for the job and gets its own mask back after, so
    /// every chunk runs on the nodes asked for.
    ///
    /// - Parameters:
    ///   - region: the memory, on page boundaries of `pageMode`.
    ///   - pageMode: the pages backing it.
    ///   - nodes: the nodes, one part of the region each.
    ///   - write: allocate the pages (else read them in).
    ///   - bindMemory: bind each part to its node; false for a file's page cache, which follows
    ///     the faulting thread's node instead.
    ///   - options: the job's options (chunks are at least 2 MiB whatever `minChunk` says).
    /// - Throws: ``KTask/Error/unknownNode(_:available:)`` and the other placement errors, before any work;
    ///   else as ``populate(_:pageMode:write:options:)``.
    @available(*, noasync, message: "blocks the calling thread; run it from a synchronous context")
    public static func populate(_ region: UnsafeMutableRawBufferPointer, pageMode: PageMode, onNodes nodes: [Int], write: Bool = true,
                                bindMemory: Bool = true, options: KTask.Options = KTask.Options()) throws -> PopulateReport {
        guard !nodes.isEmpty else { throw KTask.Error.noNodes }
        let system = SystemLimits.current(nodeCPUs: .always)
        _ = try LanePlan.resolve(nodes, nodes: system.nodes)
        let (populate, options) = try prepare(region, pageMode: pageMode, write: write, options: options)
        let pageSize = pageMode.pageSize
        let pages = region.count / pageSize
        let step = options.align
        var ranges: [KTask.NodeRange] = []
        for (index, node) in nodes.enumerated() {
            let lower = pages * index / nodes.count / step * step
            let upper = index == nodes.count - 1 ? pages : pages * (index + 1) / nodes.count / step * step
            ranges.append(KTask.NodeRange(node: node, range: lower..<upper))
            if bindMemory && upper > lower {
                try NodeMemory.bind(UnsafeMutableRawBufferPointer(rebasing: region[lower * pageSize..<upper * pageSize]), to: [node])
            }
        }
        let cpus = Mutex<Set<Int>>([])
        // The caller runs from the nodes' CPUs (their serving CPUs for memory-only nodes).
        let placed = CPUList(Array(Set(system.nodes.filter { nodes.contains($0.id) }.flatMap(\.cpus.cpus))).sorted())
        let own = Affinity.current()
        let pinned = own != nil && !placed.isEmpty && Affinity.pinCurrentThread(to: placed)
        defer { if pinned, let own { _ = Affinity.pinCurrentThread(to: own) } }
        let report = try run(perNode: ranges, options: options) { range in
            cpus.withLock { _ = $0.insert(Affinity.currentCPU()) }
            try populate(range)
        }
        return PopulateReport(report: report, pagesPerNode: NodeMemory.pageCounts(in: UnsafeRawBufferPointer(region), pageSize: pageSize),
                              cpusUsed: cpus.withLock { $0.sorted() })
    }
}

/// One chunk's populate: a pure function of the page range, callable from any thread.
package struct MemoryPopulator: Sendable {
    let base: UInt
    let pageSize: Int
    let write: Bool
    /// MADV_POPULATE_* where the kernel has them, else touching one byte per page.
    let usePopulate: Bool

    package init(base: UInt, pageSize: Int, write: Bool, usePopulate: Bool = kernelHasPopulate) {
        (self.base, self.pageSize, self.write, self.usePopulate) = (base, pageSize, write, usePopulate)
    }
    package static let kernelHasPopulate: Bool = {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard let probe = mmap(nil, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), probe != MAP_FAILED else { return false }
        defer { munmap(probe, page) }
        return madvise(probe, page, CKTask_MADV_POPULATE_WRITE()) == 0
    }()

    package func callAsFunction(_ pages: Range<Int>) throws(KTask.Error) {
        let start = UnsafeMutableRawPointer(bitPattern: base + UInt(pages.lowerBound * pageSize))!
        let length = pages.count * pageSize
        if usePopulate {
            var result: Int32
            repeat {
                result = madvise(start, length, write ? CKTask_MADV_POPULATE_WRITE() : CKTask_MADV_POPULATE_READ())
            } while result != 0 && errno == EINTR
            if result != 0 {
                throw .populateFailed(offset: pages.lowerBound * pageSize, reason: String(cString: strerror(errno)))
            }
        } else if write {
            for page in 0..<pages.count { start.storeBytes(of: 0, toByteOffset: page * pageSize, as: UInt8.self) }
        } else {
            for page in 0..<pages.count { _ = start.load(fromByteOffset: page * pageSize, as: UInt8.self) }
        }
    }
}
