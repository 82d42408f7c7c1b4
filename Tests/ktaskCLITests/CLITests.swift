import Foundation
import Testing

/// The built `ktask` executable, which sits beside the test bundle.
func ktaskExecutable() throws -> String {
    let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [directory, directory.deletingLastPathComponent()] {
        let path = candidate.appendingPathComponent("ktask").path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: directory.appendingPathComponent("ktask").path])
}

/// A new folder of this user's own, mode 0755 (a second user's process may look in): made with mkdtemp,
/// since a predictable name in /tmp could be another user's, which a root test would then use and remove.
func makeScratchFolder(_ prefix: String) throws -> String {
    var template = Array((NSTemporaryDirectory() + "ktask-\(prefix)-XXXXXX").utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: NSTemporaryDirectory()])
    }
    let folder = String(cString: made)
    chmod(folder, 0o755)
    return folder
}

/// Runs the built `ktask` with these arguments.
func runKTask(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
    try runCommand(try ktaskExecutable(), arguments, environment: environment)
}

/// Runs a program and collects its exit status and output.
func runCommand(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}

@Suite("The ktask command line")
struct CLITests {
    @Test("--version prints the release the CHANGELOG's first entry names")
    func version() throws {
        let run = try runKTask(["--version"])
        #expect(run.status == 0)
        let repository = "/" + String(#filePath).split(separator: "/").dropLast(3).joined(separator: "/")
        let changelog = try String(contentsOfFile: repository + "/CHANGELOG.md", encoding: .utf8)
        let first = changelog.split(separator: "\n").first { $0.hasPrefix("## ") }.map { $0.dropFirst(3).split(separator: " ")[0] }
        #expect(run.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == first.map(String.init))
    }

    @Test("bad flags: one line on stderr, exit status 2", arguments: [
        ["bench", "--threads", "0"], ["bench", "--threads", "1,x"], ["bench", "--size", "-4"],
        ["bench", "--runs", "0"], ["bench", "--workload", "nope"], ["bench", "--format", "xml"],
        ["bench", "--bogus"], ["frobnicate"], ["bench", "--helper-priority", "20"], ["bench", "--helper-priority", "high"],
    ])
    func badFlags(arguments: [String]) throws {
        let result = try runKTask(arguments)
        #expect(result.status == 2)
        #expect(result.stderr.hasPrefix("ktask: "))
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(result.stdout.isEmpty)
    }

    @Test("sizes no machine has, or below a workload's minimum, are usage errors (exit 2), not traps",
          arguments: [["bench", "--workload", "init", "--size", "9223372036854775807", "--runs", "1"],
                      ["check-placement", "--node", "0", "--size", "9223372036854775807"],
                      ["bench", "--size", "2000000T", "--runs", "1"], ["bench", "--size", "1", "--runs", "1"]])
    func hugeSizes(_ arguments: [String]) throws {
        let result = try runKTask(arguments)
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains("1P") || result.stderr.contains("at least"), "\(result.stderr)")
    }

    @Test("a negative --runs is refused with the allowed range, not 'missing value'",
          arguments: [["bench"], ["bench", "disturbance"], ["bench", "starvation"], ["compare"], ["tune"]])
    func negativeRuns(_ command: [String]) throws {
        let result = try runKTask(command + ["--runs", "-1"])
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains("--runs is -1") && !result.stderr.contains("Missing value"), "\(result.stderr)")
    }

    @Test("a bad KTASK_MAX_THREADS is a usage error too")
    func badEnvironment() throws {
        let result = try runKTask(["bench", "--workload", "compute", "--size", "1M", "--runs", "1"],
                                  environment: ["KTASK_MAX_THREADS": "lots"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("KTASK_MAX_THREADS"))
    }

    @Test("bench --format json has the documented keys, one row per thread count")
    func benchJSON() throws {
        let result = try runKTask(["bench", "--workload", "compute", "--threads", "1,2", "--size", "2M", "--runs", "2", "--format", "json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(document["workload"] as? String == "compute")
        #expect(document["size"] as? Int == 2 << 20)
        #expect(document["runs"] as? Int == 2)
        let rows = try #require(document["rows"] as? [[String: Any]])
        #expect(rows.compactMap { $0["threads"] as? Int } == [1, 2])
        for row in rows {
            for key in ["mean_s", "stddev_pct", "speedup"] { #expect(row[key] is Double, "\(key)") }
            #expect(row["threads_used"] is Int)
        }
    }

    @Test("bench disturbance --format json has every case, in this session and another")
    func disturbanceJSON() throws {
        let result = try runKTask(["bench", "disturbance", "--seconds", "0.5", "--runs", "1", "--format", "json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        for suffix in ["", "_other_session"] {
            for key in ["foreground_alone", "with_ktask_nice19", "with_ktask_nice0", "with_caller_only",
                        "slowdown_pct_nice19", "slowdown_pct_nice0"] {
                #expect(document[key + suffix] is Double, "\(key + suffix)")
            }
            #expect((document["foreground_alone" + suffix] as? Double ?? 0) > 0)
        }
    }

    @Test("bench starvation --format json times every case")
    func starvationJSON() throws {
        // Other tests load the CPUs too: the foreground's 3 s cap bounds a starved case.
        let result = try runKTask(["bench", "starvation", "--runs", "1", "--size", "1M", "--max-load-seconds", "3", "--format", "json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        for key in ["single_thread_s", "no_boost_s", "boost_s", "unprivileged_s"] {
            #expect((document[key] as? Double ?? 0) > 0, "\(key)")
        }
    }

    @Test("bench --cpu-time adds each row's CPU time")
    func cpuTime() throws {
        let result = try runKTask(["bench", "--workload", "compute", "--size", "2M", "--runs", "1", "--threads", "2", "--cpu-time"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("cpu (× 1 thread)"))
    }

    @Test("bench --helper-priority N runs the helpers at nice N (the caller's while the starvation guard lends it)")
    func helperPriority() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try ktaskExecutable())
        process.arguments = ["bench", "--workload", "compute", "--threads", "2", "--size", "16M", "--runs", "3", "--helper-priority", "7"]
        process.environment = ProcessInfo.processInfo.environment.merging(["KTASK_SLOTS": "off"]) { $1 }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        var nices = Set<Int>()
        while process.isRunning {
            for (_, fields) in helperThreads(of: process.processIdentifier) {
                // Field 19 of stat is the nice value (fields[0] is field 3).
                if fields.count > 16, let nice = Int(fields[16]) { nices.insert(nice) }
            }
            usleep(1000)
        }
        process.waitUntilExit()
        let stdout = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0)
        #expect(stdout.hasPrefix("# helpers at nice 7 (--helper-priority)"), "\(stdout)")
        #expect(nices.contains(7) && nices.isSubset(of: [7, 0]), "helpers' nice values seen: \(nices)")
    }

    @Test("bench prints the seed's table")
    func benchTable() throws {
        let result = try runKTask(["bench", "--workload", "init", "--threads", "2", "--size", "16M", "--runs", "2"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("thr  speedup  median (± spread)") })
        #expect(lines.contains { $0.hasPrefix("2 ") && $0.contains("x ") && $0.contains("(± ") })
    }

    @Test("info --format json lists usable CPUs, the helper cap and the pool")
    func infoJSON() throws {
        let result = try runKTask(["info", "--format", "json"], environment: ["KTASK_MAX_THREADS": "3"])
        #expect(result.status == 0)
        let document = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let usable = try #require(document["usable_cpus"] as? [Int])
        #expect(!usable.isEmpty)
        let cap = try #require(document["helper_cap"] as? [String: Any])
        #expect(cap["max_busy_helpers"] as? Int == 2)
        #expect(cap["source"] as? String == "KTASK_MAX_THREADS")
    }
}
