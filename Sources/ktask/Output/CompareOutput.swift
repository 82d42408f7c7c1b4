import Foundation
import KTaskWorkloads

/// `ktask compare`'s table, JSON and chart.
enum CompareOutput {
    static func table(_ result: CompareResult) -> String {
        var table = TextTable(notes: [
            "\(result.summary), \(result.runs) alternating run(s) per system and thread count",
            "ratio = the system's median / ktask's median at the same thread count (above 1: ktask faster);",
            "paired = the median of (its time / ktask's) over rounds, each pair run back to back",
        ], columns: ["thr", "system", "median", "min-max", "ratio", "paired"])
        for row in result.rows {
            table.add([String(row.threads), row.system.rawValue, Units.duration(row.seconds.median),
                       "\(Units.duration(row.seconds.min)) - \(Units.duration(row.seconds.max))",
                       String(format: "%.3f", row.ratioVsKTask), String(format: "%.3f", row.pairedRatioVsKTask)])
        }
        if result.rows.contains(where: { $0.system == .qemu }) {
            table.footnotes.append("qemu: timed from process start to exit (its preallocation cannot be timed alone); the others: the job")
        }
        for (system, reason) in result.missing { table.footnotes.append("\(system.rawValue): missing: \(reason)") }
        if let steal = result.stealSeconds, steal >= 0.05 {
            table.footnotes.append("the hypervisor stole \(Units.duration(steal)) of CPU time during the runs: timings are noisier")
        }
        return table.render()
    }

    struct Row: Encodable {
        let system: String
        let threads: Int
        let median_s: Double
        let min_s: Double
        let max_s: Double
        let ratio_vs_ktask: Double
        let paired_ratio_vs_ktask: Double
    }

    struct Missing: Encodable {
        let system: String
        let reason: String
    }

    struct Document: Encodable {
        var schema = jsonSchemaVersion
        let workload: String
        let size: Int
        let runs: Int
        let summary: String
        let steal_s: Nullable<Double>
        let rows: [Row]
        let missing: [Missing]
    }

    static func json(_ result: CompareResult) throws -> String {
        let rows = result.rows.map {
            Row(system: $0.system.rawValue, threads: $0.threads, median_s: Units.measured($0.seconds.median),
                min_s: Units.measured($0.seconds.min), max_s: Units.measured($0.seconds.max),
                ratio_vs_ktask: Units.measured($0.ratioVsKTask), paired_ratio_vs_ktask: Units.measured($0.pairedRatioVsKTask))
        }
        return try encodeJSON(Document(workload: result.workload.rawValue, size: result.size, runs: result.runs,
                                       summary: result.summary, steal_s: Nullable(result.stealSeconds.map(Units.measured)), rows: rows,
                                       missing: result.missing.map { Missing(system: $0.system.rawValue, reason: $0.reason) }))
    }

    /// Speedups over ktask's 1-thread median (or its fewest threads), so that the lines share a baseline.
    static func plot(_ result: CompareResult) -> SpeedupPlot {
        let baselineRow = result.rows.filter { $0.system == .ktask }.min { $0.threads < $1.threads }
        let baseline = (baselineRow?.seconds.median ?? 1) * Double(baselineRow?.threads ?? 1)
        let systems = result.rows.map(\.system).reduce(into: [ComparedSystem]()) { if !$0.contains($1) { $0.append($1) } }
        let series = systems.map { system in
            SpeedupPlot.Series(name: system.rawValue, points: result.rows.filter { $0.system == system }.map {
                (threads: $0.threads, speedup: baseline / $0.seconds.median)
            })
        }
        return SpeedupPlot(title: "ktask compare: \(result.workload.rawValue)",
                           subtitle: "\(result.summary); speedup over ktask at 1 thread, medians of \(result.runs) runs",
                           series: series)
    }
}
