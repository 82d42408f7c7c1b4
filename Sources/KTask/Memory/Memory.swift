import CKTaskShims

#if canImport(Glibc)
import Glibc
#endif

extension KTask {
    /// Anonymous memory in a chosen page mode, unmapped when the last reference goes: guest RAM, a buffer
    /// pool. Made empty (no page faulted in); ``KTask/populate(_:write:options:)-(KTask.Memory,_,_)`` faults it in on many threads.
    public final class Memory: @unchecked Sendable {
        /// The first byte, aligned to the page mode's page size.
        public let base: UnsafeMutableRawPointer
        /// Bytes, a whole number of the page mode's pages.
        public let count: Int
        public let pageMode: PageMode
        private let mapping: (address: UnsafeMutableRawPointer, length: Int)

        /// Maps `bytes` (rounded up to whole pages of `pages`) of private anonymous memory.
        ///
        /// - Throws: ``KTask/Error/hugePagesUnavailable(pageSize:needed:available:)`` when the hugetlb pool has
        ///   fewer free pages than needed (it says how to reserve more), ``KTask/Error/mapFailed(bytes:reason:)``
        ///   when the kernel refuses the mapping, ``KTask/Error/invalidParameter(name:value:allowed:)`` for a
        ///   size below 1 or above the most addressable: `Int.max - pageSize + 1`, and one huge page less
        ///   with `.transparentHuge` (mapped one huge page longer, to align it).
        public init(bytes: Int, pages: PageMode) throws(KTask.Error) {
            guard bytes >= 1 else { throw .invalidParameter(name: "bytes", value: "\(bytes)", allowed: "at least 1") }
            let pageSize = pages.pageSize
            let (whole, overflow) = bytes.addingReportingOverflow(pageSize - 1)
            guard !overflow else { throw .invalidParameter(name: "bytes", value: "\(bytes)", allowed: "at most \(Int.max - pageSize + 1)") }
            let length = whole / pageSize * pageSize
            var flags = MAP_PRIVATE | MAP_ANONYMOUS
            var mapLength = length
            switch pages {
            case .base: break
            // Over-map by one huge page so that the region can start on a 2 MiB boundary.
            case .transparentHuge:
                let (over, overflow) = length.addingReportingOverflow(pageSize)
                guard !overflow else {
                    throw .invalidParameter(name: "bytes", value: "\(bytes)", allowed: "at most \(Int.max - 2 * pageSize + 1) with transparent huge pages "
                                            + "(the mapping is one huge page longer, to align it)")
                }
                mapLength = over
            case .hugetlb2M, .hugetlb1G:
                let needed = length / pageSize
                guard let pool = HugePagePool.read(pageSize: pageSize) else {
                    throw .hugePagesUnavailable(pageSize: pageSize, needed: needed, available: 0)
                }
                guard pool.available >= needed else {
                    throw .hugePagesUnavailable(pageSize: pageSize, needed: needed, available: pool.available)
                }
                flags |= MAP_HUGETLB | CKTask_MAP_HUGE_SIZE(Int32(pageSize.trailingZeroBitCount))
            }
            guard let address = mmap(nil, mapLength, PROT_READ | PROT_WRITE, flags, -1, 0), address != MAP_FAILED else {
                let reason = String(cString: strerror(errno))
                if pages.isHugetlb, let pool = HugePagePool.read(pageSize: pageSize) {
                    throw .hugePagesUnavailable(pageSize: pageSize, needed: length / pageSize, available: pool.available)
                }
                throw .mapFailed(bytes: mapLength, reason: reason)
            }
            mapping = (address, mapLength)
            var start = address
            if pages == .transparentHuge {
                let misalignment = Int(bitPattern: address) % pageSize
                if misalignment != 0 { start = address + (pageSize - misalignment) }
                // Advice only: where THP is off for this VMA the memory still works, in base pages.
                _ = madvise(start, length, MADV_HUGEPAGE)
            }
            base = start
            count = length
            pageMode = pages
        }

        deinit { munmap(mapping.address, mapping.length) }

        /// The memory as a buffer.
        public var buffer: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: count) }
    }
}
