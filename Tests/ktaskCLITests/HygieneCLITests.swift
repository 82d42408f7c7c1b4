import Foundation
import Testing

/// What ktask leaves to programs it starts or that share its process: no descriptor of its own.
@Suite("Hygiene: what a ktask process hands on")
struct HygieneCLITests {
    @Test("every descriptor a bench opens, slot files included, is close-on-exec (a program started meanwhile inherits none)",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/strace"), "needs strace to trace the opens"),
          .timeLimit(.minutes(2)))
    func everyOpenIsCloseOnExec() throws {
        let folder = try makeScratchFolder("opens")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let trace = folder + "/trace.txt"
        // Slots on, in a folder of the test's own: their files are the descriptors a process keeps longest.
        let run = try runCommand("/usr/bin/strace", ["-f", "-e", "trace=open,openat,openat2,memfd_create,pipe2,socket,eventfd2",
                                                     "-o", trace, try ktaskExecutable(),
                                                     "bench", "--workload", "compute", "--threads", "1,2", "--runs", "1", "--size", "1M"],
                                 environment: ["KTASK_SLOTS": folder + "/slots"])
        #expect(run.status == 0, "\(run.stderr)")
        // With -f, a call another thread interrupts is split in two lines, "PID openat(… <unfinished ...>" and
        // "PID <... openat resumed>) = 5": joined again here, so that the flags and the result are on one line.
        var unfinished: [Substring: Substring] = [:]
        var joined: [String] = []
        for line in try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n") {
            let pid = line.prefix { $0 != " " }
            if let cut = line.range(of: " <unfinished ...>") {
                unfinished[pid] = line[..<cut.lowerBound]
            } else if line.contains(" resumed>"), let start = unfinished.removeValue(forKey: pid),
                      let rest = line.range(of: " resumed>") {
                joined.append(String(start) + line[rest.upperBound...])
            } else {
                joined.append(String(line))
            }
        }
        let calls = joined.filter { !$0.contains("ENOENT") && !$0.contains("+++") && !$0.contains("---") }
        // /proc/stat is what the bench reads around each run; slot.0 is a machine-wide slot's file.
        #expect(calls.contains { $0.contains("\"/proc/stat\"") }, "the trace shows the bench's reads: \(calls.count) calls")
        #expect(calls.contains { $0.contains("slot.0") }, "the trace shows the slot files opened")
        // The Swift runtime reads /proc/self/maps once at start-up without O_CLOEXEC; that one is not ktask's.
        let inheritable = calls.filter { call in
            !["O_CLOEXEC", "MFD_CLOEXEC", "SOCK_CLOEXEC", "EFD_CLOEXEC"].contains(where: call.contains)
                && !call.contains("\"/proc/self/maps\"") && !call.contains("= -1")
        }
        #expect(inheritable.isEmpty, "made without close-on-exec: \(inheritable.joined(separator: "\n"))")
    }
}
