import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Staying out of a sibling service's way on this host's cgroup v1 (issue 22; the v2 side is
/// scripts/cgroup-v2-check.sh in a qemu guest): two sibling cgroups of equal `cpu.shares`, a nice-0 load
/// spinning on every CPU in one, a ktask job in the other. The load's share of the two groups' CPU time
/// (`cpuacct.usage`) beside a job on every CPU at ktask's defaults (helpers at nice 19 in the idle child
/// cgroup) must be at least its share beside the same job on one thread, less 3 points.
@Suite("A sibling service beside a ktask job (cgroup v1)", .serialized)
struct SiblingServiceCLITests {
    static let cpu = "/sys/fs/cgroup/cpu", cpuacct = "/sys/fs/cgroup/cpuacct"
    static let usable = getuid() == 0 && FileManager.default.fileExists(atPath: cpu + "/cpu.shares")
        && FileManager.default.fileExists(atPath: cpuacct + "/cpuacct.usage")

    /// The two groups in both hierarchies, removed with what ktask made under them (its idle child cgroup).
    struct Siblings {
        let name = "ktask-sibling-\(getpid())"
        func folder(_ hierarchy: String, _ group: String) -> String { "\(hierarchy)/\(name)/\(group)" }

        func make() throws {
            for hierarchy in [SiblingServiceCLITests.cpu, SiblingServiceCLITests.cpuacct] {
                for group in ["load", "job"] {
                    try FileManager.default.createDirectory(atPath: folder(hierarchy, group), withIntermediateDirectories: true)
                }
            }
        }

        func remove() {
            for hierarchy in [SiblingServiceCLITests.cpu, SiblingServiceCLITests.cpuacct] {
                for group in ["load", "job"] {
                    rmdir(folder(hierarchy, group) + "/ktask-helpers")
                    rmdir(folder(hierarchy, group))
                }
                rmdir("\(hierarchy)/\(name)")
            }
        }

        /// A shell that joins `group` in both hierarchies, then runs `command`.
        func inside(_ group: String, _ command: String) -> [String] {
            ["-c", "echo $$ > '\(folder(SiblingServiceCLITests.cpu, group))/tasks' && echo $$ > '\(folder(SiblingServiceCLITests.cpuacct, group))/tasks' && exec \(command)"]
        }

        func usage(_ group: String) -> Int {
            (try? String(contentsOfFile: folder(SiblingServiceCLITests.cpuacct, group) + "/cpuacct.usage", encoding: .utf8))
                .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        }
    }

    /// The load's percent of both groups' CPU time while `ktask populate --write` of a 1 GiB tmpfs file
    /// (CPU work: the kernel zeroing pages, one job) runs in the job group with `arguments`.
    static func loadShare(_ siblings: Siblings, ktask: String, cpus: Int, _ arguments: [String]) throws -> Double {
        let load = Process()
        load.executableURL = URL(fileURLWithPath: "/bin/sh")
        load.arguments = siblings.inside("load", "'\(ktask)' foreground-load --threads \(cpus) --seconds 30")
        load.standardOutput = FileHandle.nullDevice
        try load.run()
        // SIGKILL: the test process's children may inherit SIGTERM blocked, and the spinner holds nothing.
        defer { kill(load.processIdentifier, SIGKILL); load.waitUntilExit() }
        usleep(500_000)
        let file = "/dev/shm/ktask-sibling-\(getpid())"
        defer { unlink(file) }
        let (load0, job0) = (siblings.usage("load"), siblings.usage("job"))
        let job = try runCommand("/bin/sh", siblings.inside("job", "'\(ktask)' populate '\(file)' --size 1G --write " + arguments.joined(separator: " ")))
        let (load1, job1) = (siblings.usage("load"), siblings.usage("job"))
        #expect(job.status == 0, "\(job.stderr)")
        return 100 * Double(load1 - load0) / Double(max(1, load1 - load0 + job1 - job0))
    }

    @Test("the load keeps its share beside a job on every CPU at ktask's defaults (within 3 points of a 1-thread job)",
          .enabled(if: usable, "needs root and the cgroup v1 cpu and cpuacct controllers: skipped"), .timeLimit(.minutes(5)))
    func loadKeepsItsShare() throws {
        let ktask = try ktaskExecutable()
        let cpus = max(2, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let siblings = Siblings()
        try siblings.make()
        defer { siblings.remove() }
        // A noisy VM (steal, memory the host takes back) and other suites running beside this one: five rounds,
        // each trio back to back, medians; up to three such attempts (CI once saw one fail by 0.8 points).
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        var attempts: [String] = []
        var held = false
        for _ in 0..<3 where !held {
            var rounds: [(one: Double, defaults: Double, caller: Double)] = []
            for _ in 0..<5 {
                let one = try Self.loadShare(siblings, ktask: ktask, cpus: cpus, ["--threads", "1"])
                let defaults = try Self.loadShare(siblings, ktask: ktask, cpus: cpus, ["--threads", "\(cpus)"])
                let caller = try Self.loadShare(siblings, ktask: ktask, cpus: cpus, ["--threads", "\(cpus)", "--helper-priority", "caller"])
                rounds.append((one, defaults, caller))
            }
            let (one, defaults, caller) = (median(rounds.map(\.one)), median(rounds.map(\.defaults)), median(rounds.map(\.caller)))
            attempts.append(String(format: "1 thread %.1f%%, defaults %.1f%%, --helper-priority caller %.1f%%", one, defaults, caller))
            held = defaults >= one - 3
        }
        print("load's share of CPU time beside a ktask job (medians of 5 rounds): " + attempts.joined(separator: "; "))
        #expect(held, "\(attempts)")
    }
}
