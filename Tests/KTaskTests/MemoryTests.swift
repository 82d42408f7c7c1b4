import Foundation
import Synchronization
import Testing
@testable import KTask
import CKTaskShims
import CKTaskTestEnvironment

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
        // The job's items are the 33 huge pages, so a chunk is 1 to 33 of them (in base pages it would be
        // 512 or more), never part of one.
        #expect((1...33).contains(report.chunkSize), "\(report)")
        // And the kernel backed all 33 with huge pages: the region is its own mapping in smaps (advised
        // MADV_HUGEPAGE, with the unadvised alignment slack around it), whose AnonHugePages says so.
        guard KTask.PageMode.preferred().mode == .transparentHuge else { return }  // THP off here: base pages
        let smaps = try #require(readSmallFile("/proc/self/smaps")).split(separator: "\n")
        let start = String(UInt(bitPattern: memory.base), radix: 16), end = String(UInt(bitPattern: memory.base + memory.count), radix: 16)
        let header = try #require(smaps.firstIndex { $0.hasPrefix(start + "-") }, "no mapping starts at the region")
        #expect(smaps[header].hasPrefix("\(start)-\(end) "), "the region is one mapping: \(smaps[header])")
        let hugeLine = try #require(smaps[(header + 1)...].first { $0.hasPrefix("AnonHugePages:") })
        let hugeKiB = Int(hugeLine.dropFirst("AnonHugePages:".count).split(separator: " ").first ?? "")
        #expect(hugeKiB == 33 * 2048, "\(hugeLine)")
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
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_HUGETLB | CKTask_MAP_HUGE_SIZE(21)
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

    @Test("a hugetlbfs file is allocated through its descriptor (fallocate): every page from the pool, none mapped here",
          .enabled(if: getuid() == 0, "needs root to mount hugetlbfs and reserve huge pages: skipped"))
    func hugetlbfsFileThroughDescriptor() throws {
        let mountPoint = NSTemporaryDirectory() + "ktask-lane-\(getpid())"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: mountPoint) }
        try #require(Glibc.mount("none", mountPoint, "hugetlbfs", 0, "pagesize=2M") == 0, "hugetlbfs cannot be mounted here: skipped")
        defer { umount(mountPoint) }
        let before = try #require(hugePages2M("nr_hugepages"))
        try "\(before + 8)".write(toFile: "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", atomically: false, encoding: .utf8)
        defer { try? "\(before)".write(toFile: "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", atomically: false, encoding: .utf8) }
        try #require(try #require(hugePages2M("nr_hugepages")) >= before + 8, "the kernel found no memory for 8 more huge pages: skipped")
        let freeBefore = try #require(hugePages2M("free_hugepages"))
        for threads in [1, 2] {
            let path = mountPoint + "/vm"
            defer { unlink(path) }
            let file = try KTask.MappedFile(path: path, size: 16 << 20, writable: true)
            try KTask.populate(file, write: true, options: KTask.Options(maxThreads: threads))
            #expect(hugePages2M("free_hugepages") == freeBefore - 8, "\(threads) threads: 8 huge pages taken from the pool")
            if threads == 1 { #expect(mappedBytes(file.buffer) == 0, "one thread: nothing mapped in this process, all fallocated") }
            #expect(file.residentBytes == 16 << 20, "\(threads) threads: resident, mapped here or not")
            #expect(file.pageCountsPerNode().values.reduce(0, +) == 8, "\(threads) threads: every huge page counted on a node")
        }
        #expect(hugePages2M("free_hugepages") == freeBefore, "file removed: back in the pool")
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
        let record = KTask.ChunkPlacementRecord()
        try KTask.populate(memory.buffer, pageMode: .base, onNodes: [0], write: true, bindMemory: true, options: KTask.Options(maxThreads: 2),
                           recording: record)
        #expect(KTask.NodeMemory.pageCounts(in: UnsafeRawBufferPointer(memory.buffer), pageSize: memory.pageMode.pageSize) == [0: 8192])
        let nodeCPUs = SystemLimits.current(nodeCPUs: .always).nodes.first { $0.id == 0 }?.cpus.cpus ?? []
        #expect(!record.cpus.isEmpty && record.cpus.allSatisfy(nodeCPUs.contains), "\(record.cpus)")
        #expect(!record.masks.isEmpty && record.masks.allSatisfy { $0.allSatisfy(nodeCPUs.contains) }, "\(record.masks)")
        #expect(Affinity.current() == before)
    }

    @Test("the per-node split covers every item once, in order, on aligned boundaries, the last node taking the rest")
    func split() {
        #expect(KTask.NodeRange.split(10_000, across: [1, 0], align: 512)
                == [KTask.NodeRange(node: 1, range: 0..<4608), KTask.NodeRange(node: 0, range: 4608..<10_000)])
        for (count, nodes, align) in [(0, [0], 1), (5, [0, 1, 2], 4), (1 << 20, [3, 1, 2], 512), (1000, [0, 1], 1)] {
            let ranges = KTask.NodeRange.split(count, across: nodes, align: align)
            #expect(ranges.map(\.node) == nodes)
            #expect(ranges.first?.range.lowerBound == 0 && ranges.last?.range.upperBound == count)
            #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.range.upperBound == $1.range.lowerBound && $0.range.upperBound % align == 0 })
        }
    }

    @Test("an unknown node or no node is a typed error before any work")
    func badNodes() throws {
        let memory = try KTask.Memory(bytes: 4 << 20, pages: .base)
        #expect(throws: KTask.Error.self) { try KTask.populate(memory.buffer, pageMode: .base, onNodes: [99]) }
        #expect(throws: KTask.Error.self) { try KTask.populate(memory.buffer, pageMode: .base, onNodes: []) }
        #expect(KTask.residentBytes(memory.buffer) == 0)
    }
}

@Suite("Populate progress")
struct PopulateProgressTests {
    /// What the progress callback saw: the values, and whether two calls ever overlapped.
    final class Seen: @unchecked Sendable {
        let inside = Atomic<Int>(0)
        let overlapped = Atomic<Bool>(false)
        let lock = NSLock()
        var values: [Int] = []

        func report(_ bytes: Int) {
            if inside.add(1, ordering: .relaxed).newValue > 1 { overlapped.store(true, ordering: .relaxed) }
            lock.withLock { values.append(bytes) }
            usleep(50)
            inside.subtract(1, ordering: .relaxed)
        }
    }

    @Test("told from one thread at a time, each report at least the last, never more than was done")
    func oneThreadAtATime() {
        let seen = Seen()
        let progress = ProgressReporter(intervalNanoseconds: 0) { seen.report($0) }
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<2000 { progress.add(4096) }
        }
        let overlapped = seen.overlapped.load(ordering: .relaxed)
        #expect(!overlapped)
        #expect(!seen.values.isEmpty && zip(seen.values, seen.values.dropFirst()).allSatisfy { $0 <= $1 })
        #expect(seen.values.allSatisfy { $0 <= 8000 * 4096 })
    }

    @Test("a large chunk is populated in pieces of 64 MiB, each one counted: one thread's job (one chunk) still moves")
    func pieces() throws {
        // A read populate of fresh anonymous memory maps the zero page: nothing allocated.
        let memory = try KTask.Memory(bytes: 256 << 20, pages: .base)
        let seen = Seen()
        let report = try KTask.populate(memory.buffer, pageMode: .base, with: KTask.prepare(memory.buffer, pageMode: .base, write: false),
                                        placement: nil, bindMemory: false, options: KTask.Options(maxThreads: 1),
                                        progress: ProgressReporter(intervalNanoseconds: 0) { seen.report($0) }, recording: nil)
        #expect(report.claimCount == 1)
        #expect(seen.values == [64 << 20, 128 << 20, 192 << 20, 256 << 20])
    }

    @Test("at most one report per interval")
    func interval() {
        let seen = Seen()
        let progress = ProgressReporter(intervalNanoseconds: 1_000_000_000) { seen.report($0) }
        for _ in 0..<1000 { progress.add(4096) }
        #expect(seen.values.isEmpty, "the first report comes an interval after the start: \(seen.values)")
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

    @Test("a tmpfs file just created is allocated through its descriptor where the caller says it is all zeros: every page, none mapped here")
    func createdTmpfsThroughDescriptor() throws {
        let path = "/dev/shm/ktask-lane-\(getpid())"
        unlink(path)
        defer { unlink(path) }
        let file = try KTask.MappedFile(path: path, size: 16 << 20, writable: true)
        try KTask.populate(file, onNodes: nil, write: true, options: KTask.Options(maxThreads: 1), progress: nil, recording: nil,
                           zeroNewFile: true)
        var status = stat()
        #expect(stat(path, &status) == 0 && Int(status.st_blocks) * 512 == 16 << 20, "every page allocated")
        #expect(mappedBytes(file.buffer) == 0, "written through the descriptor, no page-table entry made here")
        #expect(UnsafeRawBufferPointer(file.buffer).allSatisfy { $0 == 0 })
        #expect(file.pageCountsPerNode().values.reduce(0, +) == 4096, "counted per node though not mapped by the populate")
    }

    @Test("the public populate of a file it created keeps what the caller wrote into it since (no zeros written)")
    func createdTmpfsKeepsCallersData() throws {
        let path = "/dev/shm/ktask-lane-written-\(getpid())"
        unlink(path)
        defer { unlink(path) }
        let file = try KTask.MappedFile(path: path, size: 8 << 20, writable: true)
        file.buffer.storeBytes(of: 0x5a, toByteOffset: 5 << 20, as: UInt8.self)
        try KTask.populate(file, write: true, options: KTask.Options(maxThreads: 1))
        #expect(file.buffer.load(fromByteOffset: 5 << 20, as: UInt8.self) == 0x5a, "the caller's byte is still there")
        #expect(file.residentBytes == 8 << 20)
    }

    @Test("a created tmpfs file whose size is not a whole number of pages keeps its size through the zeros")
    func createdTmpfsOddSize() throws {
        let path = "/dev/shm/ktask-lane-odd-\(getpid())"
        unlink(path)
        defer { unlink(path) }
        let file = try KTask.MappedFile(path: path, size: 5000, writable: true)
        try KTask.populate(file, onNodes: nil, write: true, options: KTask.Options(maxThreads: 1), progress: nil, recording: nil,
                           zeroNewFile: true)
        var status = stat()
        #expect(stat(path, &status) == 0 && status.st_size == 5000, "size \(status.st_size)")
        #expect(Int(status.st_blocks) * 512 == 8192, "both pages allocated")
    }

    @Test("a tmpfs file that holds data is populated through the mapping: no byte written, every page mapped")
    func existingTmpfsThroughMapping() throws {
        let path = "/dev/shm/ktask-lane-data-\(getpid())"
        let fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0o600)
        try #require(fd >= 0)
        defer { unlink(path) }
        let block = [UInt8](repeating: 0x5a, count: 1 << 20)
        try #require(pwrite(fd, block, block.count, 3 << 20) == block.count && ftruncate(fd, 8 << 20) == 0)
        close(fd)
        let file = try KTask.MappedFile(path: path, writable: true)
        try KTask.populate(file, write: true, options: KTask.Options(maxThreads: 1))
        #expect(mappedBytes(file.buffer) == 8 << 20, "faulted in through the mapping")
        let bytes = UnsafeRawBufferPointer(file.buffer)
        #expect(bytes[(3 << 20)..<(4 << 20)].allSatisfy { $0 == 0x5a } && bytes[0..<(3 << 20)].allSatisfy { $0 == 0 })
    }

    @Test("a created file on a full tmpfs: a typed error at the first byte that did not fit, then undone",
          .enabled(if: getuid() == 0, "needs root to mount a small tmpfs: skipped"))
    func createdTmpfsFull() throws {
        let mountPoint = NSTemporaryDirectory() + "ktask-small-tmpfs-\(getpid())"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: mountPoint) }
        try #require(Glibc.mount("none", mountPoint, "tmpfs", 0, "size=4m") == 0, "tmpfs cannot be mounted here: skipped")
        defer { umount(mountPoint) }
        let file = try KTask.MappedFile(path: mountPoint + "/vm", size: 8 << 20, writable: true)
        #expect {
            try KTask.populate(file, onNodes: nil, write: true, options: KTask.Options(maxThreads: 1), progress: nil, recording: nil,
                               zeroNewFile: true)
        } throws: { error in
            guard case KTask.Error.populateFailed(let offset, let reason) = error else { return false }
            return offset == 4 << 20 && reason.hasPrefix("no space")
        }
        file.undoChanges()
        #expect(!FileManager.default.fileExists(atPath: mountPoint + "/vm"), "the file this call created is removed")
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

/// A file of `bytes` bytes of `value` in a new memfd (tmpfs), or nil.
func memfd(bytes: Int, filledWith value: UInt8?) -> Int32? {
    let fd = CKTask_memfd_create("ktask-populate-test", 0)
    guard fd >= 0 else { return nil }
    if let value {
        let block = [UInt8](repeating: value, count: 1 << 20)
        for offset in stride(from: 0, to: bytes, by: block.count) where pwrite(fd, block, block.count, off_t(offset)) != block.count {
            close(fd)
            return nil
        }
    } else if ftruncate(fd, off_t(bytes)) != 0 {
        close(fd)
        return nil
    }
    return fd
}

@Suite("Populate on an old kernel (no MADV_POPULATE_*) and at its limits", .serialized)
struct PopulateFallbackTests {
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))

    @Test("case 1: the write fallback allocates every page and changes no byte of a file that holds data", .timeLimit(.minutes(1)))
    func writeFallbackKeepsData() throws {
        let bytes = 8 << 20
        let fd = try #require(memfd(bytes: bytes, filledWith: 0xA5))
        defer { close(fd) }
        let address = try #require(mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0).flatMap { $0 == MAP_FAILED ? nil : $0 })
        defer { munmap(address, bytes) }
        let populate = MemoryPopulator(base: UInt(bitPattern: address), pageSize: page, write: true, usePopulate: false)
        try populate(0..<bytes / page)
        var contents = [UInt8](repeating: 0, count: bytes)
        #expect(pread(fd, &contents, bytes, 0) == bytes)
        let changed = contents.indices.filter { contents[$0] != 0xA5 }.count
        #expect(changed == 0, "\(changed) bytes changed")
    }

    @Test("case 1: the write fallback is a write fault: a sparse tmpfs file gets every page allocated", .timeLimit(.minutes(1)))
    func writeFallbackAllocates() throws {
        let bytes = 8 << 20
        let fd = try #require(memfd(bytes: bytes, filledWith: nil))
        defer { close(fd) }
        let address = try #require(mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0).flatMap { $0 == MAP_FAILED ? nil : $0 })
        defer { munmap(address, bytes) }
        try MemoryPopulator(base: UInt(bitPattern: address), pageSize: page, write: true, usePopulate: false)(0..<bytes / page)
        var status = stat()
        fstat(fd, &status)
        #expect(Int(status.st_blocks) * 512 == bytes, "every page allocated")
    }

    @Test("the write fallback in 2 MiB units faults in every base page where no huge page backs the memory", .timeLimit(.minutes(1)))
    func fallbackTouchesEveryBasePage() throws {
        let bytes = 8 << 20, unit = 2 << 20
        let fd = try #require(memfd(bytes: bytes, filledWith: nil))
        defer { close(fd) }
        // A shmem file without huge pages: a transparent-huge populate of it must still allocate all of it.
        let address = try #require(mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0).flatMap { $0 == MAP_FAILED ? nil : $0 })
        defer { munmap(address, bytes) }
        try MemoryPopulator(base: UInt(bitPattern: address), pageSize: unit, write: true, usePopulate: false)(0..<bytes / unit)
        var status = stat()
        fstat(fd, &status)
        #expect(Int(status.st_blocks) * 512 == bytes, "\(Int(status.st_blocks) * 512) of \(bytes) bytes allocated")
    }

    @Test("case 2: the read fallback reads every page of a file into the page cache", .timeLimit(.minutes(1)))
    func readFallbackReads() throws {
        let bytes = 32 << 20
        let path = NSTemporaryDirectory() + "ktask-read-fallback-\(getpid())"
        defer { unlink(path) }
        try Data(repeating: 0x3C, count: bytes).write(to: URL(fileURLWithPath: path))
        let fd = open(path, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        fsync(fd)
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
        let address = try #require(mmap(nil, bytes, PROT_READ, MAP_SHARED, fd, 0).flatMap { $0 == MAP_FAILED ? nil : $0 })
        defer { munmap(address, bytes) }
        let region = UnsafeMutableRawBufferPointer(start: address, count: bytes)
        try #require(KTask.residentBytes(region) < bytes, "the page cache kept the file: cannot tell a read from none")
        try MemoryPopulator(base: UInt(bitPattern: address), pageSize: page, write: false, usePopulate: false)(0..<bytes / page)
        #expect(KTask.residentBytes(region) == bytes)
    }

    @Test("case 2: a file truncated under the mapping is a typed error from the read fallback, not a SIGBUS", .timeLimit(.minutes(1)))
    func readFallbackTruncated() throws {
        let bytes = 8 << 20
        let fd = try #require(memfd(bytes: bytes, filledWith: 0x11))
        defer { close(fd) }
        let address = try #require(mmap(nil, bytes, PROT_READ, MAP_SHARED, fd, 0).flatMap { $0 == MAP_FAILED ? nil : $0 })
        defer { munmap(address, bytes) }
        try #require(ftruncate(fd, off_t(page)) == 0)
        #expect(throws: KTask.Error.self) {
            try MemoryPopulator(base: UInt(bitPattern: address), pageSize: page, write: false, usePopulate: false)(0..<bytes / page)
        }
    }

    @Test("a SIGBUS sent with kill during a guarded walk is not a populate failure: the process dies of it, as without ktask")
    func sentBusIsNotAFailure() async {
        await #expect(processExitsWith: .signal(SIGBUS)) {
            let page = Int(sysconf(Int32(_SC_PAGESIZE))), bytes = 256 << 20
            guard let address = mmap(nil, bytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), address != MAP_FAILED else { exit(2) }
            var bus = sigset_t()
            sigemptyset(&bus)
            sigaddset(&bus, SIGBUS)
            pthread_sigmask(SIG_UNBLOCK, &bus, nil)
            let walker = pthread_self()
            Thread.detachNewThread {
                usleep(200_000)
                pthread_kill(walker, SIGBUS)
            }
            let populate = MemoryPopulator(base: UInt(bitPattern: address), pageSize: page, write: false, usePopulate: false)
            while true {
                do { try populate(0..<bytes / page) } catch { exit(3) }
            }
        }
    }

    @Test("SIGBUS ignored before: a fault outside any walk takes the default action instead of repeating forever",
          .timeLimit(.minutes(1)))
    func ignoredBusFaultStillEnds() async {
        await #expect(processExitsWith: .signal(SIGBUS)) {
            signal(SIGBUS, SIG_IGN)
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            guard let fd = memfd(bytes: 4 * page, filledWith: 0x11),
                  let address = mmap(nil, 4 * page, PROT_READ, MAP_SHARED, fd, 0), address != MAP_FAILED else { exit(2) }
            // A walk installs the guard; then the file is cut short and read outside any walk.
            do { try MemoryPopulator(base: UInt(bitPattern: address), pageSize: page, write: false, usePopulate: false)(0..<4) } catch { exit(3) }
            guard ftruncate(fd, off_t(page)) == 0 else { exit(4) }
            _ = (address + 2 * page).load(as: UInt8.self)
            exit(5)
        }
    }

    @Test("case 4: transparent huge pages near the largest size are a typed error, not an overflow trap")
    func thpOverflow() throws {
        let size = Int.max - (2 << 20) + 1
        #expect(throws: KTask.Error.self) { _ = try KTask.Memory(bytes: size, pages: .transparentHuge) }
    }

    @Test("case 16: a hugetlbfs page size without a page mode (arm64's 64 KiB) is not taken for 2 MiB")
    func unusualHugePageSize() throws {
        #expect(KTask.MappedFile.Kind.hugetlbfs(pageSize: 64 << 10).pageMode != .hugetlb2M)
        #expect(KTask.MappedFile.Kind.hugetlbfs(pageSize: 1 << 30).pageMode == .hugetlb1G)
    }

    @Test("case 16: a hugetlbfs mount of 64 KiB or 32 MiB pages is a typed error naming the size")
    func unusualHugePageSizeRefused() throws {
        for size in [64 << 10, 32 << 20] {
            #expect(throws: KTask.Error.self) { _ = try KTask.MappedFile.Kind(filesystemType: 0x9584_58f6, blockSize: size, path: "/mnt/huge/vm") }
        }
        #expect(try KTask.MappedFile.Kind(filesystemType: 0x9584_58f6, blockSize: 2 << 20, path: "/mnt/huge/vm") == .hugetlbfs(pageSize: 2 << 20))
        #expect(try KTask.MappedFile.Kind(filesystemType: 0x0102_1994, blockSize: 4096, path: "/dev/shm/vm") == .tmpfs)
    }
}

/// Bytes of `region` mapped in this process's page tables (/proc/self/pagemap's present bit per base page):
/// a page can be in a file's page cache, resident for mincore, without being mapped here.
func mappedBytes(_ region: UnsafeMutableRawBufferPointer) -> Int? {
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    guard let base = region.baseAddress else { return nil }
    let fd = open("/proc/self/pagemap", O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var entries = [UInt64](repeating: 0, count: region.count / page)
    let bytes = entries.count * 8
    let read = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, bytes, off_t(Int(bitPattern: base) / page * 8)) }
    guard read == bytes else { return nil }
    return entries.reduce(0) { $0 + ($1 >> 63 == 1 ? page : 0) }
}
