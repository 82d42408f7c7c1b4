import Foundation
import KTaskWorkloads

/// `ktask bench disturbance` as a table and as JSON.
enum DisturbanceOutput {
    static func table(_ result: DisturbanceBench.Result) -> String {
        var text = "# foreground: \(result.foregroundThreads) thread(s) at nice 0, \(result.seconds) s per case, \(result.runs) run(s); "
        text += "median items/s (min-max), slowdown vs alone\n"
        for (title, rates) in [("same session", result.sameSession), ("other session (setsid)", result.otherSession)] {
            text += "\(title):\n"
            for which in DisturbanceBench.Case.allCases {
                guard let sample = rates[which] else { continue }
                let slowdown = which == .alone ? "" : String(format: "  slowdown %.1f%%", result.slowdownPercent(rates, which))
                text += String(format: "  %-18@ %.3e (%.3e-%.3e)", which.rawValue as NSString, sample.median, sample.min, sample.max)
                text += slowdown + "\n"
            }
        }
        return text
    }

    static func json(_ result: DisturbanceBench.Result) throws -> String {
        var document: [String: Double] = [:]
        for (suffix, rates) in [("", result.sameSession), ("_other_session", result.otherSession)] {
            for which in DisturbanceBench.Case.allCases {
                guard let sample = rates[which] else { continue }
                document[which.rawValue + suffix] = sample.median
                document[which.rawValue + "_spread_pct" + suffix] = sample.median > 0 ? (sample.max - sample.min) / sample.median * 100 : 0
            }
            document["slowdown_pct_nice19" + suffix] = result.slowdownPercent(rates, .helpersNice19)
            document["slowdown_pct_nice0" + suffix] = result.slowdownPercent(rates, .helpersNice0)
            document["slowdown_pct_caller_only" + suffix] = result.slowdownPercent(rates, .callerOnly)
        }
        document["runs"] = Double(result.runs)
        document["seconds"] = result.seconds
        return try encodeJSON(document)
    }
}

/// `ktask bench starvation` as a table and as JSON.
enum StarvationOutput {
    static func table(_ result: StarvationBench.Result) -> String {
        var text = "# compute job of \(result.jobItems) items under a foreground load on every CPU, \(result.runs) run(s); "
        text += "median seconds (min-max)\n"
        for which in StarvationBench.Case.allCases {
            guard let sample = result.seconds[which] else { continue }
            text += String(format: "  %-16@ %.3f (%.3f-%.3f)", which.rawValue as NSString, sample.median, sample.min, sample.max)
            if which == .boost { text += "  [guard: \(result.defaultGuard.rawValue)]" }
            text += "\n"
        }
        return text
    }

    static func json(_ result: StarvationBench.Result) throws -> String {
        struct Document: Encodable {
            let single_thread_s: Double, no_boost_s: Double, boost_s: Double, unprivileged_s: Double
            let spread_pct: [String: Double]
            let default_guard: String
            let runs: Int, items: Int
        }
        func median(_ which: StarvationBench.Case) -> Double { result.seconds[which]?.median ?? 0 }
        let spread = Dictionary(uniqueKeysWithValues: StarvationBench.Case.allCases.compactMap { which in
            result.seconds[which].map { (which.rawValue, $0.median > 0 ? ($0.max - $0.min) / $0.median * 100 : 0) }
        })
        return try encodeJSON(Document(single_thread_s: median(.singleThread), no_boost_s: median(.noBoost),
                                       boost_s: median(.boost), unprivileged_s: median(.unprivileged), spread_pct: spread,
                                       default_guard: result.defaultGuard.rawValue, runs: result.runs, items: result.jobItems))
    }
}
