import CKTaskShims

#if canImport(Glibc)
import Glibc
#endif

extension KTask {
    /// A file mapped shared so that ``KTask/populate(_:write:options:)-(KTask.MappedFile,_,_)`` can fault its pages in on many
    /// threads: a file on disk is read into the page cache (what `vmtouch -t` does on one thread), a tmpfs or
    /// hugetlbfs file (a VM's `memory-backend-file` in `/dev/shm` or `/dev/hugepages`) gets its memory
    /// allocated. The mapping goes when the last reference does; the file stays.
    public final class MappedFile: @unchecked Sendable {
        /// What holds the file's pages.
        public enum Kind: Sendable, Equatable, CustomStringConvertible {
            /// A disk filesystem: pages are the page cache, read in, never written.
            case pageCache
            /// tmpfs or shmem: pages are memory.
            case tmpfs
            /// hugetlbfs: pages are huge pages of `pageSize` bytes from the reserved pool.
            case hugetlbfs(pageSize: Int)

            public var description: String {
                switch self {
                case .pageCache: "page cache"
                case .tmpfs: "tmpfs"
                case .hugetlbfs: "hugetlbfs"
                }
            }

            /// The pages this filesystem holds; nil for a hugetlbfs page size ktask has no mode for (arm64's
            /// 64 KiB, 32 MiB, 16 GiB).
            public var pageMode: PageMode? {
                switch self {
                case .pageCache, .tmpfs: .base
                case .hugetlbfs(let pageSize): PageMode.allCases.first { $0.isHugetlb && $0.pageSize == pageSize }
                }
            }

            /// The kind for fstatfs's filesystem type and block size (a hugetlbfs mount's page size).
            /// - Throws: ``KTask/Error/fileUnusable(path:reason:)`` for a hugetlbfs page size without a ``PageMode``.
            package init(filesystemType type: UInt, blockSize: Int, path: String) throws(KTask.Error) {
                switch type {
                case 0x0102_1994: self = .tmpfs  // TMPFS_MAGIC
                case 0x9584_58f6: self = .hugetlbfs(pageSize: blockSize)  // HUGETLBFS_MAGIC
                default: self = .pageCache
                }
                if pageMode == nil {
                    throw .fileUnusable(path: path, reason: "is on a hugetlbfs mount of \(blockSize >> 10) KiB pages; "
                                        + "ktask populates hugetlbfs files of 2 MiB or 1 GiB pages only")
                }
            }
        }

        public let path: String
        public let kind: Kind
        /// Pages of the file's filesystem: base pages, or the hugetlbfs mount's huge pages.
        public let pageMode: PageMode
        /// The first mapped byte.
        public let base: UnsafeMutableRawPointer
        /// Bytes mapped: the size asked for, or the file's, rounded up to whole pages.
        public let count: Int
        /// Whether the mapping is writable (memory-backed files opened to allocate pages).
        public let writable: Bool
        /// Whether this init created the file.
        public let created: Bool
        /// The file's size before this init extended it (0 for a file it created).
        public let originalSize: Int
        /// Whether the file is the caller's (its owner is the effective user, or this init created it):
        /// only such a file is extended, or bound to NUMA nodes by ``KTask/populate(_:onNodes:write:options:)``.
        public let ownedByCaller: Bool
        /// Open for the mapping's life: size, allocation and removal are decided from it, not the name.
        let file: FileOpening
        /// The size this init extended the file to; nil where it did not extend it.
        let extendedTo: Int?

        /// Maps `path` shared, after one open of it that follows no symbolic link and waits for nothing.
        /// - Parameters:
        ///   - path: the file (created on tmpfs or hugetlbfs when `size` is given and it is missing).
        ///   - size: bytes to map; a tmpfs or hugetlbfs file of the caller's shorter than that is extended
        ///     (or created). nil: the file's size.
        ///   - writable: map it writable, to allocate a tmpfs or hugetlbfs file's pages; refused for a file on
        ///     disk, which is only read (its contents stay as they are; its access time too, where the
        ///     caller owns the file or is root).
        ///   - allowOtherOwner: write or allocate (`writable`, a larger `size`, any hugetlbfs file) an existing
        ///     file another user owns, or one with several hard links. Without it such a file is refused
        ///     wherever it is: any folder on the way could be that user's, and a file planted there would get
        ///     the caller's data. Reading a disk or tmpfs file needs no flag. Even with it, another user's file
        ///     is never extended or bound to nodes.
        /// - Throws: ``KTask/Error/fileUnusable(path:reason:)`` for a missing file without `size`, a folder, a
        ///   symbolic link, a FIFO or device, no permission, another user's file as above, a file on disk asked
        ///   to be written, created or extended, a hugetlbfs page size without a ``PageMode``;
        ///   ``KTask/Error/hugePagesUnavailable(pageSize:needed:available:)`` when the pool cannot hold the pages a
        ///   hugetlbfs file still needs; ``KTask/Error/notEnoughMemory(needed:available:source:)`` when a
        ///   writable tmpfs mapping's missing pages do not fit.
        public init(path: String, size: Int? = nil, writable: Bool = false, allowOtherOwner: Bool = false) throws(KTask.Error) {
            if let size, size < 1 { throw .invalidParameter(name: "size", value: "\(size)", allowed: "at least 1 byte") }
            let file = try FileOpening.open(path, write: writable || size != nil, requireWrite: writable, create: size != nil)
            do {
                let plan = try Self.plan(file, path: path, size: size, writable: writable, allowOtherOwner: allowOtherOwner)
                (base, extendedTo) = try Self.map(file, plan: plan, writable: writable, path: path)
                (kind, pageMode, count) = (plan.kind, plan.pageMode, plan.length)
            } catch {
                file.removeCreated()
                file.close()
                throw error
            }
            self.path = path
            self.file = file
            self.writable = writable
            created = file.created
            originalSize = Int(file.status.st_size)
            ownedByCaller = file.created || file.status.st_uid == geteuid()
        }

        deinit {
            munmap(base, count)
            file.close()
        }

        /// What the descriptor says the mapping must be, with every refusal before anything changes.
        struct Plan { let kind: Kind, pageMode: PageMode, length: Int, newSize: Int }

        static func plan(_ file: FileOpening, path: String, size: Int?, writable: Bool, allowOtherOwner: Bool) throws(KTask.Error) -> Plan {
            func unusable(_ reason: String) -> KTask.Error { .fileUnusable(path: path, reason: reason) }
            let owner = file.status.st_uid, caller = geteuid()
            var type = 0, blockSize = 0
            guard CKTask_fstatfs(file.descriptor, &type, &blockSize) == 0 else { throw unusable("cannot tell its filesystem") }
            let kind = try Kind(filesystemType: UInt(bitPattern: type), blockSize: blockSize, path: path)
            let pageMode = kind.pageMode!  // the init above refused a kind without one
            let fileSize = Int(file.status.st_size), wanted = size ?? fileSize
            // Where the populate writes, extends or allocates (a read of hugetlbfs allocates its holes), the
            // file must be this user's, wherever it is: any folder on the way could be another user's (a
            // subfolder of /dev/shm they made, or a link to it). A read of a disk or tmpfs file (its data pages
            // only) changes nothing and allocates nothing, so anyone's file may be read.
            let allocates = writable || wanted > fileSize || kind.pageMode?.isHugetlb == true
            if allocates && !file.created && !allowOtherOwner {
                if owner != caller {
                    throw unusable("is owned by uid \(owner), not by this user (uid \(caller)): another user may have planted it for this "
                                   + "user to fill; give `allowOtherOwner` to use it anyway")
                }
                // A hard link to another of this user's files, made by someone else (protected_hardlinks=0).
                if file.status.st_nlink > 1 {
                    throw unusable("has \(file.status.st_nlink) links (a hard link may lead to another of this user's files); "
                                   + "give `allowOtherOwner` to use it anyway")
                }
            }
            if kind == .pageCache && (writable || file.created || wanted > fileSize) {
                throw unusable(writable ? "is on a disk filesystem: it is only read into the page cache, never written (drop `writable`)"
                               : "is on a disk filesystem: only tmpfs or hugetlbfs files are created or extended (drop `size` or make it at most the file's size)")
            }
            guard wanted > 0 else { throw unusable("is empty; give `size` to extend a tmpfs or hugetlbfs file") }
            let (rounded, overflow) = wanted.addingReportingOverflow(pageMode.pageSize - 1)
            guard !overflow else { throw .invalidParameter(name: "size", value: "\(wanted)", allowed: "at most \(Int.max - pageMode.pageSize + 1)") }
            // Mapped in whole pages (the last may reach past the end: mapping it is fine); extended only where
            // `size` asks for more than the file has, to that size (a hugetlbfs file grows in whole pages).
            let length = rounded / pageMode.pageSize * pageMode.pageSize
            let newSize = wanted <= fileSize ? fileSize : kind == .tmpfs ? wanted : length
            if newSize > fileSize && !file.created && owner != caller {
                throw unusable("is owned by uid \(owner): only a file this user owns or creates is extended (drop `size` or make it at most the file's size)")
            }
            if newSize > fileSize && !file.readWrite { throw unusable("no permission to write it (to extend it to \(newSize) bytes)") }
            try checkPool(kind, length: length, allocated: allocatedBytes(file.status))
            if writable && kind == .tmpfs { try MemoryHeadroom.check(needed: max(0, length - allocatedBytes(file.status))) }
            return Plan(kind: kind, pageMode: pageMode, length: length, newSize: newSize)
        }

        /// hugetlbfs: pages the file already has are its own; the rest must come from the pool, which
        /// reserves them at mmap (a shared mapping) so that the populate cannot run out.
        static func checkPool(_ kind: Kind, length: Int, allocated: Int) throws(KTask.Error) {
            guard case .hugetlbfs(let pageSize) = kind, let pool = HugePagePool.read(pageSize: pageSize) else { return }
            let needed = max(0, length - allocated) / pageSize
            if needed > pool.available { throw .hugePagesUnavailable(pageSize: pageSize, needed: needed, available: pool.available) }
        }

        /// Bytes the file has allocated (a filesystem may report any block count: saturated, not trapped).
        static func allocatedBytes(_ status: stat) -> Int {
            let (bytes, overflow) = Int(status.st_blocks).multipliedReportingOverflow(by: 512)
            return overflow || bytes < 0 ? Int.max : bytes
        }

        /// Extends the file when the plan says so (only the caller's own, checked), then maps it.
        static func map(_ file: FileOpening, plan: Plan, writable: Bool, path: String) throws(KTask.Error) -> (UnsafeMutableRawPointer, extendedTo: Int?) {
            // The size now, not at open: the caller's own file may have grown since (a running guest), and a
            // truncate to a smaller size would cut it.
            var now = stat()
            let fileSize = fstat(file.descriptor, &now) == 0 ? Int(now.st_size) : Int(file.status.st_size)
            let extend = plan.newSize > fileSize
            if extend && ftruncate(file.descriptor, off_t(plan.newSize)) != 0 {
                throw .fileUnusable(path: path, reason: "cannot be extended to \(plan.newSize) bytes: \(String(cString: strerror(errno)))")
            }
            let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
            guard let address = mmap(nil, plan.length, protection, MAP_SHARED, file.descriptor, 0), address != MAP_FAILED else {
                let reason = String(cString: strerror(errno))
                if extend && !file.created { truncateBack(file, from: plan.newSize, to: fileSize) }
                throw .mapFailed(bytes: plan.length, reason: reason)
            }
            return (address, extend ? plan.newSize : nil)
        }

        /// Truncates a file this call extended back to `size`, only if it still has the size this call gave it:
        /// what another writer added meanwhile is not cut.
        static func truncateBack(_ file: FileOpening, from extended: Int, to size: Int) {
            var now = stat()
            guard fstat(file.descriptor, &now) == 0, Int(now.st_size) == extended else { return }
            _ = ftruncate(file.descriptor, off_t(size))
        }

        /// Undoes what this init did to the file, for a populate that failed: removes the file it created,
        /// or truncates the file it extended back to ``originalSize`` (both through its descriptor), so that
        /// the memory they took is freed; nothing for a file it neither made nor extended. The mapping must
        /// not be read afterwards past the file's new end.
        public func undoChanges() {
            if created {
                file.removeCreated()
            } else if let extendedTo, ownedByCaller {
                Self.truncateBack(file, from: extendedTo, to: originalSize)
            }
        }

        /// Runs `body` (a populate of this file) with ``undoChanges()`` also done if the process is ended by a
        /// fatal signal meanwhile (Ctrl-C, SIGTERM), and done when `body` throws: a killed `ktask populate`
        /// leaves no file it created, holding memory. One such populate at a time in a process.
        package func undoingChangesIfStopped<T>(_ body: () throws -> T) throws -> T {
            let changed = created || extendedTo != nil
            if changed {
                _ = CKTask_populate_undo_arm(file.descriptor, file.folder, file.name, created ? 1 : 0,
                                             Int64(extendedTo ?? 0), Int64(originalSize))
            }
            defer { if changed { CKTask_populate_undo_disarm() } }
            do { return try body() } catch {
                if changed { CKTask_populate_undo_disarm() }
                undoChanges()
                throw error
            }
        }

        /// The pages that hold data (SEEK_DATA/SEEK_HOLE), for a tmpfs file: a read populate faults in those
        /// and allocates none of the holes (which a read fault on tmpfs would). nil: every page.
        func dataPages() -> [Range<Int>]? {
            guard kind == .tmpfs else { return nil }
            let pageSize = pageMode.pageSize
            var ranges: [Range<Int>] = []
            var offset = 0
            while offset < count {
                let data = lseek(file.descriptor, off_t(offset), CKTask_SEEK_DATA())
                if data < 0 { return errno == ENXIO ? ranges : nil }  // ENXIO: no data after offset
                guard Int(data) < count else { break }
                let hole = lseek(file.descriptor, data, CKTask_SEEK_HOLE())
                let end = hole < 0 ? count : min(count, Int(hole))
                ranges.append(Int(data) / pageSize..<(end + pageSize - 1) / pageSize)
                offset = max(end, Int(data) + 1)
            }
            return ranges
        }

        /// Bytes a populate still has to allocate from memory, checked once for the whole file: for a write,
        /// every page not resident; for a read of tmpfs, data pages not resident (swapped out). Page cache is
        /// reclaimable and hugetlbfs pages were reserved at mmap: nothing to check.
        func memoryNeeded(write: Bool) -> Int {
            guard kind == .tmpfs else { return 0 }
            // A file this call created holds no page yet: no mincore walk over it (1 Mi pages for 4 GiB).
            let resident = created ? 0 : residentBytes
            if write { return max(0, count - resident) }
            var status = stat()
            guard fstat(file.descriptor, &status) == 0 else { return 0 }
            return max(0, min(count, MappedFile.allocatedBytes(status)) - resident)
        }

        /// The mapped bytes.
        public var buffer: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: count) }

        /// Bytes of the file resident in memory now: mincore of the mapping (a tmpfs or disk file's page cache);
        /// for hugetlbfs, the file's allocated huge pages (`st_blocks`), since mincore there sees only pages
        /// mapped in this process and a populate may allocate them without mapping them.
        public var residentBytes: Int {
            guard case .hugetlbfs = kind else { return KTask.residentBytes(buffer) }
            var status = stat()
            return fstat(file.descriptor, &status) == 0 ? min(count, MappedFile.allocatedBytes(status)) : 0
        }

        /// The file's resident pages per node. move_pages sees only pages mapped in this process, and a page
        /// a populate allocated through the descriptor is in the file but not mapped here: the resident runs
        /// (mincore) are mapped in first with a read populate, which allocates nothing that mincore did not
        /// already find.
        public func pageCountsPerNode() -> [Int: Int] {
            let pageSize = pageMode.pageSize, basePage = MemoryPopulator.basePageSize
            // A read through the mapping: MADV_POPULATE_READ, or one read per page on an older kernel.
            func mapIn(_ pages: Range<Int>) {
                let start = base + pages.lowerBound * pageSize, bytes = pages.count * pageSize
                if !MemoryPopulator.kernelHasPopulate || CKTask_madvise_retrying(start, bytes, CKTask_MADV_POPULATE_READ()) != 0 {
                    _ = CKTask_touch_pages(start, bytes / basePage, basePage, 0)
                }
            }
            let pages = count / pageSize
            if case .hugetlbfs = kind {
                // mincore sees only what is mapped here; a hugetlbfs file's pages are its allocated ones.
                if residentBytes >= count { mapIn(0..<pages) }
            } else if let vector = KTask.residency(base, bytes: count) {
                var page = 0
                let step = pageSize / basePage
                while page < pages {
                    guard vector[page * step] & 1 == 1 else { page += 1; continue }
                    var end = page + 1
                    while end < pages, vector[end * step] & 1 == 1 { end += 1 }
                    mapIn(page..<end)
                    page = end
                }
            }
            return KTask.NodeMemory.pageCounts(in: UnsafeRawBufferPointer(buffer), pageSize: pageSize)
        }
    }

    /// Faults in every page of a mapped file on the calling thread and helpers: read into the page cache
    /// (a tmpfs file's data pages, none of its holes), or (with `write`, for a writable tmpfs or hugetlbfs
    /// mapping) allocated, no byte changed. The memory still missing is checked once, for the whole file,
    /// first. A read changes nothing in the file. As ``populate(_:write:options:)-(KTask.Memory,_,_)`` otherwise;
    /// offsets in errors are the file's. After a failure, ``MappedFile/undoChanges()`` frees what the mapping's
    /// init created or extended.
    /// - Throws: ``KTask/Error/fileUnusable(path:reason:)`` for `write` on a read-only mapping,
    ///   ``KTask/Error/notEnoughMemory(needed:available:source:)``; as ``populate(_:pageMode:write:options:)``.
    @discardableResult
    @available(*, noasync, message: "blocks the calling thread; run it from a synchronous context")
    public static func populate(_ file: MappedFile, write: Bool = false, options: KTask.Options = KTask.Options()) throws -> KTask.Report {
        try populate(file, onNodes: nil, write: write, options: options, progress: nil, recording: nil)
    }

    /// Populates the file as one range per node (as ``populate(_:pageMode:onNodes:write:bindMemory:options:)``),
    /// binding each range to its node only for a write of a tmpfs or hugetlbfs file the caller owns or created:
    /// a NUMA policy set on a shared file applies to everyone who maps it.
    @discardableResult
    @available(*, noasync, message: "blocks the calling thread; run it from a synchronous context")
    public static func populate(_ file: MappedFile, onNodes nodes: [Int], write: Bool = false,
                                options: KTask.Options = KTask.Options()) throws -> KTask.Report {
        try populate(file, onNodes: nodes, write: write, options: options, progress: nil, recording: nil)
    }

    /// The file populates, placed on `nodes` or not, as one job: `progress` hears the bytes done so far (at
    /// most every 100 ms, from one thread at a time, never after this returns), `record` where each chunk ran.
    @discardableResult
    /// `zeroNewFile`: a tmpfs file this process created and no one has written may be allocated by writing
    /// zeros over its zeros (faster than faulting it in; see ``MemoryPopulator/FileLane``). Only for a caller
    /// that knows the bytes are still zeros: `ktask populate` right after creating the file.
    package static func populate(_ file: MappedFile, onNodes nodes: [Int]?, write: Bool, options: KTask.Options,
                                 progress: ((_ bytesDone: Int) -> Void)?, recording record: ChunkPlacementRecord?,
                                 zeroNewFile: Bool = false) throws -> KTask.Report {
        let bindMemory = write && file.kind != .pageCache && file.ownedByCaller
        let placement = try nodes.map { nodes throws(KTask.Error) in try NodePlacement(nodes, memory: bindMemory) }
        if write && !file.writable { throw KTask.Error.fileUnusable(path: file.path, reason: "is mapped read-only; open it writable to allocate its pages") }
        try MemoryHeadroom.check(needed: file.memoryNeeded(write: write))
        // Placed pages are bound through the mapping (mbind): those go through it.
        return try populate(file.buffer, pageMode: file.pageMode,
                            with: file.populator(write: write, fileLane: placement == nil, zeroNewFile: zeroNewFile), placement: placement,
                            bindMemory: bindMemory, options: options,
                            progress: progress.map { ProgressReporter(report: $0) }, recording: record)
    }

    /// Bytes of `region` resident in memory (mincore, in base pages); 0 where mincore cannot tell.
    package static func residentBytes(_ region: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = region.baseAddress, let vector = residency(base, bytes: region.count) else { return 0 }
        return vector.reduce(0) { $0 + Int($1 & 1) } * MemoryPopulator.basePageSize
    }

    /// mincore's vector for `bytes` from `start`: bit 0 of each byte says whether that base page is resident;
    /// nil where mincore cannot tell.
    static func residency(_ start: UnsafeMutableRawPointer, bytes: Int) -> [UInt8]? {
        guard bytes > 0 else { return nil }
        let page = MemoryPopulator.basePageSize
        var vector = [UInt8](repeating: 0, count: (bytes + page - 1) / page)
        return mincore(start, bytes, &vector) == 0 ? vector : nil
    }
}

extension KTask.MappedFile {
    /// The chunk function: base at the file's first byte, so page indices (and error offsets) are the file's.
    /// With `fileLane`, a write allocates through the descriptor where that changes no byte: a hugetlbfs
    /// file the caller owns (fallocate; another user's file is not even touched in its times), a tmpfs file
    /// this init created where the caller says it is still all zeros (`zeroNewFile`).
    func populator(write: Bool, fileLane: Bool, zeroNewFile: Bool = false) -> MemoryPopulator {
        let pageSize = pageMode.pageSize
        let lane: MemoryPopulator.FileLane? = switch kind {
        case .hugetlbfs where fileLane && ownedByCaller: .init(descriptor: file.descriptor, call: .fallocate, pageSize: pageSize)
        case .tmpfs where fileLane && created && zeroNewFile: .init(descriptor: file.descriptor, call: .writeZeros, pageSize: pageSize)
        default: nil
        }
        return MemoryPopulator(base: UInt(bitPattern: base), pageSize: pageMode.pageSize, write: write, onlyPages: write ? nil : dataPages(),
                               fileLane: lane)
    }
}
