import Foundation
import Testing
@testable import ktask
@testable import KTaskWorkloads

/// Every subcommand's output: units that fit, one table style, JSON with a schema and explicit nulls.
@Suite("Output: units, tables, JSON", .serialized)
struct OutputCLITests {
    @Test("times and rates in a unit that fits, 3-4 significant digits, never e-notation")
    func units() {
        #expect(Units.duration(65.5) == "65.50 s")
        #expect(Units.duration(1.2345) == "1.234 s" || Units.duration(1.2345) == "1.235 s")
        #expect(Units.duration(0.01234) == "12.34 ms")
        #expect(Units.duration(0.0004567) == "456.7 µs")
        #expect(Units.duration(0.000000025) == "25.00 ns")
        #expect(Units.duration(4000) == "4000 s")
        #expect(Units.rate(1_234_000, "items/s") == "1.234 M items/s")
        #expect(Units.rate(950, "items/s") == "950.0 items/s")
        #expect(Units.rate(2.5e10, "B/s") == "25.00 GB/s")
        #expect(Units.bytes(64 << 20) == "64 MiB")
        #expect(Units.bytes(3 << 29) == "1.500 GiB")
        #expect(Units.measured(0.123456789) == 0.1235)
        #expect(Units.measured(123456.789) == 123500)
    }

    @Test("one table style: notes, titles, rows, two spaces between columns")
    func tableStyle() {
        var table = TextTable(notes: ["a note"], columns: ["thr", "time"])
        table.add(["1", "1.000 s"])
        table.add(["16", "65.50 ms"])
        table.footnotes.append("why")
        #expect(table.render() == "# a note\nthr  time\n1    1.000 s\n16   65.50 ms\n# why\n")
    }

    @Test("progress: the warm-up is named, not run 0; elapsed time, and an estimate once a measured job has ended")
    func progress() {
        let progress = ProgressLine(enabled: false, jobs: 4)
        let warmUp = progress.warmUp("prefault")
        #expect(warmUp.hasPrefix("prefault: warm-up · ") && warmUp.contains("elapsed") && !warmUp.contains("left"))
        let first = progress.job("prefault: run 1/2, 1 thread(s)")
        #expect(first.contains("elapsed") && !first.contains("left"), "\(first)")
        let second = progress.job("prefault: run 1/2, 2 thread(s)")
        #expect(second.hasPrefix("prefault: run 1/2, 2 thread(s) · ") && second.hasSuffix(" left"), "\(second)")
        #expect(ProgressLine.text("x", elapsed: 12.3, left: 45) == "x · 12.30 s elapsed, about 45.00 s left")
    }

    @Test("tables of bench, compare and tune use units and no e-notation")
    func tablesUseUnits() throws {
        let runs = [
            try runKTask(["bench", "--workload", "compute", "--threads", "1,2", "--size", "1M", "--runs", "1"]),
            try runKTask(["compare", "--workload", "compute", "--threads", "1", "--size", "1M", "--runs", "1", "--systems", "dispatch"]),
            try runKTask(["tune", "--workload", "compute", "--size", "1M", "--runs", "1", "--max-threads", "2", "--dry-run"]),
        ]
        for run in runs {
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout.range(of: "[0-9]e[+-]?[0-9]", options: .regularExpression) == nil, "\(run.stdout)")
            #expect(run.stdout.range(of: "[0-9] (s|ms|µs)\\b", options: .regularExpression) != nil, "\(run.stdout)")
            #expect(run.stdout.hasPrefix("# "), "notes first: \(run.stdout)")
        }
        #expect(runs[2].stdout.contains(" items/s"), "\(runs[2].stdout)")
    }

    @Test("compare gives each ratio its ± and says which peers differ from ktask beyond it")
    func compareUncertainty() {
        func row(_ system: ComparedSystem, _ values: [Double], ktask: [Double]) -> CompareRow {
            let sample = Sample(values), ktaskSample = Sample(ktask)
            return CompareRow(system: system, threads: 2, seconds: sample, ratioVsKTask: sample.median / ktaskSample.median,
                              ratioUncertaintyPercent: system == .ktask ? 0 : Sample.ratioUncertaintyPercent(sample, ktaskSample),
                              pairedRatioVsKTask: sample.median / ktaskSample.median)
        }
        let ktask = [1.00, 1.01, 0.99, 1.00, 1.02]
        let tight = CompareResult(workload: .compute, size: 1, runs: 5, summary: "s", rows: [
            row(.ktask, ktask, ktask: ktask),
            row(.openmp, [1.20, 1.21, 1.19, 1.20, 1.22], ktask: ktask),  // 20% slower, runs within 1%
            row(.dispatch, [1.01, 0.99, 1.00, 1.02, 1.00], ktask: ktask),  // level
        ], missing: [], stealSeconds: nil)
        #expect(tight.rows[1].ratioUncertaintyPercent > 0 && tight.rows[1].ratioUncertaintyPercent < 5, "\(tight.rows[1])")
        let table = CompareOutput.table(tight)
        #expect(table.contains("ratio  ±"), "\(table)")
        #expect(table.contains("# ratios move by up to ±") && table.contains("beyond their ±: openmp at 2 thread(s) slower")
                && !table.contains("dispatch at"), "\(table)")
        // Spread runs: the same 20% is within the ±, and the verdict asks for more runs.
        let spread = CompareResult(workload: .compute, size: 1, runs: 5, summary: "s", rows: [
            row(.ktask, [1.0, 1.5, 0.7, 1.3, 0.9], ktask: [1.0, 1.5, 0.7, 1.3, 0.9]),
            row(.openmp, [1.2, 1.8, 0.8, 1.6, 1.0], ktask: [1.0, 1.5, 0.7, 1.3, 0.9]),
        ], missing: [], stealSeconds: nil)
        let spreadTable = CompareOutput.table(spread)
        #expect(spreadTable.contains("none differs from ktask beyond its ±; more --runs or a quieter machine narrow it"), "\(spreadTable)")
    }

    @Test("every JSON document has schema 1 and shows unknown values as null",
          arguments: [
            ["bench", "--workload", "compute", "--threads", "1", "--size", "1M", "--runs", "1", "--format", "json"],
            ["compare", "--workload", "compute", "--threads", "1", "--size", "1M", "--runs", "1", "--systems", "dispatch", "--format", "json"],
            ["tune", "--workload", "compute", "--size", "1M", "--runs", "1", "--max-threads", "1", "--dry-run", "--format", "json"],
            ["info", "--format", "json"],
            ["check-placement", "--node", "0", "--size", "1M", "--format", "json"],
          ])
    func jsonSchema(arguments: [String]) throws {
        let run = try runKTask(arguments, environment: ["KTASK_PROFILE": "/nonexistent/profile.json"])
        #expect(run.status == 0, "\(run.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stdout)")
        #expect(document["schema"] as? Int == 1, "\(run.stdout)")
        // Optional values are present as null when unknown.
        switch arguments[0] {
        case "bench", "compare": #expect(document.keys.contains("steal_s"))
        case "tune": #expect(document["saved_to"] is NSNull, "--dry-run saves nothing: \(run.stdout)")
        case "info": #expect(document["tuning_profile"] is NSNull, "\(run.stdout)")
        default: break
        }
    }

    @Test("check-placement prints a table by default")
    func checkPlacementTable() throws {
        let run = try runKTask(["check-placement", "--node", "0", "--size", "1M"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("pages on node 0") && run.stdout.contains("placement ok"), "\(run.stdout)")
    }

    @Test("--help names every environment variable the tool and library read")
    func helpListsEnvironment() throws {
        let help = try runKTask(["--help"]).stdout.replacingOccurrences(of: "\\s+", with: " ", options: .regularExpression)
        for variable in ["KTASK_MAX_THREADS", "KTASK_NODE_MAX_THREADS", "KTASK_PROFILE", "KTASK_NO_HELPER_CGROUP", "KTASK_SLOTS", "MAKEFLAGS",
                         "KTASK_SYSFS_ROOT", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"] {
            #expect(help.contains(variable), "\(variable): \(help)")
        }
    }

    @Test("help lists every accepted workload, with what it does", arguments: [["bench", "scaling"], ["compare"], ["tune"]])
    func helpListsWorkloads(command: [String]) throws {
        let run = try runKTask(command + ["--help"])
        let help = run.stdout.replacingOccurrences(of: "\\s+", with: " ", options: .regularExpression)
        for workload in ["prefault (fault in fresh memory", "init (initialise page descriptors", "compute (a CPU-bound hash",
                         "rate-limited (a test workload"] {
            #expect(help.contains(workload), "\(command): \(help)")
        }
    }
}

@Suite("bench --pages: the prefault workload in every page mode", .serialized)
struct PageModeCLITests {
    @Test("the header names the page mode and why; thp and 4k both fault every page in")
    func pageModes() throws {
        for (flag, expected) in [([String](), "# pages: "), (["--pages", "thp"], "# pages: thp (--pages)"), (["--pages", "4k"], "# pages: 4k (--pages)")] {
            let run = try runKTask(["bench", "--workload", "prefault", "--size", "64M", "--threads", "1,2", "--runs", "1"] + flag)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout.hasPrefix(expected), "\(run.stdout)")
        }
    }

    @Test("--pages with another workload is an argument error; a hugetlb pool too small says how to reserve pages")
    func pageModeErrors() throws {
        let misuse = try runKTask(["bench", "--workload", "compute", "--pages", "thp"])
        #expect(misuse.status == 2 && misuse.stderr.contains("--pages is for --workload prefault"), "\(misuse.stderr)")
        let bad = try runKTask(["bench", "--workload", "prefault", "--pages", "2M"])
        #expect(bad.status == 2, "\(bad.stderr)")
        let free = (try? String(contentsOfFile: "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", encoding: .utf8))
            .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        let tooMany = try runKTask(["bench", "--workload", "prefault", "--pages", "hugetlb-2M", "--size", "\((free + 1) * 2)M",
                                    "--threads", "1", "--runs", "1"])
        #expect(tooMany.status == 1, "\(tooMany.stderr)")
        #expect(tooMany.stderr.contains("hugepages-2048kB/nr_hugepages"), "\(tooMany.stderr)")
    }
}
