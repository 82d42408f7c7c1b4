import Foundation
import KTaskWorkloads

/// `ktask compare --workload vm-file`'s table and JSON, in compare's style.
enum VMFileOutput {
    /// Whether this executable carries the Swift runtime (built with --static-swift-stdlib): the timed
    /// `ktask populate` is this same file, and loading 20 shared libraries costs a start about 5 ms.
    static let selfContained: Bool = dlopen("libswiftCore.so", RTLD_LAZY | RTLD_NOLOAD) == nil

    static func table(_ result: VMFileResult) -> String {
        var table = TextTable(notes: [
            "vm-file: \(Units.bytes(result.size)) of guest RAM, \(result.pageMode) pages"
                + (result.location.map { " on \($0)" } ?? "") + ", a fresh file each run, \(result.runs) alternating run(s) per path and thread count"
                + (result.settleSeconds > 0 ? ", \(Units.significant(result.settleSeconds)) s settle after each" : ""),
            "ktask+qemu = \(result.ktaskCommand), then \(result.qemuCommand)",
            "ktask = this executable, " + (selfContained ? "the Swift runtime linked in"
                : "loading the Swift runtime's shared libraries (about 5 ms more per start than a --static-swift-stdlib build)"),
            "qemu-prealloc = the same QEMU with prealloc=on,prealloc-threads=N; every process timed from start to exit",
            "ratio = the path's median / ktask+qemu's (above 1: ktask's path faster); ± = how far it would move in a second run;",
            "paired = the median of (its time / ktask+qemu's) over rounds, each pair run back to back",
        ], columns: ["thr", "system", "median (± spread)", "min-max", "populate", "qemu", "ratio", "±", "paired"])
        for row in result.rows {
            table.add([String(row.threads), row.path.rawValue,
                       "\(Units.duration(row.seconds.median)) (± \(String(format: "%.1f", row.seconds.robustSpreadPercent))%)",
                       "\(Units.duration(row.seconds.min)) - \(Units.duration(row.seconds.max))",
                       row.populateSeconds.map { Units.duration($0.median) } ?? "", Units.duration(row.qemuSeconds.median),
                       String(format: "%.3f", row.ratioVsKTask), uncertainty(row), String(format: "%.3f", row.pairedRatioVsKTask)])
        }
        table.footnotes.append(contentsOf: verdict(result))
        for (path, reason) in result.missing { table.footnotes.append("\(path.rawValue): missing: \(reason)") }
        if let steal = result.stealSeconds, steal >= 0.05 {
            table.footnotes.append("the hypervisor stole \(Units.duration(steal)) of CPU time during the runs: timings are noisier")
        }
        return table.render()
    }

    /// "±4.2%" for qemu-prealloc's row; empty for ktask's own, "?" with one run.
    static func uncertainty(_ row: VMFileRow) -> String {
        guard row.path != .ktaskThenQEMU else { return "" }
        return row.ratioUncertaintyPercent.isFinite ? String(format: "±%.1f%%", row.ratioUncertaintyPercent) : "?"
    }

    /// Per thread count: is ktask's path at most QEMU's preallocation (the target), beyond the ±?
    static func verdict(_ result: VMFileResult) -> [String] {
        guard !result.rows.isEmpty else { return [] }
        guard result.runs > 1 else { return ["one run per row: no spread to judge the ratios by (use --runs 7 or more)"] }
        return result.rows.filter { $0.path == .qemuPrealloc }.map { row in
            let apart = abs(row.ratioVsKTask - 1) * 100 > row.ratioUncertaintyPercent
            let verdict = !apart ? "level with qemu-prealloc within the ±"
                : row.ratioVsKTask > 1 ? "faster than qemu-prealloc" : "slower than qemu-prealloc"
            return "\(row.threads) thread(s): ktask+qemu is \(verdict)"
        }
    }

    struct Row: Encodable {
        let system: String
        let threads: Int
        let median_s: Double
        let min_s: Double
        let max_s: Double
        /// The runs' robust spread, percent of the median.
        let spread_pct: Double
        /// Nil for qemu-prealloc, which has no populate.
        let populate_median_s: Nullable<Double>
        let qemu_median_s: Double
        let ratio_vs_ktask: Double
        /// Nil for ktask's own row and with one run.
        let ratio_uncertainty_pct: Nullable<Double>
        let paired_ratio_vs_ktask: Double
    }

    struct Document: Encodable {
        var schema = jsonSchemaVersion
        var workload = "vm-file"
        let pages: String
        let size: Int
        let runs: Int
        let settle_s: Double
        let location: Nullable<String>
        let ktask_command: String
        let ktask_self_contained: Bool
        let qemu_command: String
        let steal_s: Nullable<Double>
        let rows: [Row]
        let missing: [CompareOutput.Missing]
    }

    static func json(_ result: VMFileResult) throws -> String {
        let rows = result.rows.map {
            Row(system: $0.path.rawValue, threads: $0.threads, median_s: Units.measured($0.seconds.median),
                min_s: Units.measured($0.seconds.min), max_s: Units.measured($0.seconds.max),
                spread_pct: Units.measured($0.seconds.robustSpreadPercent),
                populate_median_s: Nullable($0.populateSeconds.map { Units.measured($0.median) }),
                qemu_median_s: Units.measured($0.qemuSeconds.median), ratio_vs_ktask: Units.measured($0.ratioVsKTask),
                ratio_uncertainty_pct: Nullable($0.path == .ktaskThenQEMU || !$0.ratioUncertaintyPercent.isFinite ? nil : Units.measured($0.ratioUncertaintyPercent)),
                paired_ratio_vs_ktask: Units.measured($0.pairedRatioVsKTask))
        }
        return try encodeJSON(Document(pages: result.pageMode.rawValue, size: result.size, runs: result.runs,
                                       settle_s: result.settleSeconds, location: Nullable(result.location), ktask_command: result.ktaskCommand,
                                       ktask_self_contained: selfContained, qemu_command: result.qemuCommand, steal_s: Nullable(result.stealSeconds.map(Units.measured)),
                                       rows: rows, missing: result.missing.map { CompareOutput.Missing(system: $0.path.rawValue, reason: $0.reason) }))
    }
}
