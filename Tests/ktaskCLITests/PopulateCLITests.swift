import Foundation
import Testing

/// A JSON document's top-level object.
func jsonObject(_ text: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
}

@Suite("ktask populate: files into the page cache, tmpfs and hugetlbfs memory allocated", .serialized)
struct PopulateCLITests {
    let folder = "/dev/shm/ktask-populate-\(getpid())"

    @Test("a tmpfs file is created at --size and with --write every page is allocated")
    func tmpfsWrite() throws {
        let path = folder + "-vm"
        defer { unlink(path) }
        let run = try runKTask(["populate", path, "--size", "64M", "--write", "--format", "json"])
        #expect(run.status == 0, "\(run.stderr)")
        let document = try jsonObject(run.stdout)
        #expect(document["kind"] as? String == "tmpfs")
        #expect(document["bytes"] as? Int == 64 << 20)
        #expect(document["resident_before"] as? Int == 0)
        #expect(document["resident_after"] as? Int == 64 << 20)
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int == 64 << 20)
    }

    @Test("without --verify a new file's residency is known, not walked, and no pages are counted per node; --verify measures them")
    func verifyMeasures() throws {
        let path = folder + "-verify"
        defer { unlink(path) }
        let plain = try runKTask(["populate", path, "--size", "32M", "--write", "--format", "json"])
        #expect(plain.status == 0, "\(plain.stderr)")
        let known = try jsonObject(plain.stdout)
        #expect(known["resident_before"] as? Int == 0 && known["resident_after"] as? Int == 32 << 20)
        #expect(known["pages_per_node"] is NSNull, "not counted unless asked: \(plain.stdout)")
        unlink(path)
        let verified = try runKTask(["populate", path, "--size", "32M", "--write", "--verify", "--format", "json"])
        #expect(verified.status == 0, "\(verified.stderr)")
        let measured = try jsonObject(verified.stdout)
        #expect(measured["resident_before"] as? Int == 0 && measured["resident_after"] as? Int == 32 << 20)
        #expect((measured["pages_per_node"] as? [String: Int])?.values.reduce(0, +) == 8192, "\(verified.stdout)")
    }

    @Test("--nodes: every page on the node, every chunk on its CPUs, the caller's own mask back afterwards")
    func perNode() throws {
        let path = folder + "-node0"
        defer { unlink(path) }
        let run = try runKTask(["populate", path, "--size", "16M", "--write", "--nodes", "0", "--format", "json"])
        #expect(run.status == 0, "\(run.stderr)")
        let document = try jsonObject(run.stdout)
        #expect(document["pages_per_node"] as? [String: Int] == ["0": 4096], "\(run.stdout)")
        #expect((document["cpus_seen"] as? [Int])?.isEmpty == false, "\(run.stdout)")
    }

    @Test("a file on disk is read into the page cache, 100% resident after, its contents and times unchanged")
    func pageCacheRead() throws {
        let path = NSTemporaryDirectory() + "ktask-populate-\(getpid()).data"
        defer { unlink(path) }
        let contents = Data((0..<(16 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) })
        try contents.write(to: URL(fileURLWithPath: path))
        // Out of the page cache: written back, then dropped (no root needed for one's own clean pages).
        let fd = open(path, O_RDONLY)
        fsync(fd)
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
        close(fd)
        let modified = try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date
        let run = try runKTask(["populate", path, "--format", "json"])
        #expect(run.status == 0, "\(run.stderr)")
        let document = try jsonObject(run.stdout)
        #expect(document["kind"] as? String == "page cache")
        #expect((document["resident_before"] as? Int ?? Int.max) < 16 << 20, "dropped first: \(run.stdout)")
        #expect(document["resident_after"] as? Int == 16 << 20)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == contents)
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date == modified)
        let fincore = try runCommand("/usr/bin/env", ["fincore", "--bytes", "--noheadings", "--output", "RES", path])
        if fincore.status == 0 { #expect(fincore.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "\(16 << 20)") }
    }

    @Test("missing, a folder, --write on disk, --pages the filesystem cannot hold, more than free memory: clear errors, nothing left behind")
    func errors() throws {
        let disk = NSTemporaryDirectory() + "ktask-populate-\(getpid()).disk"
        try Data(count: 4096).write(to: URL(fileURLWithPath: disk))
        defer { unlink(disk) }
        let cases: [([String], Int32, String)] = [
            (["populate", "/nonexistent/file"], 1, "does not exist"),
            (["populate", NSTemporaryDirectory()], 1, "is a folder"),
            (["populate", disk, "--write"], 1, "only read into the page cache"),
            (["populate", folder + "-pages", "--size", "8M", "--pages", "hugetlb-2M"], 2, "holds 4k pages"),
            (["populate", folder + "-huge", "--size", "1000T", "--write"], 1, "more would be faulted in"),
            (["populate", disk, "--size", "0"], 2, "is invalid for '--size"),
            (["populate", folder + "-node", "--size", "8M", "--write", "--nodes", "63"], 2, "node 63 does not exist"),
        ]
        for (arguments, status, message) in cases {
            let run = try runKTask(arguments)
            #expect(run.status == status, "\(arguments): \(run.stderr)")
            #expect(run.stderr.contains(message), "\(arguments): \(run.stderr)")
        }
        for suffix in ["-pages", "-huge", "-node"] { #expect(!FileManager.default.fileExists(atPath: folder + suffix), "\(suffix)") }
        #expect(try Data(contentsOf: URL(fileURLWithPath: disk)) == Data(count: 4096))
    }

    @Test("a file another user may not read: no permission, said plainly",
          .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs root and setpriv: skipped"))
    func noPermission() throws {
        let path = "/dev/shm/ktask-private-\(getpid())"
        try Data(count: 4096).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o600)
        defer { unlink(path) }
        let run = try runCommand("/usr/bin/setpriv", ["--reuid", "65534", "--regid", "65534", "--clear-groups", try ktaskExecutable(), "populate", path])
        try #require(!run.stderr.contains("Permission denied") || run.stderr.contains("ktask:"), "ktask itself cannot run as nobody here: \(run.stderr)")
        #expect(run.status == 1, "\(run.stderr)")
        #expect(run.stderr.contains("no permission to read it"), "\(run.stderr)")
    }

    @Test("hugetlbfs: a pool too small is refused before the file is made; with pages reserved every page is taken",
          .enabled(if: getuid() == 0, "needs root to mount hugetlbfs and reserve pages: skipped"))
    func hugetlbfs() throws {
        let mountPoint = NSTemporaryDirectory() + "ktask-hugetlbfs-\(getpid())"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: mountPoint) }
        let mount = try runCommand("/usr/bin/env", ["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "none", mountPoint])
        try #require(mount.status == 0, "hugetlbfs cannot be mounted here: \(mount.stderr)")
        defer { _ = try? runCommand("/usr/bin/env", ["umount", mountPoint]) }
        let nrFile = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
        let before = try String(contentsOfFile: nrFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        defer { try? before.write(toFile: nrFile, atomically: false, encoding: .utf8) }
        try "\((Int(before) ?? 0) + 8)".write(toFile: nrFile, atomically: false, encoding: .utf8)

        let tooBig = try runKTask(["populate", mountPoint + "/big", "--size", "1G", "--write"])
        #expect(tooBig.status == 1 && tooBig.stderr.contains("nr_hugepages"), "\(tooBig.stderr)")
        #expect(!FileManager.default.fileExists(atPath: mountPoint + "/big"))

        let run = try runKTask(["populate", mountPoint + "/vm", "--size", "16M", "--write", "--format", "json"])
        defer { unlink(mountPoint + "/vm") }
        #expect(run.status == 0, "\(run.stderr)")
        let document = try jsonObject(run.stdout)
        #expect(document["kind"] as? String == "hugetlbfs" && document["pages"] as? String == "hugetlb-2M", "\(run.stdout)")
        #expect(document["resident_after"] as? Int == 16 << 20, "\(run.stdout)")
    }

    @Test("bench prefault in a memory cgroup too small says so instead of being OOM-killed",
          .enabled(if: getuid() == 0 && FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/cgroup.procs"),
                   "needs root and the cgroup v1 memory controller: skipped"))
    func memoryCgroupLimit() throws {
        let group = "/sys/fs/cgroup/memory/ktask-test-\(getpid())"
        try FileManager.default.createDirectory(atPath: group, withIntermediateDirectories: false)
        defer { rmdir(group) }
        try "256M".write(toFile: group + "/memory.limit_in_bytes", atomically: false, encoding: .utf8)
        let run = try runCommand("/bin/sh", ["-c", "echo $$ > \(group)/cgroup.procs && exec \"$0\" bench --workload prefault --size 1G --threads 1 --runs 1",
                                             try ktaskExecutable()])
        #expect(run.status == 1, "\(run.stderr)")
        #expect(run.stderr.contains("more would be faulted in") && run.stderr.contains("memory.limit_in_bytes"), "\(run.stderr)")
    }
}

@Suite("compare with QEMU's preallocation", .serialized)
struct QEMUCompareCLITests {
    @Test("prefault with --pages thp: QEMU rows where qemu-system is installed, else listed missing with the reason")
    func qemuRows() throws {
        let run = try runKTask(["compare", "--workload", "prefault", "--pages", "thp", "--size", "64M", "--threads", "1,2", "--runs", "1",
                                "--systems", "qemu", "--format", "json"])
        #expect(run.status == 0, "\(run.stderr)")
        let document = try jsonObject(run.stdout)
        let rows = try #require(document["rows"] as? [[String: Any]])
        let missing = try #require(document["missing"] as? [[String: Any]])
        let installed = FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-system-x86_64")
        if installed {
            #expect(rows.filter { $0["system"] as? String == "qemu" }.count == 2, "\(run.stdout)")
        } else {
            #expect(missing.contains { ($0["reason"] as? String)?.contains("not installed") == true }, "\(run.stdout)")
        }
    }

    @Test("QEMU only preallocates memory: another workload lists it missing, and the default systems leave it out")
    func qemuOnlyForPrefault() throws {
        let named = try runKTask(["compare", "--workload", "compute", "--size", "1M", "--threads", "1", "--runs", "1", "--systems", "qemu"])
        #expect(named.status == 0, "\(named.stderr)")
        #expect(named.stdout.contains("qemu: missing: QEMU only preallocates guest memory"), "\(named.stdout)")
        let defaults = try runKTask(["compare", "--workload", "compute", "--size", "1M", "--threads", "1", "--runs", "1", "--format", "json"])
        #expect(!defaults.stdout.contains("\"qemu\""), "\(defaults.stdout)")
        let misuse = try runKTask(["compare", "--workload", "compute", "--pages", "thp"])
        #expect(misuse.status == 2, "\(misuse.stderr)")
    }
}
