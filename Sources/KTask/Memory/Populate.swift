import CKTaskShims
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension KTask {
    /// Faults in every page of `memory` on the calling thread and helpers: with `write`, each page is
    /// allocated (a new page zeroed, a page with data left as it is; what starting a VM with preallocated RAM does); else read in (a file's page
    /// cache). Chunks are whole pages of the memory's page mode, at least 2 MiB, so no huge page is split
    /// between threads. Placement, cancellation and the other options work as for any job.
    ///
    /// Uses `MADV_POPULATE_WRITE`/`MADV_POPULATE_READ` (Linux 5.14+), which report an exhausted hugetlb pool
    /// or an out-of-memory cgroup as an error instead of a SIGBUS or the OOM killer. Where the kernel does
    /// not know them (EINVAL), one access per page: a write is an atomic OR of 0 (a write fault that
    /// changes no byte), a read a volatile load; a SIGBUS there is caught and reported as an error.
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
        try populate(region, pageMode: pageMode, onNodes: nil, write: write, bindMemory: false, options: options, recording: nil)
    }

    /// Populates `region` as one range per node in `nodes` (equal, 2 MiB-aligned parts, in order), each bound
    /// to its node first (mbind) and worked by threads on that node, as ``run(perNode:options:undo:_:)-954zg``
    /// does; the calling thread works from the nodes' CPUs for the job and gets its own mask back after, so
    /// every chunk runs on the nodes asked for. ``KTask/NodeMemory/pageCounts(in:pageSize:)`` says afterwards
    /// where the pages are.
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
    @discardableResult
    @available(*, noasync, message: "blocks the calling thread; run it from a synchronous context")
    public static func populate(_ region: UnsafeMutableRawBufferPointer, pageMode: PageMode, onNodes nodes: [Int], write: Bool = true,
                                bindMemory: Bool = true, options: KTask.Options = KTask.Options()) throws -> KTask.Report {
        try populate(region, pageMode: pageMode, onNodes: nodes, write: write, bindMemory: bindMemory, options: options, recording: nil)
    }

    /// The region populates, placed on `nodes` or not, with where each chunk ran recorded into `record`
    /// where given (for `ktask check-placement`).
    @discardableResult
    package static func populate(_ region: UnsafeMutableRawBufferPointer, pageMode: PageMode, onNodes nodes: [Int]?, write: Bool,
                                 bindMemory: Bool, options: KTask.Options, recording record: ChunkPlacementRecord?) throws -> KTask.Report {
        let placement = try nodes.map { nodes throws(KTask.Error) in try NodePlacement(nodes, memory: bindMemory) }
        return try populate(region, pageMode: pageMode, with: prepare(region, pageMode: pageMode, write: write), placement: placement,
                            bindMemory: bindMemory, options: options, progress: nil, recording: record)
    }

    /// The chunk function for a region the caller mapped, after the checks: the region on page boundaries,
    /// and memory that is not resident yet fitting in what is free (the OOM killer gives no reason; hugetlb
    /// pages are already promised to the mapping by the pool).
    static func prepare(_ region: UnsafeMutableRawBufferPointer, pageMode: PageMode, write: Bool) throws(KTask.Error) -> MemoryPopulator {
        let pageSize = pageMode.pageSize
        guard let base = region.baseAddress, Int(bitPattern: base) % pageSize == 0, region.count % pageSize == 0 else {
            throw .invalidParameter(name: "region", value: "\(region.count) bytes at \(region.baseAddress.map { "\($0)" } ?? "nil")",
                                    allowed: "a non-empty region on \(pageSize)-byte page boundaries")
        }
        if write && !pageMode.isHugetlb { try MemoryHeadroom.check(needed: region.count - residentBytes(region)) }
        return MemoryPopulator(base: UInt(bitPattern: base), pageSize: pageSize, write: write)
    }

    /// The one populate, behind every public one and `ktask populate`/`check-placement`: the pages of `region`
    /// (checked) faulted in by `populator` in chunks of at least 2 MiB, as one job; with `placement`, as one
    /// range per node, each bound to its node first where `bindMemory`, the caller working from the nodes' CPUs.
    /// Chunks do nothing else unless asked: `progress` hears the bytes done, `record` where each chunk ran.
    static func populate(_ region: UnsafeMutableRawBufferPointer, pageMode: PageMode, with populator: MemoryPopulator,
                         placement: NodePlacement?, bindMemory: Bool, options: KTask.Options,
                         progress: ProgressReporter?, recording record: ChunkPlacementRecord?) throws -> KTask.Report {
        let pageSize = pageMode.pageSize
        var options = chunkOptions(options, pageSize: pageSize)
        // ``KTask/Options/progress`` counts a populate's bytes, piece by piece (not its chunks' pages): a
        // one-thread job of one chunk still moves.
        let fromOptions = progress == nil ? options.progress.map { ProgressReporter($0, total: region.count) } : nil
        let progress = progress ?? fromOptions
        options.progress = nil
        // At most 64 MiB per call (whole 2 MiB units): the kernel finishes a MADV_POPULATE call before a signal
        // with a handler runs (Ctrl-C's undo of `ktask populate`), and a one-thread job is one chunk.
        let unit = pagesPerPopulateChunk(pageSize: pageSize)
        let piecePages = max(unit, (64 << 20) / pageSize / unit * unit)
        let chunk: @Sendable (Range<Int>) throws -> Void = { pages in
            var start = pages.lowerBound
            while start < pages.upperBound {
                let end = pages.upperBound - start > piecePages ? start + piecePages : pages.upperBound
                try populator(start..<end)
                progress?.add((end - start) * pageSize)
                start = end
            }
            record?.record(chunkStart: pages.lowerBound)
        }
        let pages = region.count / pageSize
        guard let placement else {
            let report = try run(0..<pages, options: options, chunk)
            fromOptions?.finish(region.count)
            return report
        }
        let ranges = NodeRange.split(pages, across: placement.nodes, align: options.align)
        record?.ranges = ranges
        for part in ranges where bindMemory && !part.range.isEmpty {
            try NodeMemory.bind(UnsafeMutableRawBufferPointer(rebasing: region[part.range.lowerBound * pageSize..<part.range.upperBound * pageSize]),
                                to: [part.node])
        }
        let own = Affinity.current()
        let pinned = own != nil && !placement.cpus.isEmpty && Affinity.pinCurrentThread(to: placement.cpus)
        defer { if pinned, let own { _ = Affinity.pinCurrentThread(to: own) } }
        let report = try run(perNode: ranges, options: options, chunk)
        fromOptions?.finish(region.count)
        return report
    }

    /// Pages in a populate's smallest chunk, which chunks are also aligned to: 2 MiB, a page-table page of
    /// base pages or whole huge pages.
    package static func pagesPerPopulateChunk(pageSize: Int) -> Int { max(1, (2 << 20) / pageSize) }

    /// The options with chunks of at least ``pagesPerPopulateChunk(pageSize:)``, aligned to it.
    static func chunkOptions(_ options: KTask.Options, pageSize: Int) -> KTask.Options {
        var options = options
        let pagesPerChunk = pagesPerPopulateChunk(pageSize: pageSize)
        options.minChunk = max(options.minChunk, pagesPerChunk)
        options.align = max(options.align, pagesPerChunk)
        // A maxChunk below the 2 MiB floor bounds a chunk at the floor: the populate's own unit, not an error.
        options.maxChunk = options.maxChunk.map { max($0, options.minChunk) }
        return options
    }

    /// Where a populate's chunks ran, for a placement check (`ktask check-placement`, `ktask populate
    /// --nodes`): each chunk's CPU (`sched_getcpu`) and its thread's affinity mask (where it may run, which
    /// luck does not decide). Only where asked: a lock and a system call per chunk that a plain populate
    /// does not pay.
    package final class ChunkPlacementRecord: Sendable {
        /// Per thread (by tid): the node whose pages its first chunk was in, and its mask then.
        private let seen = Locked<(cpus: Set<Int>, masks: Set<[Int]>, firstChunk: [Int32: (node: Int?, mask: [Int])])>(([], [], [:]))
        private let nodeRanges = Locked<[NodeRange]>([])

        package init() {}

        /// The pages of each node, as the populate split them (set before any chunk runs).
        package internal(set) var ranges: [NodeRange] {
            get { nodeRanges.current }
            set { nodeRanges.withLock { $0 = newValue } }
        }

        func record(chunkStart: Int) {
            let cpu = Affinity.currentCPU(), mask = Affinity.current()?.cpus ?? []
            let node = ranges.first { $0.range.contains(chunkStart) }?.node
            let tid = CKTask_gettid()
            seen.withLock { seen in
                seen.cpus.insert(cpu)
                seen.masks.insert(mask)
                if seen.firstChunk[tid] == nil { seen.firstChunk[tid] = (node, mask) }
            }
        }

        /// For each thread that ran a chunk of a placed populate: the node whose pages its first chunk was in,
        /// and the CPUs it was pinned to. A node's helpers start on its pages (the engine's lanes), whenever
        /// they wake; a thread of another node comes to them only after its own. A decision, not a race.
        package var firstChunks: [(node: Int?, mask: [Int])] { Array(seen.current.firstChunk.values) }

        /// The CPUs chunks ran on, ascending.
        package var cpus: [Int] { seen.current.cpus.sorted() }
        /// The affinity masks of the threads that ran chunks.
        package var masks: [[Int]] { seen.current.masks.sorted { $0.lexicographicallyPrecedes($1) } }
    }
}

/// The nodes a populate is placed on, checked before anything is done: each known, with CPUs to run on.
struct NodePlacement {
    let nodes: [Int]
    /// The nodes' usable CPUs (a memory-only node's: those that serve it): the caller works from them.
    let cpus: CPUList

    /// `memory`: the pages will be bound to the nodes, so a node the cpuset keeps memory off is refused as
    /// that (before "no CPU this process may use", which it often also is).
    init(_ nodes: [Int], memory: Bool = false) throws(KTask.Error) {
        if memory {
            let limits = SystemLimits.current(nodeCPUs: .never)
            try KTask.NodeMemory.check(nodes, available: limits.nodeIDs, allowed: limits.allowedMemoryNodes)
        }
        let resolved = try LanePlan.resolve(nodes, nodes: SystemLimits.current(nodeCPUs: .always).nodes)
        self.nodes = nodes
        cpus = CPUList(resolved.flatMap(\.cpus.cpus))
    }
}


/// One chunk's populate: a pure function of the page range, callable from any thread.
package struct MemoryPopulator: Sendable {
    let base: UInt
    let pageSize: Int
    let write: Bool
    /// MADV_POPULATE_* where the kernel has them, else one access per page (``CKTask_touch_pages``).
    let usePopulate: Bool
    /// Where set, only these pages (sorted, disjoint) are faulted in: a file's data, not its holes.
    let onlyPages: [Range<Int>]?
    /// Where set, a write allocates through the file's descriptor on one thread at a time (see ``FileLane``).
    let fileLane: FileLane?

    package init(base: UInt, pageSize: Int, write: Bool, usePopulate: Bool = kernelHasPopulate, onlyPages: [Range<Int>]? = nil,
                 fileLane: FileLane? = nil) {
        (self.base, self.pageSize, self.write, self.usePopulate, self.onlyPages) = (base, pageSize, write, usePopulate, onlyPages)
        self.fileLane = write ? fileLane : nil
    }

    /// A write populate of a file through its descriptor instead of the mapping: the same pages allocated and
    /// zeroed, without setting a page-table entry per page in this process and tearing it down at unmap,
    /// which a process that maps the file later (QEMU) does not use. A hugetlbfs file the caller owns is
    /// fallocated (no byte of data changes; hugetlbfs files cannot be written); a tmpfs file only where the
    /// caller asked for zeros to be written (`ktask populate` for a file it has just created, whose bytes are
    /// zeros), never through the public API, whose caller may have written the file since. The kernel holds
    /// the file's inode lock through either call, so one thread at a time takes the lane and the others
    /// fault their chunks in through the mapping meanwhile. Measured on 1 GiB, 1 thread (this VM):
    /// hugetlbfs 2 MiB ~120 ms against ~140 ms; tmpfs 4 KiB ~300 ms against ~420 ms (MADV_POPULATE_WRITE and
    /// munmap).
    package final class FileLane: Sendable {
        enum Call { case fallocate, writeZeros }
        let descriptor: Int32
        let call: Call
        let pageSize: Int
        private let busy = Atomic<Bool>(false)

        init(descriptor: Int32, call: Call, pageSize: Int) { (self.descriptor, self.call, self.pageSize) = (descriptor, call, pageSize) }

        /// Allocates `bytes` from `offset` where no other thread is in the lane and the file still holds
        /// them: nil where the lane is taken or the file is now shorter (fault the range in through the
        /// mapping, which reports a short file), else the bytes allocated before an error (all of them, or
        /// fewer with errno set). Never past the file's size: a tmpfs file whose size is not a whole number
        /// of pages keeps it (writing up to its end allocates the last page).
        func allocate(offset: Int, bytes: Int) -> Int? {
            guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return nil }
            defer { busy.store(false, ordering: .releasing) }
            var status = stat()
            guard fstat(descriptor, &status) == 0 else { return nil }
            let size = Int(status.st_size)
            // The last page may end past the size; anything shorter is a file cut under the mapping.
            guard size > offset + bytes - pageSize else { return nil }
            let length = min(bytes, size - offset)
            let done = switch call {
            case .writeZeros: Int(CKTask_write_zeros(descriptor, Int64(offset), Int64(length)))
            case .fallocate: Int(CKTask_allocate_file_range(descriptor, Int64(offset), Int64(length), Int64(pageSize)))
            }
            return done == length ? bytes : done
        }
    }

    /// Whether to use MADV_POPULATE_*: false only where the one-page probe got EINVAL (advice unknown to
    /// this kernel). Any other failure (ENOMEM at a cgroup limit, EPERM from seccomp) says nothing about
    /// support, so the real call is made and its error reported.
    package static let kernelHasPopulate: Bool = {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard let probe = mmap(nil, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), probe != MAP_FAILED else { return true }
        defer { munmap(probe, page) }
        return CKTask_madvise_retrying(probe, page, CKTask_MADV_POPULATE_WRITE()) == 0 || errno != EINVAL
    }()

    static let basePageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    package func callAsFunction(_ pages: Range<Int>) throws(KTask.Error) {
        guard let onlyPages else { return try populate(pages) }
        // The first data range that ends after the chunk starts, then on while they start before it ends.
        var index = onlyPages.partitionPoint { $0.upperBound <= pages.lowerBound }
        while index < onlyPages.count, onlyPages[index].lowerBound < pages.upperBound {
            let part = pages.clamped(to: onlyPages[index])
            if !part.isEmpty { try populate(part) }
            index += 1
        }
    }

    func populate(_ pages: Range<Int>) throws(KTask.Error) {
        let start = UnsafeMutableRawPointer(bitPattern: base + UInt(pages.lowerBound * pageSize))!
        if let allocated = fileLane?.allocate(offset: pages.lowerBound * pageSize, bytes: pages.count * pageSize) {
            guard allocated < pages.count * pageSize else { return }
            // Both calls say how far they got: the first page not allocated.
            throw .populateFailed(offset: pages.lowerBound * pageSize + allocated / pageSize * pageSize, reason: Self.reason(errno: errno))
        }
        if usePopulate {
            let advice = write ? CKTask_MADV_POPULATE_WRITE() : CKTask_MADV_POPULATE_READ()
            guard CKTask_madvise_retrying(start, pages.count * pageSize, advice) != 0 else { return }
            let reason = Self.reason(errno: errno)
            throw .populateFailed(offset: pages.lowerBound * pageSize + Self.residentPrefix(start, bytes: pages.count * pageSize),
                                  reason: reason)
        }
        // Every base page, whatever the mode: memory meant for transparent huge pages may be backed by base
        // pages (THP off for it, no huge page free), and one touch per 2 MiB would then fault in 1 page of 512.
        // In a huge page the touches after the first find it present.
        let stride = Self.basePageSize
        let failed = CKTask_touch_pages(start, pages.count * (pageSize / stride), stride, write ? 1 : 0)
        if failed >= 0 {
            throw .populateFailed(offset: pages.lowerBound * pageSize + failed * stride,
                                  reason: "SIGBUS: no space (tmpfs full, hugetlb pool empty) or the file is shorter than the mapping")
        }
    }

    /// Bytes from `start` resident before the first page that is not (mincore): MADV_POPULATE_* works in
    /// order and stops at the page it could not fault in, so this is where a failed chunk failed. 0 where
    /// mincore cannot tell.
    static func residentPrefix(_ start: UnsafeMutableRawPointer, bytes: Int) -> Int {
        (KTask.residency(start, bytes: bytes)?.firstIndex { $0 & 1 == 0 } ?? 0) * basePageSize
    }

    /// What a MADV_POPULATE_* errno means here: EFAULT is the kernel's word for a fault that could not
    /// be served (SIGBUS or out of memory), not a bad address, since the range was mapped.
    static func reason(errno code: Int32) -> String {
        code == EFAULT || code == ENOSPC ? "no space: out of memory, the hugetlb pool empty or tmpfs full (or the file is shorter than the mapping)"
            : String(cString: strerror(code))
    }
}

extension Array where Element == Range<Int> {
    /// The index of the first range for which `isBefore` is false (ranges sorted, so it is monotonic).
    func partitionPoint(_ isBefore: (Range<Int>) -> Bool) -> Int {
        var (low, high) = (0, count)
        while low < high {
            let middle = (low + high) / 2
            if isBefore(self[middle]) { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
