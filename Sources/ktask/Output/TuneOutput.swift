import Foundation
import KTaskWorkloads

/// `ktask tune`'s table and JSON.
enum TuneOutput {
    /// `notSaved`: why the knee was not saved, when `path` is nil.
    static func table(_ result: TuneResult, savedTo path: String?, notSaved: String = "not saved (--dry-run)") -> String {
        var table = TextTable(notes: ["\(result.summary), medians of \(result.runs) run(s)"],
                              columns: ["thr", "median", "throughput", "gain (× 1 thread)", ""])
        let single = result.points.first?.itemsPerSecond ?? 1
        for (index, point) in result.points.enumerated() {
            let gain = index == 0 ? "" : String(format: "%+.2f", (point.itemsPerSecond - result.points[index - 1].itemsPerSecond) / single)
            table.add([String(point.threads), Units.duration(point.seconds.median), Units.rate(point.itemsPerSecond, "items/s"), gain,
                       ([point.threads == result.knee ? "<- knee" : nil] + [point.refusedBy.map { "helpers refused: \($0.rawValue)" }])
                           .compactMap { $0 }.joined(separator: "; ")])
        }
        table.footnotes.append("knee: \(result.knee) thread(s) for class \"\(result.workClass)\" (a thread must add \(Int(result.minimumGain * 100))% of one thread's throughput)")
        table.footnotes.append(path.map { "saved to \($0)" } ?? notSaved)
        return table.render()
    }

    struct Point: Encodable {
        let threads: Int
        let median_s: Double
        let min_s: Double
        let max_s: Double
        let items_per_s: Double
        let threads_used: Int
        /// What outside this process refused helpers at this count (a thread limit), or null.
        let refused_by: Nullable<String>
    }

    struct Document: Encodable {
        var schema = jsonSchemaVersion
        let work_class: String
        let summary: String
        let runs: Int
        let min_gain: Double
        let knee: Int
        let points: [Point]
        let saved_to: Nullable<String>
    }

    static func json(_ result: TuneResult, savedTo path: String?) throws -> String {
        try encodeJSON(Document(
            work_class: result.workClass, summary: result.summary, runs: result.runs, min_gain: result.minimumGain,
            knee: result.knee,
            points: result.points.map {
                Point(threads: $0.threads, median_s: Units.measured($0.seconds.median), min_s: Units.measured($0.seconds.min),
                      max_s: Units.measured($0.seconds.max), items_per_s: Units.measured($0.itemsPerSecond), threads_used: $0.threadsUsed,
                      refused_by: Nullable($0.refusedBy?.rawValue))
            },
            saved_to: Nullable(path)))
    }
}
