import Foundation
import KTaskWorkloads

/// The seed's table: `thr  speedup  average sec (± %)`.
enum BenchTable {
    static func render(_ result: BenchResult, cpuTime: Bool = false) -> String {
        var text = "# \(result.summary), \(result.runs) run(s) per row\n"
        text += "thr  speedup  average sec" + (cpuTime ? "        cpu sec (× 1 thread)" : "") + "\n"
        let baselineCPU = result.rows.first { $0.threads == 1 }?.cpuSeconds.mean ?? 0
        for row in result.rows {
            let speedup = row.threads == 1 ? "" : String(format: "%.1fx", row.speedup)
            let seconds = String(format: "%.3f (± %.1f%%)", row.seconds.mean, row.seconds.standardDeviationPercent)
            text += pad(String(row.threads), 5) + pad(speedup, 9) + seconds
            if cpuTime {
                let ratio = baselineCPU > 0 ? row.cpuSeconds.mean / baselineCPU : 0
                text += "  " + String(format: "%.3f (%.2fx)", row.cpuSeconds.mean, ratio)
            }
            if row.threadsUsed < row.threads { text += "  [\(row.threadsUsed) thread(s) used]" }
            text += "\n"
        }
        // "Why only 1 thread?" answered under the table.
        for row in result.rows where row.threadsUsed < row.threads {
            text += "# \(row.threads) thread(s) asked, \(row.threadsUsed) used: limited by \(row.threadLimit.rawValue)\n"
        }
        if let steal = result.stealSeconds, steal >= 0.05 {
            text += String(format: "# the hypervisor stole %.2f s of CPU time during the runs: timings are noisier\n", steal)
        }
        return text
    }

}

/// `text` left-aligned in a column of `width` characters (at least one space after it).
func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
}

/// The bench as JSON for scripts.
enum BenchJSON {
    struct Row: Encodable {
        let threads: Int
        let mean_s: Double
        let stddev_pct: Double
        let median_s: Double
        let min_s: Double
        let max_s: Double
        let speedup: Double
        let speedup_median: Double
        let cpu_s: Double
        let threads_used: Int
        let thread_limit: String
        let chunks: Int
        let starvation_guard: String
    }

    struct Document: Encodable {
        let workload: String
        let size: Int
        let runs: Int
        let summary: String
        let steal_s: Double?
        let rows: [Row]
    }

    static func render(_ result: BenchResult) throws -> String {
        let rows = result.rows.map {
            Row(threads: $0.threads, mean_s: $0.seconds.mean, stddev_pct: $0.seconds.standardDeviationPercent,
                median_s: $0.seconds.median, min_s: $0.seconds.min, max_s: $0.seconds.max,
                speedup: $0.speedup, speedup_median: $0.medianSpeedup, cpu_s: $0.cpuSeconds.mean, threads_used: $0.threadsUsed, thread_limit: $0.threadLimit.rawValue, chunks: $0.chunkCount,
                starvation_guard: $0.starvationGuard.rawValue)
        }
        return try encodeJSON(Document(workload: result.workload.rawValue, size: result.size, runs: result.runs,
                                       summary: result.summary, steal_s: result.stealSeconds, rows: rows))
    }
}

/// Compact JSON with sorted keys, so that output is stable.
func encodeJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
