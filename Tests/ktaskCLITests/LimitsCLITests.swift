import Foundation
import Testing

/// Whether this process may create cgroups in the v1 cpu and cpuset hierarchies (root, writable mounts).
func cgroupV1Writable() -> Bool {
    geteuid() == 0 && access("/sys/fs/cgroup/cpu/cgroup.procs", W_OK) == 0
        && access("/sys/fs/cgroup/cpuset/cgroup.procs", W_OK) == 0
}

func decodeJSON(_ text: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}

@Suite("Real limits on this machine", .serialized)
struct LimitsCLITests {
    @Test("run as an unprivileged user, ktask falls back to smaller helper chunks and nice only, and jobs complete",
          .enabled(if: geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
                   "needs root (to drop to nobody) and setpriv: skipped"))
    func unprivileged() throws {
        let ktask = try ktaskExecutable()
        let drop = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", ktask]
        let info = try runCommand("/usr/bin/setpriv", drop + ["info", "--format", "json"])
        #expect(info.status == 0, "\(info.stderr)")
        let document = try decodeJSON(info.stdout)
        #expect(document["starvation_guard"] as? String == "smaller helper chunks")
        let isolation = try #require(document["helper_isolation"] as? [String: String])
        #expect(isolation["kind"] == "nice only")
        let bench = try runCommand("/usr/bin/setpriv", drop + ["bench", "--workload", "compute", "--threads", "2",
                                                               "--size", "4M", "--runs", "1", "--format", "json"])
        #expect(bench.status == 0, "\(bench.stderr)")
        let rows = try #require(try decodeJSON(bench.stdout)["rows"] as? [[String: Any]])
        if rows.last?["threads_used"] as? Int == 2 {
            #expect(rows.last?["starvation_guard"] as? String == "smaller helper chunks")
        }
    }

    @Test("as root, the starvation guard is the priority boost and helpers sit in an idle cgroup",
          .enabled(if: cgroupV1Writable(), "needs root and a writable cgroup v1 cpu hierarchy: skipped"))
    func privileged() throws {
        let info = try runKTask(["info", "--format", "json"])
        let document = try decodeJSON(info.stdout)
        #expect(document["starvation_guard"] as? String == "priority boost")
        let isolation = try #require(document["helper_isolation"] as? [String: String])
        #expect(isolation["kind"] == "idle cgroup" || isolation["kind"] == "lowest-weight cgroup")
    }

    @Test("under taskset -c 0 ktask sees one CPU and a job uses one thread",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset"), "needs taskset (util-linux)"))
    func taskset() throws {
        let ktask = try ktaskExecutable()
        let info = try runCommand("/usr/bin/taskset", ["-c", "0", ktask, "info", "--format", "json"])
        #expect(info.status == 0, "\(info.stderr)")
        let document = try decodeJSON(info.stdout)
        #expect(document["cpu_budget"] as? Int == 1)
        #expect(document["usable_cpus"] as? [Int] == [0])
        let bench = try runCommand("/usr/bin/taskset", ["-c", "0", ktask, "bench", "--workload", "compute",
                                                        "--threads", "2", "--size", "4M", "--runs", "1", "--format", "json"])
        #expect(bench.status == 0, "\(bench.stderr)")
        let rows = try #require(try decodeJSON(bench.stdout)["rows"] as? [[String: Any]])
        #expect(rows.last?["threads_used"] as? Int == 1)
    }

    @Test("check-placement reads back each chunk's CPU and thread mask; none is outside the node or taskset's mask",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset"), "needs taskset (util-linux)"))
    func checkPlacementReadsMasksBack() throws {
        let ktask = try ktaskExecutable()
        for prefix in [[], ["/usr/bin/taskset", "-c", "1"]] {
            let arguments = [ktask, "check-placement", "--node", "0", "--size", "8M", "--format", "json"]
            let run = prefix.isEmpty ? try runKTask(Array(arguments.dropFirst()))
                : try runCommand(prefix[0], Array(prefix.dropFirst()) + arguments)
            #expect(run.status == 0, "\(run.stderr)")
            let document = try decodeJSON(run.stdout)
            let allowed = Set(try #require(document["process_affinity"] as? [Int]))
            let masks = try #require(document["thread_masks_seen"] as? [[Int]])
            #expect(!masks.isEmpty && masks.allSatisfy { Set($0).isSubset(of: allowed) }, "\(run.stdout)")
            #expect((document["cpus_seen"] as? [Int])?.allSatisfy(allowed.contains) == true)
            #expect(document["ok"] as? Bool == true)
            if !prefix.isEmpty { #expect(allowed == [1]) }
        }
    }

    @Test("bench --placement: the placement and the helpers per node in its output; a bad value or both flags refused")
    func benchPlacement() throws {
        let placed = try runKTask(["bench", "--workload", "compute", "--size", "4M", "--threads", "2", "--runs", "1",
                                   "--placement", "nodes:0", "--helper-priority", "caller", "--format", "json"])
        #expect(placed.status == 0, "\(placed.stderr)")
        let document = try decodeJSON(placed.stdout)
        #expect(document["placement"] as? String == "nodes 0", "\(placed.stdout)")
        let two = (document["rows"] as? [[String: Any]])?.first { $0["threads"] as? Int == 2 }
        #expect(two?["helpers_per_node"] as? [String: Int] == ["0": 1], "one helper, pinned to node 0: \(placed.stdout)")
        let anywhere = try runKTask(["bench", "--workload", "compute", "--size", "1M", "--threads", "2", "--runs", "1", "--placement", "any"])
        #expect(anywhere.status == 0 && anywhere.stdout.contains("# placement: any node"), "\(anywhere.stdout)")
        let bad = try runKTask(["bench", "--placement", "node:1"])
        #expect(bad.status == 2 && bad.stderr.contains("caller, caller-only, any, or nodes:"), "\(bad.stderr)")
        let both = try runKTask(["bench", "--placement", "any", "--nodes", "0"])
        #expect(both.status == 2 && both.stderr.contains("give one"), "\(both.stderr)")
    }

    @Test("ktask info writes nothing: no idle cgroup appears",
          .enabled(if: getuid() == 0 && FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cpu/cgroup.procs"),
                   "needs root and the cgroup v1 cpu controller: skipped"))
    func infoWritesNothing() throws {
        let group = "/sys/fs/cgroup/cpu/ktask-info-\(getpid())"
        try FileManager.default.createDirectory(atPath: group, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: group) }
        // The shell joins the fresh cgroup, then becomes ktask info.
        let run = try runCommand("/bin/sh", ["-c", "echo $$ > \(group)/cgroup.procs && exec \"$0\" info", try ktaskExecutable()])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("ktask-helpers (created when a helper first runs"), "\(run.stdout)")
        #expect(!FileManager.default.fileExists(atPath: "\(group)/ktask-helpers"))
    }

    @Test("in a cgroup with a 0.5-CPU quota and a one-CPU cpuset, the budget is 1 and jobs use one thread",
          .enabled(if: cgroupV1Writable(), "needs root and writable cgroup v1 cpu and cpuset hierarchies: skipped"))
    func cgroupQuotaAndCpuset() throws {
        let ktask = try ktaskExecutable()
        let name = "ktask-test-\(getpid())"
        let cpu = "/sys/fs/cgroup/cpu/\(name)", cpuset = "/sys/fs/cgroup/cpuset/\(name)"
        try FileManager.default.createDirectory(atPath: cpu, withIntermediateDirectories: false)
        defer { rmdir(cpu) }
        try FileManager.default.createDirectory(atPath: cpuset, withIntermediateDirectories: false)
        defer { rmdir(cpuset) }
        try "100000".write(toFile: "\(cpu)/cpu.cfs_period_us", atomically: false, encoding: .utf8)
        try "50000".write(toFile: "\(cpu)/cpu.cfs_quota_us", atomically: false, encoding: .utf8)
        let lastCPU = (try? String(contentsOfFile: "/sys/fs/cgroup/cpuset/cpuset.effective_cpus", encoding: .utf8))?
            .split(separator: "-").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? "0"
        try lastCPU.write(toFile: "\(cpuset)/cpuset.cpus", atomically: false, encoding: .utf8)
        try "0".write(toFile: "\(cpuset)/cpuset.mems", atomically: false, encoding: .utf8)

        // The shell moves itself into both cgroups, then becomes ktask.
        func inCgroup(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
            let script = "echo $$ > \(cpu)/cgroup.procs && echo $$ > \(cpuset)/cgroup.procs && exec \"$@\""
            return try runCommand("/bin/sh", ["-c", script, "sh", ktask] + arguments)
        }
        let info = try inCgroup(["info", "--format", "json"])
        #expect(info.status == 0, "\(info.stderr)")
        let document = try decodeJSON(info.stdout)
        #expect(document["cpu_budget"] as? Int == 1)
        #expect(document["usable_cpus"] as? [Int] == [Int(lastCPU)!])
        let limits = try #require(document["limits"] as? [[String: String]])
        #expect(limits.contains { $0["kind"] == "cpu quota" && $0["source"] == "\(cpu)/cpu.cfs_quota_us"
            && $0["value"]!.contains("0.50 CPU") })
        #expect(limits.contains { $0["kind"] == "cpuset" && $0["source"]!.hasPrefix(cpuset) })

        let bench = try inCgroup(["bench", "--workload", "compute", "--threads", "2", "--size", "4M", "--runs", "1", "--format", "json"])
        #expect(bench.status == 0, "\(bench.stderr)")
        let rows = try #require(try decodeJSON(bench.stdout)["rows"] as? [[String: Any]])
        #expect(rows.last?["threads_used"] as? Int == 1)
    }
}
