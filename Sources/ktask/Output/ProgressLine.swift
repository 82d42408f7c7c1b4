import Foundation

/// A one-line progress display on stderr, redrawn in place, with the time elapsed and an estimate of the
/// time left; silent when stderr is not a terminal. The warm-up is shown as such and not counted. A
/// populate's line moves with its bytes done instead of by jobs.
final class ProgressLine {
    let enabled: Bool
    /// Measured jobs in the whole command.
    let jobs: Int
    private let started = ContinuousClock.now
    private var firstMeasured: ContinuousClock.Instant?
    private var measuredStarted = 0

    init(enabled: Bool = isatty(STDERR_FILENO) == 1, jobs: Int) {
        self.enabled = enabled
        self.jobs = jobs
    }

    /// Before the warm-up job; returns the line shown.
    @discardableResult
    func warmUp(_ label: String) -> String {
        show(Self.text(label + ": warm-up", elapsed: (.now - started).seconds, left: nil))
    }

    /// Before each measured job; returns the line shown.
    @discardableResult
    func job(_ label: String) -> String {
        let now = ContinuousClock.now
        if firstMeasured == nil { firstMeasured = now }
        let done = measuredStarted
        measuredStarted += 1
        let left = done > 0 ? (now - firstMeasured!).seconds / Double(done) * Double(max(0, jobs - done)) : nil
        return show(Self.text(label, elapsed: (now - started).seconds, left: left))
    }

    /// While a job of `total` bytes runs, `done` of them done (from the job's progress); returns the line shown.
    @discardableResult
    func bytes(_ label: String, done: Int, of total: Int) -> String {
        let elapsed = (ContinuousClock.now - started).seconds
        let left = done > 0 ? elapsed / Double(done) * Double(max(0, total - done)) : nil
        return show(Self.text("\(label): \(Units.bytes(done)) of \(Units.bytes(total))", elapsed: elapsed, left: left))
    }

    /// `label · 12.3 s elapsed, about 45.0 s left` (no estimate before the first measured job ends).
    static func text(_ label: String, elapsed: Double, left: Double?) -> String {
        "\(label) · \(Units.duration(elapsed)) elapsed" + (left.map { ", about \(Units.duration($0)) left" } ?? "")
    }

    private func show(_ text: String) -> String {
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K\(text)".utf8)) }
        return text
    }

    func clear() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}
