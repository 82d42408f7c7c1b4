
#if canImport(Glibc)
import Glibc
#endif

extension KTask {
    /// The page size that backs memory: it decides how a mapping is made and how ``populate(_:write:options:)-(KTask.Memory,_,_)``
    /// cuts it (a huge page is never split between two threads).
    public enum PageMode: String, Sendable, CaseIterable, CustomStringConvertible {
        /// Base pages (4 KiB on x86-64).
        case base = "4k"
        /// Transparent huge pages (2 MiB, `MADV_HUGEPAGE`, as QEMU asks for guest RAM) where the kernel can
        /// make them; chunks are 2 MiB-aligned.
        case transparentHuge = "thp"
        /// hugetlb pages of 2 MiB from the reserved pool (`nr_hugepages`).
        case hugetlb2M = "hugetlb-2M"
        /// hugetlb pages of 1 GiB from the reserved pool.
        case hugetlb1G = "hugetlb-1G"

        /// Bytes per page of this mode (a transparent huge page's 2 MiB for `.transparentHuge`).
        public var pageSize: Int {
            switch self {
            case .base: Int(sysconf(Int32(_SC_PAGESIZE)))
            case .transparentHuge, .hugetlb2M: 2 << 20
            case .hugetlb1G: 1 << 30
            }
        }

        public var description: String { rawValue }

        /// Whether pages come from the hugetlb pool.
        package var isHugetlb: Bool { self == .hugetlb2M || self == .hugetlb1G }

        /// The mode a new mapping gets when none is asked: THP unless the machine turned it off (`never`),
        /// with the reason.
        package static func preferred(root: SystemRoot = .live) -> (mode: PageMode, reason: String) {
            let setting = (root.read("/sys/kernel/mm/transparent_hugepage/enabled") ?? "").trimmingCharacters(in: " \n")
            guard let chosen = setting.split(separator: " ").first(where: { $0.hasPrefix("[") }) else {
                return (.base, "transparent huge pages are not available here")
            }
            return chosen == "[never]" ? (.base, "transparent huge pages are off (never)")
                : (.transparentHuge, "transparent huge pages are \(chosen.dropFirst().dropLast())")
        }
    }

    /// The hugetlb pool for one page size, as `/sys/kernel/mm/hugepages` shows it.
    struct HugePagePool: Equatable {
        package let pageSize: Int
        /// Pages neither in use nor promised to a mapping.
        package let available: Int
        package let total: Int

        var sysfsFolder: String { Self.sysfsFolder(pageSize: pageSize) }

        static func sysfsFolder(pageSize: Int) -> String { "/sys/kernel/mm/hugepages/hugepages-\(pageSize >> 10)kB" }

        package static func read(pageSize: Int, root: SystemRoot = .live) -> HugePagePool? {
            let folder = sysfsFolder(pageSize: pageSize)
            guard let total = root.integer(folder + "/nr_hugepages"), let free = root.integer(folder + "/free_hugepages") else { return nil }
            let reserved = root.integer(folder + "/resv_hugepages") ?? 0
            return HugePagePool(pageSize: pageSize, available: max(0, free - reserved), total: total)
        }
    }
}
