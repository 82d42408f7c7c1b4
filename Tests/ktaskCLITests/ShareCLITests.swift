import Foundation
import Testing

/// Helper threads (`ktask/N`) of these processes that are running now (state R in /proc/PID/task/TID/stat).
func runningHelpers(of pids: [Int32]) -> Int {
    var running = 0
    for pid in pids {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { continue }
        for tid in tasks {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/stat", encoding: .utf8),
                  let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { continue }
            let comm = stat[stat.index(after: open)..<close]
            let state = stat[stat.index(close, offsetBy: 2)]
            if comm.hasPrefix("ktask/") && state == "R" { running += 1 }
        }
    }
    return running
}

/// Runs `count` ktask processes at once with `environment`, sampling their running helpers every 2 ms;
/// returns, per number of helpers, the samples that saw at least that many in two samples in a row (a
/// helper that gave its slot back spins 50 µs before it parks, and "R" also means waiting in the run
/// queue, so one sample can catch a helper that holds no slot), and the wall time of all of them.
func sampleConcurrent(_ count: Int, _ arguments: [String], environment: [String: String])
    throws -> (samples: [Int: Int], seconds: Double, statuses: [Int32])
{
    let executable = try ktaskExecutable()
    let start = Date()
    let processes = try (0..<count).map { _ in
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }
    var samples: [Int: Int] = [:], previous = 0
    while processes.contains(where: \.isRunning) {
        let now = runningHelpers(of: processes.map(\.processIdentifier))
        samples[min(now, previous), default: 0] += 1
        previous = now
        usleep(2000)
    }
    for process in processes { process.waitUntilExit() }
    return (samples, Date().timeIntervalSince(start), processes.map(\.terminationStatus))
}

@Suite("Sharing the machine: machine-wide slots", .serialized)
struct ShareCLITests {
    static let onlineCPUs = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))

    @Test("three processes at once never run more helpers than the machine's slots (online CPUs − 1)",
          .enabled(if: onlineCPUs >= 2, "needs 2 CPUs: skipped"))
    func threeProcesses() throws {
        let folder = NSTemporaryDirectory() + "ktask-share-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let arguments = ["bench", "--workload", "compute", "--threads", "\(Self.onlineCPUs)", "--size", "8M", "--runs", "3"]
        let shared = try sampleConcurrent(3, arguments, environment: ["KTASK_SLOTS": folder])
        let alone = try sampleConcurrent(3, arguments, environment: ["KTASK_SLOTS": "off"])
        #expect(shared.statuses == [0, 0, 0] && alone.statuses == [0, 0, 0])
        func overFraction(_ samples: [Int: Int]) -> Double {
            Double(samples.filter { $0.key > Self.onlineCPUs - 1 }.values.reduce(0, +)) / Double(max(1, samples.values.reduce(0, +)))
        }
        // "R" also counts a helper waiting in the run queue after it gave its slot back: a few percent of
        // samples; each process for itself puts a helper beside every other process's most of the time.
        #expect(overFraction(shared.samples) < 0.10, "with slots, helpers running at once by samples: \(shared.samples)")
        #expect(overFraction(alone.samples) > 2 * overFraction(shared.samples),
                "with slots \(shared.samples), without \(alone.samples)")
        print("three processes: with slots \(shared.samples) in \(shared.seconds) s, without \(alone.samples) in \(alone.seconds) s")
        let status = try runKTask(["info", "--format", "json"], environment: ["KTASK_SLOTS": folder])
        let slots = try #require((try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])?["machine_slots"] as? [String: Any])
        #expect(slots["folder"] as? String == folder && slots["slots"] as? Int == Self.onlineCPUs - 1 && slots["held"] as? Int == 0, "\(slots)")
    }
}
