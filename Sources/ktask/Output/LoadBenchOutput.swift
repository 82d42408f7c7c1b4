import Foundation
import KTaskWorkloads

/// `ktask bench disturbance` as a table and as JSON.
enum DisturbanceOutput {
    static func table(_ result: DisturbanceBench.Result) -> String {
        var table = TextTable(notes: [
            "foreground: \(result.foregroundThreads) thread(s) at nice 0, \(Units.duration(result.seconds)) per case, \(result.runs) run(s)",
            "the foreground's median throughput (min - max) beside each case, and its slowdown against running alone",
        ], columns: ["session", "case", "foreground", "min - max", "slowdown"])
        for (title, rates) in [("same", result.sameSession), ("other (setsid)", result.otherSession)] {
            for which in DisturbanceBench.Case.allCases {
                guard let sample = rates[which] else { continue }
                let slowdown = which == .alone ? "" : String(format: "%.1f%%", result.slowdownPercent(rates, which))
                table.add([title, which.rawValue, Units.rate(sample.median, "items/s"),
                           "\(Units.rate(sample.min, "items/s")) - \(Units.rate(sample.max, "items/s"))", slowdown])
            }
        }
        return table.render()
    }

    /// Flat keys, as scripts read them: `<case>` (median items/s), `<case>_spread_pct`, `slowdown_pct_<name>`,
    /// each again with `_other_session`; a case that did not run is `null`.
    static func json(_ result: DisturbanceBench.Result) throws -> String {
        var numbers: [String: Double?] = ["seconds": result.seconds]
        for (suffix, rates) in [("", result.sameSession), ("_other_session", result.otherSession)] {
            for which in DisturbanceBench.Case.allCases {
                let sample = rates[which]
                numbers[which.rawValue + suffix] = sample.map { Units.measured($0.median) }
                numbers[which.rawValue + "_spread_pct" + suffix] = sample.map { Units.measured($0.median > 0 ? ($0.max - $0.min) / $0.median * 100 : 0) }
            }
            for (name, which) in [("nice19", DisturbanceBench.Case.helpersNice19), ("nice0", .helpersNice0), ("caller_only", .callerOnly)] {
                numbers["slowdown_pct_" + name + suffix] = rates[which] == nil ? nil : Units.measured(result.slowdownPercent(rates, which))
            }
        }
        return try encodeJSON(FlatDocument(numbers: numbers, integers: ["runs": result.runs, "foreground_threads": result.foregroundThreads]))
    }
}

/// A JSON object of flat keys: numbers (`null` where not measured), whole numbers and `schema`.
struct FlatDocument: Encodable {
    let numbers: [String: Double?]
    let integers: [String: Int]

    struct Key: CodingKey {
        let stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(jsonSchemaVersion, forKey: Key(stringValue: "schema"))
        for (key, value) in integers { try container.encode(value, forKey: Key(stringValue: key)) }
        for (key, value) in numbers { try container.encode(Nullable(value), forKey: Key(stringValue: key)) }
    }
}

/// `ktask bench starvation` as a table and as JSON.
enum StarvationOutput {
    static func table(_ result: StarvationBench.Result) -> String {
        var table = TextTable(notes: [
            "compute job of \(result.jobItems) items under a foreground load on every CPU, \(result.runs) run(s); median, p90, (min - max);",
            "helpers' CPU: the CPU time the job's helpers got, all together (median)",
        ], columns: ["case", "median", "p90", "min - max", "helpers' CPU", ""])
        for which in StarvationBench.Case.allCases {
            guard let sample = result.seconds[which] else { continue }
            // The JSON key without its unit: "single thread", "no boost", "boost", "unprivileged".
            let name = which.rawValue.replacingOccurrences(of: "_s", with: "", options: .anchored.union(.backwards))
                .replacingOccurrences(of: "_", with: " ")
            table.add([name, Units.duration(sample.median), Units.duration(sample.percentile(0.9)),
                       "\(Units.duration(sample.min)) - \(Units.duration(sample.max))",
                       result.helperCPUSeconds[which].map { Units.duration($0.median) } ?? "-",
                       which == .boost ? "guard: \(result.defaultGuard.rawValue)" : ""])
        }
        return table.render()
    }

    struct Document: Encodable {
        var schema = jsonSchemaVersion
        let single_thread_s: Nullable<Double>, no_boost_s: Nullable<Double>, boost_s: Nullable<Double>, unprivileged_s: Nullable<Double>
        let spread_pct: [String: Double]
        /// The 90th percentile of each case's seconds, and the CPU seconds its helpers got (median of runs).
        let p90_s: [String: Double]
        let helper_cpu_s: [String: Double]
        let default_guard: String
        let runs: Int, items: Int
    }

    static func json(_ result: StarvationBench.Result) throws -> String {
        func median(_ which: StarvationBench.Case) -> Nullable<Double> { Nullable(result.seconds[which].map { Units.measured($0.median) }) }
        let spread = Dictionary(uniqueKeysWithValues: StarvationBench.Case.allCases.compactMap { which in
            result.seconds[which].map { (which.rawValue, Units.measured($0.median > 0 ? ($0.max - $0.min) / $0.median * 100 : 0)) }
        })
        return try encodeJSON(Document(single_thread_s: median(.singleThread), no_boost_s: median(.noBoost),
                                       boost_s: median(.boost), unprivileged_s: median(.unprivileged), spread_pct: spread,
                                       p90_s: result.seconds.reduce(into: [:]) { $0[$1.key.rawValue] = Units.measured($1.value.percentile(0.9)) },
                                       helper_cpu_s: result.helperCPUSeconds.reduce(into: [:]) { $0[$1.key.rawValue] = Units.measured($1.value.median) },
                                       default_guard: result.defaultGuard.rawValue, runs: result.runs, items: result.jobItems))
    }
}
