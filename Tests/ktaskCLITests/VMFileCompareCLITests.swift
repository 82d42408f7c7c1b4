import Foundation
import Testing

/// qemu-system-x86_64 on PATH, as `ktask compare` looks for it.
let qemuInstalled = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
    .contains { FileManager.default.isExecutableFile(atPath: "\($0)/qemu-system-x86_64") }

/// Root with unshare: a test can give a run a /dev/shm (or hugetlbfs mount) of its own in a private mount
/// namespace, so that what it leaves there is seen exactly, whatever else runs on the machine.
let canUsePrivateMounts = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare")

/// Runs `script` with sh in a private mount namespace ($0 is the ktask executable; the namespace and its
/// mounts end with it).
func runInPrivateMounts(_ script: String) throws -> (status: Int32, stdout: String, stderr: String) {
    try runCommand("/usr/bin/unshare", ["-m", "sh", "-c", script, try ktaskExecutable()])
}

/// The keys `compare --workload vm-file --format json` documents, and each row's.
let vmFileKeys = ["schema", "workload", "pages", "size", "runs", "settle_s", "location", "ktask_command", "ktask_self_contained", "qemu_command", "steal_s", "rows", "missing"]
let vmFileRowKeys = ["system", "threads", "median_s", "min_s", "max_s", "spread_pct", "populate_median_s", "qemu_median_s",
                     "ratio_vs_ktask", "ratio_uncertainty_pct", "paired_ratio_vs_ktask"]

/// Checks a vm-file document with both rows at `threads`, and returns it.
@discardableResult
func expectBothVMFileRows(_ json: String, threads: Int = 1) throws -> [String: Any] {
    let document = try jsonObject(json)
    for key in vmFileKeys { #expect(document.keys.contains(key), "\(key): \(json)") }
    #expect(document["ktask_self_contained"] as? Bool == false, "the tests' debug build loads the Swift runtime: \(json)")
    let rows = try #require(document["rows"] as? [[String: Any]])
    #expect(rows.compactMap { $0["system"] as? String } == ["ktask+qemu", "qemu-prealloc"], "\(json)")
    #expect((document["missing"] as? [Any])?.isEmpty == true, "\(json)")
    for row in rows {
        for key in vmFileRowKeys { #expect(row.keys.contains(key), "\(key): \(row)") }
        #expect(row["threads"] as? Int == threads)
        #expect((row["median_s"] as? Double ?? 0) > 0 && (row["qemu_median_s"] as? Double ?? 0) > 0, "\(row)")
    }
    // ktask's path has its populate part; QEMU's own preallocation has none.
    #expect((rows[0]["populate_median_s"] as? Double ?? 0) > 0 && rows[1]["populate_median_s"] is NSNull, "\(json)")
    return document
}

@Suite("compare --workload vm-file: ktask populate + QEMU against QEMU's prealloc=on", .serialized)
struct VMFileCompareCLITests {
    @Test("tmpfs: both paths timed, the documented JSON keys, and nothing left in /dev/shm",
          .enabled(if: qemuInstalled, "qemu-system-x86_64 is not installed: skipped (scripts/build-peers.sh installs it)"),
          .enabled(if: canUsePrivateMounts, "needs root and unshare for a /dev/shm of its own: skipped"))
    func tmpfs() throws {
        let run = try runInPrivateMounts("""
            mount -t tmpfs -o size=256M none /dev/shm || exit 90
            "$0" compare --workload vm-file --size 64M --runs 1 --threads 1 --format json || exit
            ls -A /dev/shm >&2
            """)
        try #require(run.status != 90, "cannot mount a tmpfs on /dev/shm here: \(run.stderr)")
        #expect(run.status == 0, "\(run.stderr)")
        let document = try expectBothVMFileRows(run.stdout)
        #expect(document["pages"] as? String == "4k" && document["size"] as? Int == 64 << 20, "\(run.stdout)")
        #expect(run.stderr.isEmpty, "left in /dev/shm: \(run.stderr)")
    }

    @Test("the table names both commands and says where ktask's path stands per thread count",
          .enabled(if: qemuInstalled, "qemu-system-x86_64 is not installed: skipped"))
    func table() throws {
        let run = try runKTask(["compare", "--workload", "vm-file", "--size", "16M", "--runs", "2", "--threads", "1"])
        #expect(run.status == 0, "\(run.stderr)")
        for text in ["ktask populate --write --threads N --size 16777216 FILE", "share=on,prealloc=off",
                     "prealloc=on,prealloc-threads=N", "median (± spread)", "1 thread(s): ktask+qemu is "] {
            #expect(run.stdout.contains(text), "\(text): \(run.stdout)")
        }
    }

    @Test("SIGTERM in the middle of a run kills the child and removes the file and its folder",
          .enabled(if: qemuInstalled, "qemu-system-x86_64 is not installed: skipped"),
          .enabled(if: canUsePrivateMounts, "needs root and unshare for a /dev/shm of its own: skipped"), .timeLimit(.minutes(2)))
    func stoppedMidway() throws {
        // A child's run, with its file there, is caught by polling for the file (up to 10 s).
        let run = try runInPrivateMounts("""
            mount -t tmpfs -o size=1G none /dev/shm || exit 90
            "$0" compare --workload vm-file --size 256M --runs 50 --threads 1 >/dev/null 2>&1 &
            pid=$!
            i=0
            until ls /dev/shm/ktask-vm-file-*/guest-ram >/dev/null 2>&1 || [ $i -ge 1000 ]; do sleep 0.01; i=$((i + 1)); done
            [ $i -lt 1000 ] || exit 91
            kill -TERM $pid
            wait $pid
            echo "status $?"
            ls -A /dev/shm
            """)
        try #require(run.status != 90, "cannot mount a tmpfs on /dev/shm here: \(run.stderr)")
        #expect(run.status == 0, "no file appeared within 10 s (91) or the script failed: \(run.status) \(run.stderr)")
        #expect(run.stdout == "status 143\n", "killed by SIGTERM, nothing left in /dev/shm: \(run.stdout)")
    }

    @Test("without qemu-system both paths are missing with the reason, and the run still succeeds")
    func qemuMissing() throws {
        let run = try runKTask(["compare", "--workload", "vm-file", "--size", "16M", "--runs", "1", "--threads", "1", "--format", "json"],
                               environment: ["PATH": "/nonexistent"])
        #expect(run.status == 0, "\(run.stderr)")
        let document = try jsonObject(run.stdout)
        let missing = try #require(document["missing"] as? [[String: Any]])
        #expect(missing.compactMap { $0["system"] as? String } == ["ktask+qemu", "qemu-prealloc"], "\(run.stdout)")
        #expect(missing.allSatisfy { ($0["reason"] as? String)?.contains("qemu-system is not installed") == true }, "\(run.stdout)")
        #expect((document["rows"] as? [Any])?.isEmpty == true)
    }

    @Test("a QEMU whose preallocation fails is dropped with its message; ktask's path still runs")
    func qemuPreallocFails() throws {
        let folder = try makeScratchFolder("fake-qemu")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Maps nothing: with prealloc=off the file ktask populated is all there is to check.
        try """
            #!/bin/sh
            case "$*" in *prealloc=on*) echo "fake qemu: cannot preallocate" >&2; exit 1;; esac
            cat >/dev/null
            """.write(toFile: folder + "/qemu-system-x86_64", atomically: true, encoding: .utf8)
        chmod(folder + "/qemu-system-x86_64", 0o755)
        let run = try runKTask(["compare", "--workload", "vm-file", "--size", "16M", "--runs", "2", "--threads", "1", "--format", "json"],
                               environment: ["PATH": folder + ":/usr/bin:/bin"])
        #expect(run.status == 0, "\(run.stderr)")
        let document = try jsonObject(run.stdout)
        let rows = try #require(document["rows"] as? [[String: Any]])
        #expect(rows.compactMap { $0["system"] as? String } == ["ktask+qemu"], "\(run.stdout)")
        let missing = try #require(document["missing"] as? [[String: Any]])
        #expect(missing.count == 1 && (missing[0]["reason"] as? String)?.contains("fake qemu: cannot preallocate") == true, "\(run.stdout)")
    }

    @Test("flags of the other workloads, thp pages and sizes that are not whole pages are usage errors", arguments: [
        ["--systems", "qemu"], ["--peers", "/tmp"], ["--helper-priority", "caller"], ["--plot", "/tmp/x.svg"], ["--pages", "thp"],
        ["--pages", "hugetlb-2M", "--size", "3M"], ["--size", "5000"], ["--settle", "-1"],
    ])
    func badFlags(extra: [String]) throws {
        let run = try runKTask(["compare", "--workload", "vm-file", "--runs", "1"] + extra)
        #expect(run.status == 2, "\(extra): \(run.stderr)")
        #expect(run.stderr.split(separator: "\n").count == 1 && run.stdout.isEmpty, "\(extra): \(run.stderr)")
    }
}

// In PopulateCLITests' serialized suite: its hugetlbfs test changes nr_hugepages too, and the two must not
// interleave their reservations and restores.
extension PopulateCLITests {
    @Test("compare vm-file on hugetlb-2M: missing with the fix while the pool is short; both rows once pages are reserved; nothing left",
          .enabled(if: qemuInstalled, "qemu-system-x86_64 is not installed: skipped"),
          .enabled(if: canUsePrivateMounts, "needs root and unshare to mount hugetlbfs and reserve pages: skipped"))
    func vmFileHugetlb() throws {
        let pool = "/sys/kernel/mm/hugepages/hugepages-2048kB/"
        func read(_ name: String) throws -> Int {
            try #require(Int(try String(contentsOfFile: pool + name, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        // Only this run's mount: the machine's hugetlbfs mounts are taken away inside the namespace.
        func compare(_ size: Int) throws -> (status: Int32, stdout: String, stderr: String) {
            try runInPrivateMounts("""
                grep ' hugetlbfs ' /proc/mounts | cut -d' ' -f2 | while read -r point; do umount -l "$point"; done
                point=$(mktemp -d) && mount -t hugetlbfs -o pagesize=2M none "$point" || exit 90
                "$0" compare --workload vm-file --pages hugetlb-2M --size \(size) --runs 1 --threads 1 --format json; status=$?
                ls -A "$point" >&2
                umount "$point"; rmdir "$point"
                exit $status
                """)
        }
        let short = try compare((try read("free_hugepages") - (try read("resv_hugepages")) + 1) * (2 << 20))
        try #require(short.status != 90, "hugetlbfs cannot be mounted here: \(short.stderr)")
        #expect(short.status == 0, "\(short.stderr)")
        let missing = try #require(try jsonObject(short.stdout)["missing"] as? [[String: Any]])
        #expect(missing.count == 2 && missing.allSatisfy { ($0["reason"] as? String)?.contains("> \(pool)nr_hugepages") == true }, "\(short.stdout)")

        let before = try read("nr_hugepages")
        defer { try? "\(before)".write(toFile: pool + "nr_hugepages", atomically: false, encoding: .utf8) }
        try "\(before + 32)".write(toFile: pool + "nr_hugepages", atomically: false, encoding: .utf8)
        try #require(try read("nr_hugepages") == before + 32, "32 huge pages of 2 MiB cannot be reserved here")
        let freeBefore = try read("free_hugepages")
        let run = try compare(64 << 20)
        #expect(run.status == 0, "\(run.stderr)")
        let document = try expectBothVMFileRows(run.stdout)
        #expect(document["pages"] as? String == "hugetlb-2M", "\(run.stdout)")
        #expect(run.stderr.isEmpty, "left on the mount: \(run.stderr)")
        #expect(try read("free_hugepages") == freeBefore, "every huge page is back in the pool")
    }
}
