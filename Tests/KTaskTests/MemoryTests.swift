import Foundation
import Testing
@testable import KTask
import CKTaskShims

#if canImport(Glibc)
import Glibc
#endif

/// The hugetlb pool's sysfs value for 2 MiB pages.
func hugePages2M(_ file: String) -> Int? {
    (try? String(contentsOfFile: "/sys/kernel/mm/hugepages/hugepages-2048kB/\(file)", encoding: .utf8))
        .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
}

@Suite("Memory: mapping in a page mode and populating it on many threads", .serialized)
struct MemoryTests {
    @Test("4 KiB pages: every page resident afterwards, chunks of whole page-table pages")
    func basePages() throws {
        let memory = try KTask.Memory(bytes: 64 << 20, pages: .base)
        #expect(KTask.residentBytes(memory.buffer) == 0, "a new mapping is empty")
        let report = try KTask.populate(memory, options: KTask.Options(maxThreads: 2))
        #expect(KTask.residentBytes(memory.buffer) == memory.count)
        #expect(report.chunkSize % 512 == 0, "chunks of 2 MiB of 4 KiB pages: \(report)")
    }

    @Test("THP: the region starts on a 2 MiB boundary and is populated in whole huge pages")
    func transparentHugePages() throws {
        let memory = try KTask.Memory(bytes: 64 << 20 + 1, pages: .transparentHuge)
        #expect(Int(bitPattern: memory.base) % (2 << 20) == 0)
        #expect(memory.count == 66 << 20, "rounded up to whole 2 MiB pages")
        let report = try KTask.populate(memory, options: KTask.Options(maxThreads: 2))
        #expect(KTask.residentBytes(memory.buffer) == memory.count)
        #expect(report.claimCount >= 1 && report.chunkSize >= 1)
    }

    @Test("hugetlb: asking for more pages than the pool has is a typed error that says how to reserve more")
    func hugetlbPoolTooSmall() throws {
        let pool = try #require(KTask.HugePagePool.read(pageSize: 2 << 20), "this kernel has 2 MiB hugetlb pages")
        let needed = pool.available + 1
        #expect(throws: KTask.Error.hugePagesUnavailable(pageSize: 2 << 20, needed: needed, available: pool.available)) {
            _ = try KTask.Memory(bytes: needed * (2 << 20), pages: .hugetlb2M)
        }
        let text = KTask.Error.hugePagesUnavailable(pageSize: 2 << 20, needed: needed, available: pool.available).description
        #expect(text.contains("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages") && text.contains("\(pool.available) available"))
    }

    @Test("hugetlb pages that run out while populating are a typed error, not a SIGBUS")
    func hugetlbExhaustedIsAnError() throws {
        let pool = try #require(KTask.HugePagePool.read(pageSize: 2 << 20))
        // MAP_NORESERVE: nothing reserved at mmap, so the pool runs dry while faulting, as with a VM's
        // memory-backend-file on a hugetlbfs mount another process drained.
        let length = (pool.available + 2) * (2 << 20)
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | CKTask_MAP_HUGETLB() | CKTask_MAP_HUGE_SIZE(21)
        let address = try #require(mmap(nil, length, PROT_READ | PROT_WRITE, flags, -1, 0).flatMap { $0 == MAP_FAILED ? nil : $0 })
        defer { munmap(address, length) }
        #expect {
            try KTask.populate(UnsafeMutableRawBufferPointer(start: address, count: length), pageMode: .hugetlb2M)
        } throws: { error in
            guard case KTask.Error.populateFailed(let offset, _) = error else { return false }
            return offset >= pool.available * (2 << 20) && offset % (2 << 20) == 0
        }
    }

    @Test("hugetlb 2 MiB with pages reserved: populated from the pool, every page taken",
          .enabled(if: getuid() == 0, "needs root to reserve huge pages: skipped"))
    func hugetlbPopulate() throws {
        let before = try #require(hugePages2M("nr_hugepages"))
        try "\(before + 8)".write(toFile: "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", atomically: false, encoding: .utf8)
        defer { try? "\(before)".write(toFile: "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", atomically: false, encoding: .utf8) }
        let total = try #require(hugePages2M("nr_hugepages"))
        try #require(total >= before + 8, "the kernel found no memory for 8 more huge pages: skipped")
        let freeBefore = try #require(hugePages2M("free_hugepages"))
        do {
            let memory = try KTask.Memory(bytes: 16 << 20, pages: .hugetlb2M)
            try KTask.populate(memory, options: KTask.Options(maxThreads: 2))
            #expect(hugePages2M("free_hugepages") == freeBefore - 8, "8 huge pages faulted in")
        }
        #expect(hugePages2M("free_hugepages") == freeBefore, "unmapped: back in the pool")
    }

    @Test("a region off page boundaries and a size below 1 are typed errors")
    func badInput() throws {
        let memory = try KTask.Memory(bytes: 8 << 20, pages: .base)
        #expect(throws: KTask.Error.self) {
            try KTask.populate(UnsafeMutableRawBufferPointer(rebasing: memory.buffer[1..<4097]), pageMode: .base)
        }
        #expect(throws: KTask.Error.invalidParameter(name: "bytes", value: "0", allowed: "at least 1")) {
            _ = try KTask.Memory(bytes: 0, pages: .base)
        }
    }

    @Test("the preferred page mode is THP unless the machine turned it off")
    func preferredMode() throws {
        let root = try FakeRoot()
        try root.write("/sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never\n")
        #expect(KTask.PageMode.preferred(root: root.root).mode == .transparentHuge)
        try root.write("/sys/kernel/mm/transparent_hugepage/enabled", "always madvise [never]\n")
        let off = KTask.PageMode.preferred(root: root.root)
        #expect(off.mode == .base && off.reason == "transparent huge pages are off (never)")
    }
}

@Suite("Memory placed on nodes", .serialized)
struct NodePopulateTests {
    @Test("populate on nodes: every page lands on the node, chunks run on its CPUs, the caller's mask comes back")
    func onNodes() throws {
        let memory = try KTask.Memory(bytes: 32 << 20, pages: .base)
        let before = Affinity.current()
        let placed = try KTask.populate(memory.buffer, pageMode: .base, onNodes: [0], options: KTask.Options(maxThreads: 2))
        #expect(placed.pagesPerNode == [0: 8192])
        let nodeCPUs = SystemLimits.current(nodeCPUs: .always).nodes.first { $0.id == 0 }?.cpus.cpus ?? []
        #expect(!placed.cpusUsed.isEmpty && placed.cpusUsed.allSatisfy(nodeCPUs.contains), "\(placed.cpusUsed)")
        #expect(Affinity.current() == before)
    }

    @Test("an unknown node or no node is a typed error before any work")
    func badNodes() throws {
        let memory = try KTask.Memory(bytes: 4 << 20, pages: .base)
        #expect(throws: KTask.Error.self) { try KTask.populate(memory.buffer, pageMode: .base, onNodes: [99]) }
        #expect(throws: KTask.Error.self) { try KTask.populate(memory.buffer, pageMode: .base, onNodes: []) }
        #expect(KTask.residentBytes(memory.buffer) == 0)
    }
}

@Suite("Mapped files")
struct MappedFileTests {
    @Test("a memfd (a VM's memory-backend-memfd), opened by its /proc/self/fd path, is tmpfs and gets every page allocated")
    func memfd() throws {
        let fd = CKTask_memfd_create("ktask-test", 0)
        try #require(fd >= 0)
        defer { close(fd) }
        try #require(ftruncate(fd, off_t(16 << 20)) == 0)
        let file = try KTask.MappedFile(path: "/proc/self/fd/\(fd)", writable: true)
        #expect(file.kind == .tmpfs && file.count == 16 << 20)
        try KTask.populate(file, write: true)
        var status = stat()
        fstat(fd, &status)
        #expect(Int(status.st_blocks) * 512 == 16 << 20, "every page allocated")
        #expect(file.residentBytes == 16 << 20)
    }

    @Test("a read-only mapping cannot be populated for writing")
    func readOnly() throws {
        let path = "/dev/shm/ktask-ro-\(getpid())"
        let fd = open(path, O_CREAT | O_RDWR, 0o600)
        ftruncate(fd, 1 << 20)
        close(fd)
        defer { unlink(path) }
        let file = try KTask.MappedFile(path: path)
        #expect(throws: KTask.Error.fileUnusable(path: path, reason: "is mapped read-only; open it writable to allocate its pages")) {
            try KTask.populate(file, write: true)
        }
    }
}
