import Synchronization

extension KTask {
    /// How a long job tells how far it has got (``KTask/Options/progress``): `report` is called with the
    /// items done and the job's total, at most once per `interval`, by one thread at a time (whichever
    /// finished a chunk when the interval was up), and once more with `total` of `total` when the job has
    /// succeeded, on the calling thread before the entry point returns. It counts completed chunks, so a
    /// job of few large chunks moves in large steps (``KTask/Options/maxChunk`` makes them smaller).
    /// Keep it short: the thread that calls it does no work meanwhile.
    public struct Progress: Sendable {
        /// The least time between two reports.
        public var interval: Duration
        /// Called with items done and the job's total.
        public var report: @Sendable (_ done: Int, _ total: Int) -> Void

        /// Progress reported at most every `interval` (default 100 ms).
        public init(every interval: Duration = .milliseconds(100), _ report: @escaping @Sendable (_ done: Int, _ total: Int) -> Void) {
            self.interval = interval
            self.report = report
        }
    }
}

/// Counts work done and reports it at most once per interval, by one thread at a time and without a lock:
/// each completed piece of work adds to a counter; the thread that adds once the interval is up and wins
/// the compare-exchange of the last report's time reports, and the time reads "reporting" until it is
/// done, so no other thread reports meanwhile (and each report is at least the last).
final class ProgressReporter: @unchecked Sendable {
    // Unchecked: `report` is not Sendable, but it is called by one thread at a time, each call ordered after
    // the last one by the acquire and release on `lastReport`: as if from one thread.
    /// `lastReport` while a thread reports.
    private static let reporting = Int64.max
    private let done = Atomic<Int>(0)
    private let lastReport: Atomic<Int64>
    private let intervalNanoseconds: Int64
    private let report: (Int) -> Void

    init(intervalNanoseconds: Int64 = 100_000_000, report: @escaping (_ done: Int) -> Void) {
        self.intervalNanoseconds = intervalNanoseconds
        self.report = report
        lastReport = Atomic(monotonicNanoseconds())
    }

    /// For a job's ``KTask/Progress``: items done of `total`.
    convenience init(_ progress: KTask.Progress, total: Int) {
        let (seconds, attoseconds) = progress.interval.components
        let nanoseconds = seconds >= Int64.max / 1_000_000_000 ? Int64.max : seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        self.init(intervalNanoseconds: max(0, nanoseconds)) { progress.report($0, total) }
    }

    func add(_ count: Int) {
        done.add(count, ordering: .relaxed)
        let last = lastReport.load(ordering: .relaxed)
        guard last != Self.reporting, monotonicNanoseconds() - last >= intervalNanoseconds,
              lastReport.compareExchange(expected: last, desired: Self.reporting, ordering: .acquiring).exchanged else { return }
        // Read after the claim: each report is at least the last one.
        report(done.load(ordering: .relaxed))
        lastReport.store(monotonicNanoseconds(), ordering: .releasing)
    }

    /// The last report, after every thread that could report has left the job.
    func finish(_ total: Int) {
        _ = lastReport.load(ordering: .acquiring)
        report(total)
    }
}
