import Foundation
import KTaskWorkloads

/// `ktask tune`'s table and JSON.
enum TuneOutput {
    static func table(_ result: TuneResult, savedTo path: String?) -> String {
        var text = "# \(result.summary), medians of \(result.runs) run(s)\n"
        text += "thr  median sec  items/s          gain (× 1 thread)\n"
        let single = result.points.first?.itemsPerSecond ?? 1
        for (index, point) in result.points.enumerated() {
            let gain = index == 0 ? "" : String(format: "%+.2f", (point.itemsPerSecond - result.points[index - 1].itemsPerSecond) / single)
            text += String(format: "%-4d %-11.4f %-16.0f %@", point.threads, point.seconds.median, point.itemsPerSecond, gain)
            text += (point.threads == result.knee ? "  <- knee" : "") + "\n"
        }
        text += "knee: \(result.knee) thread(s) for class \"\(result.workClass)\" (a thread must add \(Int(result.minimumGain * 100))% of one thread's throughput)\n"
        text += path.map { "saved to \($0)\n" } ?? "not saved (--dry-run)\n"
        return text
    }

    struct Point: Encodable {
        let threads: Int
        let median_s: Double
        let min_s: Double
        let max_s: Double
        let items_per_s: Double
        let threads_used: Int
    }

    struct Document: Encodable {
        let work_class: String
        let summary: String
        let runs: Int
        let min_gain: Double
        let knee: Int
        let points: [Point]
        let saved_to: String?
    }

    static func json(_ result: TuneResult, savedTo path: String?) throws -> String {
        try encodeJSON(Document(
            work_class: result.workClass, summary: result.summary, runs: result.runs, min_gain: result.minimumGain,
            knee: result.knee,
            points: result.points.map {
                Point(threads: $0.threads, median_s: $0.seconds.median, min_s: $0.seconds.min, max_s: $0.seconds.max,
                      items_per_s: $0.itemsPerSecond, threads_used: $0.threadsUsed)
            },
            saved_to: path))
    }
}
