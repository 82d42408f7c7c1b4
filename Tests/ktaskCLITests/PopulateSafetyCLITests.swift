import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runs the built `ktask` under `timeout` (a populate that hangs fails instead of stopping the tests) and,
/// with `inject`, under `strace -f -e inject=madvise:error=<inject>`: a kernel without MADV_POPULATE_* (EINVAL),
/// or one whose populate fails.
func runKTaskSafely(_ arguments: [String], inject: String? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
    let ktask = try ktaskExecutable()
    guard let inject else { return try runCommand("/usr/bin/timeout", ["60", ktask] + arguments) }
    return try runCommand("/usr/bin/timeout", ["60", "/usr/bin/strace", "-f", "-o", "/dev/null", "-e", "inject=madvise,pwritev:error=\(inject)", ktask] + arguments)
}

/// A file's bytes, size, allocated bytes and owner.
func fileFacts(_ path: String) -> (size: Int, allocated: Int, owner: UInt32)? {
    var status = stat()
    guard lstat(path, &status) == 0 else { return nil }
    return (Int(status.st_size), Int(status.st_blocks) * 512, status.st_uid)
}

/// The NUMA policy of a shared tmpfs file (kept on its inode after the process that set it is gone), as
/// /proc/self/numa_maps shows it for a fresh mapping of it: "default", "bind:0", ...; nil where unreadable.
func filePolicy(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    guard let address = mmap(nil, 4096, PROT_READ, MAP_SHARED, fd, 0), address != MAP_FAILED else { return nil }
    defer { munmap(address, 4096) }
    let start = String(UInt(bitPattern: address), radix: 16)
    // Read to the end: String(contentsOfFile:) stops after the first page of a procfs file.
    let maps = FileHandle(forReadingAtPath: "/proc/self/numa_maps").map { String(decoding: $0.readDataToEndOfFile(), as: UTF8.self) } ?? ""
    return maps.split(separator: "\n").first { $0.hasPrefix(start + " ") }.map { String($0.split(separator: " ")[1]) }
}

let straceUsable = FileManager.default.isExecutableFile(atPath: "/usr/bin/strace")
    && (try? runCommand("/usr/bin/strace", ["-f", "-o", "/dev/null", "-e", "inject=madvise:error=EINVAL", "/bin/true"]).status) == 0

@Suite("ktask populate on a shared machine: no lost data, no borrowed privilege", .serialized)
struct PopulateSafetyCLITests {
    let shm = "/dev/shm/ktask-safety-\(getpid())"

    @Test("case 1: --write through the fallback (madvise EINVAL) leaves an 8 MiB file of 0xA5 all 0xA5, every page allocated",
          .enabled(if: straceUsable, "needs strace with fault injection: skipped"), .timeLimit(.minutes(2)))
    func writeFallbackKeepsData() throws {
        let path = shm + "-a5"
        defer { unlink(path) }
        let data = Data(repeating: 0xA5, count: 8 << 20)
        try data.write(to: URL(fileURLWithPath: path))
        let run = try runKTaskSafely(["populate", path, "--write", "--format", "json"], inject: "EINVAL")
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == data, "a write populate changed the file")
    }

    @Test("case 2: a 32 MiB disk file read through the fallback (madvise EINVAL) is resident afterwards",
          .enabled(if: straceUsable, "needs strace with fault injection: skipped"), .timeLimit(.minutes(2)))
    func readFallbackResident() throws {
        let path = NSTemporaryDirectory() + "ktask-safety-\(getpid()).read"
        defer { unlink(path) }
        try Data(repeating: 0x42, count: 32 << 20).write(to: URL(fileURLWithPath: path))
        let fd = open(path, O_RDONLY)
        fsync(fd)
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
        close(fd)
        let run = try runKTaskSafely(["populate", path, "--format", "json"], inject: "EINVAL")
        #expect(run.status == 0, "\(run.stderr)")
        let document = try jsonObject(run.stdout)
        try #require((document["resident_before"] as? Int ?? 0) < 32 << 20, "the page cache kept the file: cannot tell: \(run.stdout)")
        #expect(document["resident_after"] as? Int == 32 << 20, "\(run.stdout)")
    }

    @Test("probe: a failure other than EINVAL (ENOMEM) is reported, not taken for an old kernel",
          .enabled(if: straceUsable, "needs strace with fault injection: skipped"), .timeLimit(.minutes(2)))
    func probeOnlyEINVAL() throws {
        // A file that exists: populated through the mapping (madvise), where the probe matters. A file this
        // call created is written through its descriptor (pwritev, failing here too) and removed.
        let path = shm + "-enomem", made = shm + "-enomem-new"
        defer { unlink(path); unlink(made) }
        try #require(FileManager.default.createFile(atPath: path, contents: nil) && truncate(path, 8 << 20) == 0)
        let run = try runKTaskSafely(["populate", path, "--write"], inject: "ENOMEM")
        #expect(run.status == 1, "\(run.stderr)")
        #expect(run.stderr.contains("Cannot allocate memory"), "\(run.stderr)")
        #expect(fileFacts(path).map { ($0.size, $0.allocated) } ?? (0, 1) == (8 << 20, 0), "the file is as it was")
        let new = try runKTaskSafely(["populate", made, "--size", "8M", "--write"], inject: "ENOMEM")
        #expect(new.status == 1 && new.stderr.contains("Cannot allocate memory"), "\(new.stderr)")
        #expect(fileFacts(made) == nil, "the file this call created is removed")
    }

    @Test("case 12: EFAULT reads \"no space\"; the file this call created is removed, the one it extended truncated back",
          .enabled(if: straceUsable, "needs strace with fault injection: skipped"), .timeLimit(.minutes(2)))
    func failedPopulateUndone() throws {
        let created = shm + "-efault-new", extended = shm + "-efault-old"
        defer { unlink(created); unlink(extended) }
        let made = try runKTaskSafely(["populate", created, "--size", "8M", "--write"], inject: "EFAULT")
        #expect(made.status == 1 && made.stderr.contains("no space"), "\(made.stderr)")
        #expect(fileFacts(created) == nil, "created, so removed")
        try Data(repeating: 7, count: 4096).write(to: URL(fileURLWithPath: extended))
        let grown = try runKTaskSafely(["populate", extended, "--size", "8M", "--write"], inject: "EFAULT")
        #expect(grown.status == 1, "\(grown.stderr)")
        #expect(fileFacts(extended)?.size == 4096, "extended, so truncated back")
        #expect(try Data(contentsOf: URL(fileURLWithPath: extended)) == Data(repeating: 7, count: 4096))
    }

    @Test("case 12: a populate that runs out of tmpfs space names the file offset of the first page it could not allocate and says no space",
          .enabled(if: getuid() == 0, "needs root to mount a small tmpfs: skipped"), .timeLimit(.minutes(2)))
    func fileOffsets() throws {
        // A tmpfs of 101 MiB in a mount namespace of the run's own (a killed run leaves no mount): on one
        // thread the populate fails in its second 64 MiB piece, 1 MiB into a 2 MiB chunk.
        let folder = try makeScratchFolder("small-tmpfs")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let run = try runCommand("/usr/bin/unshare", ["-m", "sh", "-c", "mount -t tmpfs -o size=101M none \"$1\" && exec \"$2\" populate "
                                                      + "\"$1/vm\" --size 192M --write --threads 1", "sh", folder, try ktaskExecutable()])
        #expect(run.status == 1, "\(run.stderr)")
        #expect(run.stderr.contains("no space"), "\(run.stderr)")
        let words = run.stderr.split(separator: " ")
        let offset = words.firstIndex(of: "byte").flatMap { Int(words[$0 + 1].filter(\.isNumber)) }
        #expect(offset == 101 << 20, "the file offset where tmpfs ran out, not its chunk's start (100 MiB): \(run.stderr)")
    }

    @Test("case 12: an existing sparse tmpfs file larger than free memory is refused once for the whole file, not per segment",
          .timeLimit(.minutes(2)))
    func wholeFileMemoryCheck() throws {
        let meminfo = try String(contentsOfFile: "/proc/meminfo", encoding: .utf8)
        let available = try #require(meminfo.split(separator: "\n").first { $0.hasPrefix("MemAvailable:") }
            .flatMap { Int($0.split(separator: " ")[1]) }) * 1024
        let path = shm + "-sparse"
        defer { unlink(path) }
        let fd = open(path, O_CREAT | O_RDWR | O_EXCL, 0o600)
        try #require(fd >= 0 && ftruncate(fd, off_t(available + available / 4)) == 0)
        close(fd)
        let run = try runKTaskSafely(["populate", path, "--write"])
        #expect(run.status == 1 && run.stderr.contains("more would be faulted in"), "\(run.stderr)")
        #expect(fileFacts(path)?.allocated == 0)
    }

    @Test("case 5: a symbolic link planted in /dev/shm is refused; its target is not extended", .timeLimit(.minutes(1)))
    func plantedSymlink() throws {
        let link = shm + "-link", target = shm + "-target"
        defer { unlink(link); unlink(target) }
        try Data(count: 4096).write(to: URL(fileURLWithPath: target))
        try #require(symlink(target, link) == 0)
        let run = try runKTaskSafely(["populate", link, "--size", "64M", "--write"])
        #expect(run.status == 1 && run.stderr.contains("symbolic link"), "\(run.stderr)")
        #expect(fileFacts(target)?.size == 4096)
    }

    @Test("case 5: another user's file in /dev/shm is refused without --allow-other-owner, and never extended",
          .enabled(if: getuid() == 0, "needs root to give a file to nobody: skipped"), .timeLimit(.minutes(1)))
    func plantedByAnotherUser() throws {
        let path = shm + "-planted"
        defer { unlink(path) }
        let plant = try runCommand("/usr/bin/setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                                        "/usr/bin/truncate", "-s", "8M", path])
        try #require(plant.status == 0 && fileFacts(path)?.owner == 65534, "nobody cannot make a file here: \(plant.stderr)")
        let refused = try runKTaskSafely(["populate", path, "--write"])
        #expect(refused.status == 1 && refused.stderr.contains("owned by uid 65534"), "\(refused.stderr)")
        #expect(fileFacts(path)?.allocated == 0, "nothing allocated in it")
        let grown = try runKTaskSafely(["populate", path, "--size", "16M", "--write", "--allow-other-owner"])
        #expect(grown.status == 1 && grown.stderr.contains("only a file this user owns"), "\(grown.stderr)")
        #expect(fileFacts(path)?.size == 8 << 20)
        let allowed = try runKTaskSafely(["populate", path, "--write", "--allow-other-owner"])
        #expect(allowed.status == 0, "\(allowed.stderr)")
        #expect(fileFacts(path)?.allocated == 8 << 20)
    }

    @Test("case 5: another user's file in a subfolder they made (not sticky, not world-writable) is refused for --write",
          .enabled(if: getuid() == 0, "needs root to give a folder to nobody: skipped"), .timeLimit(.minutes(1)))
    func plantedInAnotherUsersFolder() throws {
        let folder = shm + "-vm", path = folder + "/ram"
        defer { unlink(path); rmdir(folder) }
        let plant = try runCommand("/usr/bin/setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "/bin/sh", "-c",
                                                        "mkdir -m 755 \(folder) && truncate -s 4M \(path) && chmod 666 \(path)"])
        try #require(plant.status == 0, "nobody cannot make a folder here: \(plant.stderr)")
        let refused = try runKTaskSafely(["populate", path, "--write"])
        #expect(refused.status == 1 && refused.stderr.contains("owned by uid 65534"), "\(refused.stderr)")
        #expect(fileFacts(path)?.allocated == 0, "nothing of root's went into it")
        // Reading another user's tmpfs file changes and allocates nothing: allowed.
        #expect(try runKTaskSafely(["populate", path]).status == 0)
    }

    @Test("case 5: a hard link to one of root's own files is not written through without --allow-other-owner",
          .timeLimit(.minutes(1)))
    func hardLinkRefused() throws {
        let target = shm + "-root-file", link = shm + "-hardlink"
        defer { unlink(link); unlink(target) }
        try Data(count: 4096).write(to: URL(fileURLWithPath: target))
        try #require(Glibc.link(target, link) == 0)
        let refused = try runKTaskSafely(["populate", link, "--size", "8M", "--write"])
        #expect(refused.status == 1 && refused.stderr.contains("links"), "\(refused.stderr)")
        #expect(fileFacts(target)?.size == 4096, "the other name's file was not extended")
    }

    @Test("a file whose size is not a whole number of pages: read on disk, and --write keeps a tmpfs file's size",
          .timeLimit(.minutes(1)))
    func sizeNotAPageMultiple() throws {
        let folder = try makeScratchFolder("odd")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let disk = folder + "/odd", memory = shm + "-odd"
        defer { unlink(memory) }
        try Data(repeating: 7, count: 5000).write(to: URL(fileURLWithPath: disk))
        try Data(repeating: 7, count: 5000).write(to: URL(fileURLWithPath: memory))
        let read = try runKTaskSafely(["populate", disk])
        #expect(read.status == 0, "\(read.stderr)")
        #expect(fileFacts(disk)?.size == 5000)
        let written = try runKTaskSafely(["populate", memory, "--write"])
        #expect(written.status == 0, "\(written.stderr)")
        #expect(fileFacts(memory)?.size == 5000, "not grown to a whole page")
        let grown = try runKTaskSafely(["populate", memory, "--size", "10000", "--write"])
        #expect(grown.status == 0 && fileFacts(memory)?.size == 10000, "extended to the size asked, not past it: \(grown.stderr)")
    }

    @Test("--size of a missing file on a disk folder is refused before anything is made there",
          .enabled(if: straceUsable, "needs strace to see the opens: skipped"), .timeLimit(.minutes(1)))
    func noFileMadeOnDisk() throws {
        let folder = try makeScratchFolder("nomake")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let trace = folder + ".trace"
        defer { unlink(trace) }
        let run = try runCommand("/usr/bin/strace", ["-f", "-o", trace, "-e", "trace=openat,unlinkat", try ktaskExecutable(),
                                                     "populate", folder + "/new", "--size", "1M"])
        #expect(run.status == 1 && run.stderr.contains("disk filesystem"), "\(run.stderr)")
        let calls = try String(contentsOfFile: trace, encoding: .utf8)
        #expect(!calls.contains("O_CREAT"), "no file was created, not even for a moment")
    }

    @Test("a populate stopped by SIGTERM removes the file it created and truncates back the one it extended",
          .enabled(if: hasPython, "needs python3 to unblock SIGTERM: skipped"), .timeLimit(.minutes(1)))
    func stoppedPopulateUndone() throws {
        let made = shm + "-stopped-new", grown = shm + "-stopped-grown"
        defer { unlink(made); unlink(grown) }
        try Data(repeating: 1, count: 4 << 20).write(to: URL(fileURLWithPath: grown))
        for (path, expected) in [(made, nil), (grown, 4 << 20)] as [(String, Int?)] {
            // 6 GiB on one thread takes seconds here; SIGTERM comes after half a second, mid-populate. The
            // test runner's children inherit a mask blocking SIGTERM: python clears it, as a shell's child has.
            let start = ContinuousClock.now
            let run = try runCommand("/usr/bin/python3", ["-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); "
                                                          + "os.execv(sys.argv[1], sys.argv[1:])", "/usr/bin/timeout", "-s", "TERM", "0.5",
                                                          try ktaskExecutable(), "populate", path, "--size", "6G", "--write", "--threads", "1"])
            #expect(run.status == 124, "stopped by timeout's SIGTERM, not finished: \(run.status) \(run.stderr)")
            // The kernel finishes a MADV_POPULATE call before the handler runs: one call for all 6 GiB took 14 s.
            #expect(ContinuousClock.now - start < .seconds(5), "ended soon after SIGTERM")
            #expect(fileFacts(path)?.size == expected, "\(path): \(String(describing: fileFacts(path)))")
        }
    }

    @Test("case 6: a FIFO at the path is refused at once, not waited on", .timeLimit(.minutes(1)))
    func fifo() throws {
        let path = shm + "-fifo"
        defer { unlink(path) }
        try #require(mkfifo(path, 0o600) == 0)
        for arguments in [["populate", path], ["populate", path, "--size", "8M", "--write"]] {
            let run = try runKTaskSafely(arguments)
            #expect(run.status == 1 && run.stderr.contains("not a regular file"), "\(arguments): status \(run.status) \(run.stderr)")
        }
    }

    @Test("case 6: the file swapped for a FIFO while ktask looks at it (strace delays fstatfs) neither hangs nor is used",
          .enabled(if: straceUsable, "needs strace with fault injection: skipped"), .timeLimit(.minutes(1)))
    func swappedForFIFO() throws {
        let path = shm + "-swap"
        defer { unlink(path) }
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: path))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        process.arguments = ["15", "/usr/bin/strace", "-f", "-o", "/dev/null", "-e", "inject=fstatfs,statfs:delay_exit=1500000",
                             try ktaskExecutable(), "populate", path]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = Pipe()
        try process.run()
        usleep(700_000)  // inside the first delayed fstatfs: after the old code's check, before its open
        unlink(path)
        try #require(mkfifo(path, 0o600) == 0)
        var waited = 0
        while process.isRunning && waited < 100 {
            usleep(100_000)
            waited += 1
        }
        let hung = process.isRunning
        if hung {
            // Stuck in open() on the FIFO: a writer lets that open return, so the test ends.
            let writer = open(path, O_WRONLY | O_NONBLOCK)
            if writer >= 0 { close(writer) }
        }
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(!hung, "hung on the FIFO for 10 s: \(stderr)")
        #expect(process.terminationStatus == 0 || stderr.contains("not a regular file"), "status \(process.terminationStatus): \(stderr)")
    }

    @Test("case 8: a read-only --nodes populate of another user's sparse tmpfs file allocates none of its holes",
          .enabled(if: getuid() == 0, "needs root to give a file to nobody: skipped"), .timeLimit(.minutes(1)))
    func readOnlyNodes() throws {
        let path = shm + "-nodes"
        defer { unlink(path) }
        let plant = try runCommand("/usr/bin/setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                                        "/usr/bin/truncate", "-s", "8M", path])
        try #require(plant.status == 0, "nobody cannot make a file here: \(plant.stderr)")
        let run = try runKTaskSafely(["populate", path, "--nodes", "0", "--allow-other-owner"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(fileFacts(path)?.allocated == 0, "a read allocates no hole")
        #expect(filePolicy(path) == "default", "no NUMA policy set on another user's file")
    }

    @Test("case 8: --nodes binds a tmpfs file only with --write (a read sets no policy and allocates no hole)",
          .enabled(if: FileManager.default.fileExists(atPath: "/proc/self/numa_maps"), "no /proc/self/numa_maps (kernel without NUMA): skipped"),
          .timeLimit(.minutes(1)))
    func nodesBindOnlyForWrite() throws {
        let path = shm + "-bind"
        defer { unlink(path) }
        let fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0o600)
        try #require(fd >= 0 && ftruncate(fd, 8 << 20) == 0)
        close(fd)
        let read = try runKTaskSafely(["populate", path, "--nodes", "0"])
        #expect(read.status == 0, "\(read.stderr)")
        #expect(filePolicy(path) == "default" && fileFacts(path)?.allocated == 0, "policy \(filePolicy(path) ?? "?")")
        let write = try runKTaskSafely(["populate", path, "--nodes", "0", "--write"])
        #expect(write.status == 0, "\(write.stderr)")
        #expect(filePolicy(path) == "bind:0" && fileFacts(path)?.allocated == 8 << 20, "policy \(filePolicy(path) ?? "?")")
    }

    @Test("case 15: a disk file's access time is unchanged by a populate", .timeLimit(.minutes(1)))
    func accessTime() throws {
        let path = NSTemporaryDirectory() + "ktask-safety-\(getpid()).atime"
        defer { unlink(path) }
        try Data(repeating: 1, count: 1 << 20).write(to: URL(fileURLWithPath: path))
        // Two days old: relatime would update it on any read.
        let old = timeval(tv_sec: time(nil) - 2 * 86_400, tv_usec: 0)
        var times = [old, timeval(tv_sec: time(nil), tv_usec: 0)]
        try #require(utimes(path, &times) == 0)
        var before = stat()
        stat(path, &before)
        let run = try runKTaskSafely(["populate", path])
        #expect(run.status == 0, "\(run.stderr)")
        var after = stat()
        stat(path, &after)
        #expect(after.st_atim.tv_sec == before.st_atim.tv_sec, "access time changed")
    }
}
