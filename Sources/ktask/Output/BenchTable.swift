import Foundation
import KTaskWorkloads

/// The seed's table, `thr  speedup  time (± %)`, from medians: one slow run (a VM's host faulting memory
/// back in) moves a mean by tens of percent and a median hardly at all. `--format json` keeps the means.
enum BenchTable {
    static func render(_ result: BenchResult, cpuTime: Bool = false) -> String {
        var table = TextTable(notes: ["\(result.summary), \(result.runs) run(s) per row"],
                              columns: ["thr", "speedup", "median (± spread)"] + (cpuTime ? ["cpu (× 1 thread)"] : []) + ["used"])
        let baselineCPU = result.rows.first { $0.threads == 1 }?.cpuSeconds.mean ?? 0
        for row in result.rows {
            var cells = [String(row.threads), row.threads == 1 ? "" : String(format: "%.1fx", row.medianSpeedup),
                         "\(Units.duration(row.seconds.median)) (± \(String(format: "%.1f", row.seconds.robustSpreadPercent))%)"]
            if cpuTime {
                let ratio = baselineCPU > 0 ? row.cpuSeconds.mean / baselineCPU : 0
                cells.append("\(Units.duration(row.cpuSeconds.mean)) (\(String(format: "%.2f", ratio))x)")
            }
            cells.append(row.threadsUsed < row.threads ? "\(row.threadsUsed) thread(s)" : "")
            table.add(cells)
        }
        // "Why only 1 thread?" answered under the table.
        for row in result.rows where row.threadsUsed < row.threads {
            table.footnotes.append("\(row.threads) thread(s) asked, \(row.threadsUsed) used: limited by \(row.threadLimit.rawValue)")
        }
        // Which nodes a placed job's helpers ran on, where they ran on more than one.
        for row in result.rows where row.helpersPerNode.count > 1 {
            let nodes = row.helpersPerNode.sorted { $0.key < $1.key }.map { "node \($0.key): \($0.value)" }.joined(separator: ", ")
            table.footnotes.append("\(row.threads) thread(s): helpers \(nodes), the caller on its own")
        }
        // Would a second run of the same command agree? Said under every table.
        table.footnotes.append(contentsOf: result.noiseVerdict().lines)
        // The table has no "used" column when every row used the threads it asked for.
        if !result.rows.contains(where: { $0.threadsUsed < $0.threads }) {
            var trimmed = TextTable(notes: table.notes, columns: Array(table.columns.dropLast()))
            trimmed.rows = table.rows.map { Array($0.dropLast()) }
            trimmed.footnotes = table.footnotes
            return trimmed.render()
        }
        return table.render()
    }
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
        let helpers_per_node: [String: Int]
        let chunks: Int
        let starvation_guard: String
        let speedup_uncertainty_pct: Nullable<Double>
    }

    struct Noise: Encodable {
        let steady: Bool
        let verdict: [String]
        let wall_s: Double
        let cpu_pressure_s: Nullable<Double>
    }

    struct Document: Encodable {
        var schema = jsonSchemaVersion
        let workload: String
        let size: Int
        let runs: Int
        let summary: String
        let steal_s: Nullable<Double>
        let noise: Noise
        let rows: [Row]
        let placement: String
    }

    static func render(_ result: BenchResult) throws -> String {
        let rows = result.rows.map {
            Row(threads: $0.threads, mean_s: Units.measured($0.seconds.mean), stddev_pct: Units.measured($0.seconds.standardDeviationPercent),
                median_s: Units.measured($0.seconds.median), min_s: Units.measured($0.seconds.min), max_s: Units.measured($0.seconds.max),
                speedup: Units.measured($0.speedup), speedup_median: Units.measured($0.medianSpeedup), cpu_s: Units.measured($0.cpuSeconds.mean),
                threads_used: $0.threadsUsed, thread_limit: $0.threadLimit.rawValue,
                helpers_per_node: Dictionary(uniqueKeysWithValues: $0.helpersPerNode.map { (String($0.key), $0.value) }), chunks: $0.chunkCount,
                starvation_guard: $0.starvationGuard.rawValue,
                speedup_uncertainty_pct: Nullable($0.threads == 1 || !result.speedupUncertaintyPercent($0).isFinite ? nil
                                                  : Units.measured(result.speedupUncertaintyPercent($0))))
        }
        let verdict = result.noiseVerdict()
        let noise = Noise(steady: verdict.steady, verdict: verdict.lines, wall_s: Units.measured(result.wallSeconds),
                          cpu_pressure_s: Nullable(result.pressureSeconds.map(Units.measured)))
        return try encodeJSON(Document(workload: result.workload.rawValue, size: result.size, runs: result.runs,
                                       summary: result.summary, steal_s: Nullable(result.stealSeconds.map(Units.measured)), noise: noise, rows: rows,
                                       placement: result.placement))
    }
}

/// Compact JSON with sorted keys, so that output is stable.
func encodeJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
