import Foundation
import KTaskWorkloads

/// `ktask compare`'s table, JSON and chart.
enum CompareOutput {
    static func table(_ result: CompareResult) -> String {
        var table = TextTable(notes: [
            "\(result.summary), \(result.runs) alternating run(s) per system and thread count",
            "ratio = the system's median / ktask's median at the same thread count (above 1: ktask faster);",
            "± = how far the ratio would move in a second run of this command (about 95% of the time);",
            "paired = the median of (its time / ktask's) over rounds, each pair run back to back",
        ], columns: ["thr", "system", "median", "min-max", "ratio", "±", "paired"])
        for row in result.rows {
            table.add([String(row.threads), row.system.rawValue, Units.duration(row.seconds.median),
                       "\(Units.duration(row.seconds.min)) - \(Units.duration(row.seconds.max))",
                       String(format: "%.3f", row.ratioVsKTask), uncertainty(row), String(format: "%.3f", row.pairedRatioVsKTask)])
        }
        table.footnotes.append(contentsOf: verdict(result))
        if result.rows.contains(where: { $0.system == .qemu }) {
            table.footnotes.append("qemu: timed from process start to exit (its preallocation cannot be timed alone); the others: the job")
        }
        for (system, reason) in result.missing { table.footnotes.append("\(system.rawValue): missing: \(reason)") }
        if let steal = result.stealSeconds, steal >= 0.05 {
            table.footnotes.append("the hypervisor stole \(Units.duration(steal)) of CPU time during the runs: timings are noisier")
        }
        return table.render()
    }

    /// "±4.2%" for a peer's row; empty for ktask's own, "?" with one run.
    static func uncertainty(_ row: CompareRow) -> String {
        guard row.system != .ktask else { return "" }
        return row.ratioUncertaintyPercent.isFinite ? String(format: "±%.1f%%", row.ratioUncertaintyPercent) : "?"
    }

    /// What the ratios can tell apart on this run: a peer whose ratio is further from 1 than its ± is faster
    /// or slower; one within it is level with ktask as far as this run can see.
    static func verdict(_ result: CompareResult) -> [String] {
        let peers = result.rows.filter { $0.system != .ktask }
        guard result.runs > 1 else { return ["one run per row: no spread to judge the ratios by (use --runs 5 or more)"] }
        guard let widest = peers.map(\.ratioUncertaintyPercent).max() else { return [] }
        let apart = peers.filter { abs($0.ratioVsKTask - 1) * 100 > $0.ratioUncertaintyPercent }
        let apartText = apart.isEmpty ? "none differs from ktask beyond its ±"
            : "beyond their ±: " + apart.map { "\($0.system.rawValue) at \($0.threads) thread(s) " + ($0.ratioVsKTask > 1 ? "slower" : "faster") }
                .joined(separator: ", ")
        return [String(format: "ratios move by up to ±%.1f%% between runs here; ", widest) + apartText
                + (widest > 5 ? "; more --runs or a quieter machine narrow it" : "")]
    }

    struct Row: Encodable {
        let system: String
        let threads: Int
        let median_s: Double
        let min_s: Double
        let max_s: Double
        let ratio_vs_ktask: Double
        /// Nil for ktask's own row and with one run.
        let ratio_uncertainty_pct: Nullable<Double>
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
                ratio_vs_ktask: Units.measured($0.ratioVsKTask),
                ratio_uncertainty_pct: Nullable($0.system == .ktask || !$0.ratioUncertaintyPercent.isFinite ? nil : Units.measured($0.ratioUncertaintyPercent)),
                paired_ratio_vs_ktask: Units.measured($0.pairedRatioVsKTask))
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
