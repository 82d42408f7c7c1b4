import Foundation
import Testing

/// What ktask leaves to programs it starts or that share its process: no descriptor of its own.
@Suite("Hygiene: what a ktask process hands on")
struct HygieneCLITests {
    @Test("every file a bench opens is close-on-exec (a program started meanwhile inherits none)",
          .timeLimit(.minutes(2)))
    func everyOpenIsCloseOnExec() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/strace") else {
            print("skipped: strace is not installed, so the opens cannot be traced")
            return
        }
        let trace = NSTemporaryDirectory() + "ktask-opens-\(getpid()).txt"
        defer { unlink(trace) }
        let run = try runCommand("/usr/bin/strace", ["-f", "-e", "trace=open,openat", "-o", trace, try ktaskExecutable(),
                                                     "bench", "--workload", "compute", "--threads", "1,2", "--runs", "1", "--size", "1M"])
        #expect(run.status == 0, "\(run.stderr)")
        let opens = try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n")
            .filter { $0.contains("open") && !$0.contains("ENOENT") && !$0.contains("<unfinished") }
        // /proc/stat and /proc/pressure/cpu are what the bench reads around each run.
        #expect(opens.contains { $0.contains("\"/proc/stat\"") }, "the trace shows the bench's reads: \(opens.count) opens")
        // The Swift runtime reads /proc/self/maps once at start-up without O_CLOEXEC; that one is not ktask's.
        let inheritable = opens.filter { !$0.contains("O_CLOEXEC") && !$0.contains("\"/proc/self/maps\"") }
        #expect(inheritable.isEmpty, "opened without O_CLOEXEC: \(inheritable.joined(separator: "\n"))")
    }
}
