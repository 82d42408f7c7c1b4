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

            /// The pages this filesystem holds.
            public var pageMode: PageMode {
                switch self {
                case .pageCache, .tmpfs: .base
                case .hugetlbfs(let pageSize): pageSize == 1 << 30 ? .hugetlb1G : .hugetlb2M
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

        /// Maps `path` shared.
        /// - Parameters:
        ///   - path: the file (created on tmpfs or hugetlbfs when `size` is given and it is missing).
        ///   - size: bytes to map; a tmpfs or hugetlbfs file shorter than that is extended (or created).
        ///     nil: the file's size.
        ///   - writable: map it writable, to allocate a tmpfs or hugetlbfs file's pages; refused for a file on
        ///     disk, which is only read (its contents and times stay as they are).
        /// - Throws: ``KTask/Error/fileUnusable(path:reason:)`` for a missing file without `size`, a folder, no
        ///   permission, a file on disk asked to be written, created or extended; ``KTask/Error/hugePagesUnavailable(pageSize:needed:available:)``
        ///   when the pool cannot hold the pages a hugetlbfs file still needs.
        public init(path: String, size: Int? = nil, writable: Bool = false) throws(KTask.Error) {
            func unusable(_ reason: String) -> KTask.Error { .fileUnusable(path: path, reason: reason) }
            if let size, size < 1 { throw .invalidParameter(name: "size", value: "\(size)", allowed: "at least 1 byte") }
            var status = stat()
            let exists = stat(path, &status) == 0
            if exists && status.st_mode & S_IFMT == S_IFDIR { throw unusable("is a folder; give a file") }
            if exists && status.st_mode & S_IFMT != S_IFREG { throw unusable("is not a regular file") }
            if !exists && errno != ENOENT { throw unusable(String(cString: strerror(errno))) }
            if !exists && size == nil { throw unusable("does not exist; give --size to create a tmpfs or hugetlbfs file") }

            let needsWrite = writable || !exists || size.map { $0 > Int(status.st_size) } == true
            // Every check before anything is created or extended: a refused populate leaves no trace.
            let kind = try Self.filesystem(of: exists ? path : Self.folder(of: path), path: path)
            if kind == .pageCache && needsWrite {
                throw unusable(writable ? "is on a disk filesystem: it is only read into the page cache, never written (drop --write)"
                               : "is on a disk filesystem: only tmpfs or hugetlbfs files are created or extended (drop --size or make it at most the file's size)")
            }
            let pageMode: PageMode = kind.pageMode
            let pageSize = pageMode.pageSize
            let fileSize = exists ? Int(status.st_size) : 0
            let wanted = size ?? fileSize
            guard wanted > 0 else { throw unusable("is empty; give --size to extend a tmpfs or hugetlbfs file") }
            let (rounded, overflow) = wanted.addingReportingOverflow(pageSize - 1)
            guard !overflow else { throw .invalidParameter(name: "size", value: "\(wanted)", allowed: "at most \(Int.max - pageSize + 1)") }
            let length = rounded / pageSize * pageSize
            let growth = max(0, length - fileSize)
            if case .hugetlbfs = kind, let pool = HugePagePool.read(pageSize: pageSize) {
                // Pages the file already has are its own; the rest must come from the pool.
                if growth / pageSize > pool.available {
                    throw .hugePagesUnavailable(pageSize: pageSize, needed: growth / pageSize, available: pool.available)
                }
            }
            if writable && kind == .tmpfs { try MemoryHeadroom.check(needed: growth) }

            let fd = open(path, (needsWrite ? O_RDWR : O_RDONLY) | O_CLOEXEC | (exists ? 0 : O_CREAT | O_EXCL), 0o600)
            guard fd >= 0 else {
                throw unusable(errno == EACCES || errno == EPERM ? "no permission to \(needsWrite ? "write" : "read") it"
                               : String(cString: strerror(errno)))
            }
            defer { close(fd) }
            if length > fileSize && ftruncate(fd, off_t(length)) != 0 {
                let reason = String(cString: strerror(errno))
                if !exists { unlink(path) }
                throw unusable("cannot be extended to \(length) bytes: \(reason)")
            }
            let protection = needsWrite ? PROT_READ | PROT_WRITE : PROT_READ
            guard let address = mmap(nil, length, protection, MAP_SHARED, fd, 0), address != MAP_FAILED else {
                let reason = String(cString: strerror(errno))
                if !exists { unlink(path) } else if length > fileSize { _ = ftruncate(fd, off_t(fileSize)) }
                throw .mapFailed(bytes: length, reason: reason)
            }
            self.path = path
            self.kind = kind
            self.pageMode = pageMode
            self.base = address
            self.count = length
            self.writable = needsWrite
        }

        deinit { munmap(base, count) }

        /// What holds the pages of the file at `path`, or of a new file there.
        package static func kind(ofFileAt path: String) throws(KTask.Error) -> Kind {
            try filesystem(of: access(path, F_OK) == 0 ? path : folder(of: path), path: path)
        }

        /// The folder a path is in ("." for a bare name).
        static func folder(of path: String) -> String {
            guard let slash = path.lastIndex(of: "/") else { return "." }
            return slash == path.startIndex ? "/" : String(path[..<slash])
        }

        /// What holds the pages of files at `target` (the file, or the folder a new one goes in).
        static func filesystem(of target: String, path: String) throws(KTask.Error) -> Kind {
            let fd = open(target, 0o10000000 | O_CLOEXEC)  // O_PATH: no read permission needed
            guard fd >= 0 else { throw .fileUnusable(path: path, reason: "its folder \(target) cannot be opened: \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var type = 0, blockSize = 0
            guard CKTask_fstatfs(fd, &type, &blockSize) == 0 else { throw .fileUnusable(path: path, reason: "cannot tell its filesystem") }
            switch UInt(bitPattern: type) {
            case 0x0102_1994: return .tmpfs  // TMPFS_MAGIC
            case 0x9584_58f6: return .hugetlbfs(pageSize: blockSize)  // HUGETLBFS_MAGIC; the block size is the page size
            default: return .pageCache
            }
        }

        /// The mapped bytes.
        public var buffer: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: count) }

        /// Bytes of the mapping resident in memory now (mincore).
        public var residentBytes: Int { KTask.residentBytes(buffer) }
    }

    /// Faults in every page of a mapped file on the calling thread and helpers: read into the page cache,
    /// or (with `write`, for a writable tmpfs or hugetlbfs mapping) allocated. A read changes nothing in
    /// the file. As ``populate(_:write:options:)-(KTask.Memory,_,_)`` otherwise.
    /// - Throws: ``KTask/Error/fileUnusable(path:reason:)`` for `write` on a read-only mapping; as ``populate(_:pageMode:write:options:)``.
    @discardableResult
    @available(*, noasync, message: "blocks the calling thread; run it from a synchronous context")
    public static func populate(_ file: MappedFile, write: Bool = false, options: KTask.Options = KTask.Options()) throws -> KTask.Report {
        if write && !file.writable { throw KTask.Error.fileUnusable(path: file.path, reason: "is mapped read-only; open it writable to allocate its pages") }
        return try populate(file.buffer, pageMode: file.pageMode, write: write, options: options)
    }

    /// Bytes of `region` resident in memory (mincore, in base pages); 0 where mincore cannot tell.
    static func residentBytes(_ region: UnsafeMutableRawBufferPointer) -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard let base = region.baseAddress, region.count > 0 else { return 0 }
        var vector = [UInt8](repeating: 0, count: (region.count + page - 1) / page)
        guard mincore(base, region.count, &vector) == 0 else { return 0 }
        return vector.reduce(0) { $0 + Int($1 & 1) } * page
    }
}
