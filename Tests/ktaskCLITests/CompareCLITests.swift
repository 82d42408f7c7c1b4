import Foundation
import Testing

/// The repository root (the peers' build script lives there).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

@Suite("ktask compare", .serialized)
struct CompareCLITests {
    struct Row: Decodable {
        let system: String
        let threads: Int
        let median_s: Double
        let min_s: Double
        let max_s: Double
        let ratio_vs_ktask: Double
        let ratio_uncertainty_pct: Double?
        let paired_ratio_vs_ktask: Double
    }

    struct Missing: Decodable {
        let system: String
        let reason: String
    }

    struct Document: Decodable {
        let workload: String
        let rows: [Row]
        let missing: [Missing]
    }

    static let peersDirectory = repositoryRoot.appendingPathComponent(".build/peers").path

    @Test("every peer runs each workload with the same result as ktask, or is listed as missing with the reason")
    func peersMatchKTask() throws {
        let build = try runCommand("/bin/bash", [repositoryRoot.appendingPathComponent("scripts/build-peers.sh").path])
        #expect(build.status == 0, "\(build.stderr)")
        for (workload, size) in [("compute", "3M"), ("init", "64M"), ("prefault", "64M")] {
            let result = try runKTask(["compare", "--workload", workload, "--threads", "1,2", "--size", size, "--runs", "2",
                                       "--peers", Self.peersDirectory, "--format", "json"])
            #expect(result.status == 0, "\(result.stderr)")
            let document = try JSONDecoder().decode(Document.self, from: Data(result.stdout.utf8))
            #expect(document.workload == workload)
            for system in ["ktask", "openmp", "tbb", "dispatch", "taskgroup"] {
                let rows = document.rows.filter { $0.system == system }
                let missing = document.missing.filter { $0.system == system }
                if ["openmp", "tbb"].contains(system),
                   !FileManager.default.isExecutableFile(atPath: Self.peersDirectory + "/ktask-peer-\(system)") {
                    // The machine could not build it: then it must say why.
                    #expect(missing.count == 1 && !missing[0].reason.isEmpty, "\(system) in \(workload): \(document.missing)")
                    continue
                }
                // A wrong sum or a page not faulted would have put the peer in `missing`.
                #expect(missing.isEmpty, "\(system) in \(workload): \(missing.map(\.reason))")
                #expect(rows.map(\.threads) == [1, 2], "\(system) in \(workload)")
                for row in rows {
                    #expect(row.min_s > 0 && row.min_s <= row.median_s && row.median_s <= row.max_s)
                    if system == "ktask" {
                        #expect(row.ratio_vs_ktask == 1 && row.paired_ratio_vs_ktask == 1 && row.ratio_uncertainty_pct == nil)
                    } else {
                        #expect((row.ratio_uncertainty_pct ?? -1) >= 0, "two runs give every peer's ratio a ±")
                    }
                    #expect(row.paired_ratio_vs_ktask > 0)
                }
            }
        }
    }

    @Test("a peer that is not built is reported missing with the reason, and the others still run")
    func missingPeer() throws {
        let result = try runKTask(["compare", "--workload", "compute", "--threads", "2", "--size", "1M", "--runs", "1",
                                   "--peers", "/nonexistent", "--format", "json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try JSONDecoder().decode(Document.self, from: Data(result.stdout.utf8))
        #expect(Set(document.missing.map(\.system)) == ["openmp", "tbb"])
        #expect(document.missing.allSatisfy { $0.reason.contains("scripts/build-peers.sh") })
        #expect(Set(document.rows.map(\.system)) == ["ktask", "dispatch", "taskgroup"])
    }

    @Test("a peer that answers with a wrong sum is dropped with the reason, not timed")
    func wrongPeerResult() throws {
        let directory = NSTemporaryDirectory() + "ktask-fake-peers-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fake = directory + "/ktask-peer-openmp"
        try "#!/bin/sh\necho \"ready $2\"\nwhile read threads chunk; do echo \"0.001 12345\"; done\n"
            .write(toFile: fake, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: fake)
        let result = try runKTask(["compare", "--workload", "compute", "--threads", "2", "--size", "1M", "--runs", "2",
                                   "--systems", "openmp", "--peers", directory, "--format", "json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try JSONDecoder().decode(Document.self, from: Data(result.stdout.utf8))
        #expect(document.rows.map(\.system) == ["ktask"])
        #expect(document.missing.count == 1 && document.missing[0].reason.contains("12345"), "\(document.missing)")
    }

    @Test("--plot writes an SVG with one line per system and the ideal")
    func plot() throws {
        let path = NSTemporaryDirectory() + "ktask-compare-\(getpid()).svg"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try runKTask(["compare", "--workload", "compute", "--threads", "1,2", "--size", "1M", "--runs", "1",
                                   "--systems", "dispatch,taskgroup", "--plot", path])
        #expect(result.status == 0, "\(result.stderr)")
        let svg = try String(contentsOfFile: path, encoding: .utf8)
        #expect(svg.hasPrefix("<svg"))
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 3)  // ktask, dispatch, taskgroup
        #expect(svg.contains(">ideal<"))
        let bench = try runKTask(["bench", "--workload", "compute", "--threads", "1,2", "--size", "1M", "--runs", "1", "--plot", path])
        #expect(bench.status == 0, "\(bench.stderr)")
        #expect(try String(contentsOfFile: path, encoding: .utf8).components(separatedBy: "<polyline").count - 1 == 1)
    }

    @Test("bad compare flags are usage errors", arguments: [
        ["compare", "--systems", "nope"], ["compare", "--runs", "0"], ["compare", "--threads", "0"],
    ])
    func badFlags(arguments: [String]) throws {
        let result = try runKTask(arguments)
        #expect(result.status == 2)
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }

    @Test("an unwritable plot path is an argument error before the benchmark runs, naming the path")
    func unwritablePlot() throws {
        for command in [["bench"], ["compare", "--systems", "dispatch"]] {
            let result = try runKTask(command + ["--workload", "compute", "--threads", "1", "--size", "1G", "--runs", "1",
                                                 "--plot", "/nonexistent/dir/x.svg"])
            #expect(result.status == 2, "\(command)")
            #expect(result.stderr.contains("/nonexistent/dir/x.svg"))
            #expect(result.stdout.isEmpty, "nothing ran: \(result.stdout)")
        }
    }
}
