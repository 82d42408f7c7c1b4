import Foundation
import Synchronization

/// A CPU-bound foreground load: one thread per CPU, each mixing numbers as fast as it can, counting the
/// items it mixed, for a fixed time. The disturbance and starvation benches run it in a process of its
/// own (`ktask foreground-load`), in this session or another one, and compare its rate.
package enum ForegroundLoad {
    /// Runs `threads` threads for `seconds` and returns the items mixed in all.
    package static func run(threads: Int, seconds: Double) -> UInt64 {
        final class Total: Sendable { let items = Atomic<UInt64>(0) }
        let total = Total()
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let group = DispatchGroup()
        for _ in 0..<threads {
            group.enter()
            Thread.detachNewThread {
                var count: UInt64 = 0
                var sink: UInt64 = 0
                while ContinuousClock.now < deadline {
                    for item in 0..<1_000 { sink &+= ComputeWorkload.mix(item) }
                    count += 1_000
                }
                // `sink` is used, so the mixing cannot be optimised away.
                total.items.wrappingAdd(count &+ (sink == 42 ? 1 : 0), ordering: .relaxed)
                group.leave()
            }
        }
        group.wait()
        return total.items.load(ordering: .relaxed)
    }
}

/// A foreground load in another process, started now and read when it ends.
struct ForegroundProcess {
    let process: Process
    private let output: Pipe

    /// Starts `command` (the `ktask foreground-load` command line), in a new session if asked (through
    /// setsid(1)): a new session is a new autogroup, which the scheduler weighs against this one.
    init(command: [String], newSession: Bool) throws {
        process = Process()
        output = Pipe()
        if newSession {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
            process.arguments = ["--wait"] + command
        } else {
            process.executableURL = URL(fileURLWithPath: command[0])
            process.arguments = Array(command.dropFirst())
        }
        process.standardOutput = output
        try process.run()
    }

    var isRunning: Bool { process.isRunning }

    /// Waits for the load to end; returns the items it mixed.
    func finish() throws -> UInt64 {
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let count = UInt64(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        else { throw WorkloadError.wrongResult(workload: "foreground load", detail: "exit \(process.terminationStatus)") }
        return count
    }

    /// Ends the load early.
    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}
