import Foundation
import Testing

/// This process's cgroup v1 cpu folder (mount point + path), or nil where there is none.
func cpuCgroupV1Folder() -> String? {
    guard let cgroups = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8),
          let mounts = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
    // "4:cpu,cpuacct:/path": the line whose controllers include cpu.
    guard let path = cgroups.split(separator: "\n").compactMap({ line -> Substring? in
        let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        return parts.count == 3 && parts[1].split(separator: ",").contains("cpu") ? parts[2] : nil
    }).first else { return nil }
    // mountinfo: "... MOUNTPOINT OPTIONS ... - cgroup cgroup rw,cpu" with the mount's root as field 4.
    for line in mounts.split(separator: "\n") {
        let halves = line.components(separatedBy: " - ")
        guard halves.count == 2 else { continue }
        let fields = halves[0].split(separator: " "), tail = halves[1].split(separator: " ")
        guard fields.count >= 5, tail.count >= 3, tail[0] == "cgroup", tail[2].split(separator: ",").contains("cpu"), fields[3] == "/" else { continue }
        return String(fields[4]) + (path == "/" ? "" : String(path))
    }
    return nil
}

/// Whether this process may make a cgroup of its own under its cpu cgroup (root on cgroup v1).
let canMakeCpuCgroup = getuid() == 0 && cpuCgroupV1Folder().map { access($0, W_OK) == 0 } == true

/// The helpers' child cgroup (`<cpu cgroup>/ktask-helpers`) when ktask is stopped by a signal.
@Suite("Staying out of the way: the helpers' cgroup", .serialized, .timeLimit(.minutes(3)))
struct HelperCgroupCLITests {
    @Test("stopped by SIGINT, SIGTERM or SIGHUP, ktask moves its helpers back and removes the ktask-helpers cgroup it made",
          .enabled(if: hasPython && canMakeCpuCgroup, "needs root, a cgroup v1 cpu controller and python3: skipped"),
          arguments: [SIGINT, SIGTERM, SIGHUP])
    func signalRemovesChildCgroup(signal: Int32) throws {
        // A cgroup of the test's own, so that no other ktask process (other tests) shares the child.
        let parent = try #require(cpuCgroupV1Folder()) + "/ktask-signal-test-\(getpid())-\(signal)"
        let child = parent + "/ktask-helpers"
        try #require(mkdir(parent, 0o755) == 0, "mkdir \(parent): errno \(errno)")
        defer {
            rmdir(child)
            rmdir(parent)
        }
        let process = try startWithDefaultSignals(["bench", "--workload", "compute", "--threads", "2", "--size", "100M", "--runs", "50"],
                                                  environment: ["KTASK_SLOTS": "off", "SWIFT_BACKTRACE": "enable=no"],
                                                  cgroupTasks: parent + "/tasks")
        var helperIn = false
        for _ in 0..<2000 where process.isRunning && !helperIn {
            helperIn = (try? String(contentsOfFile: child + "/tasks", encoding: .utf8)).map { !$0.isEmpty } == true
            usleep(5000)
        }
        guard helperIn else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            Issue.record("no helper went into \(child)")
            return
        }
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == signal, "died of the signal")
        #expect(access(child, F_OK) != 0, "\(child) is left behind")
    }
}
