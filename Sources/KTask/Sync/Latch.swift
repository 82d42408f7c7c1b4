import Synchronization

/// Counts a job's helpers that are still out (dispatched, not yet done), and lets the job's caller
/// wait until none is.
///
/// The caller adds each helper before it dispatches it and counts it down for a helper the pool
/// could not start or that it takes back unstarted; a helper counts itself down as the very last thing
/// it does for the job. So once the count is zero no thread the job dispatched can touch it again,
/// however many were dispatched, and when (adaptive mode adds them one by one).
///
/// A helper holds its own reference to the latch while it counts down: the caller, seeing zero,
/// may free the job (and its reference to the latch) while the helper is still inside ``countDown()``.
/// The caller spins briefly before it sleeps: a helper finishing its last chunk is usually
/// microseconds away, and a futex sleep and wake-up costs more than that in a VM.
final class HelperLatch: @unchecked Sendable {
    private let outstanding = Atomic<Int>(0)
    private let lock = PThreadMutex()
    private let zero = PThreadCondition()
    /// Guarded by `lock`: the caller is asleep on `zero`.
    private var callerSleeping = false
    /// Helpers counted down so far (never decreases): how the caller tells that one more finished.
    private let finishedCount = Atomic<Int>(0)

    /// How many times the caller polls before it sleeps (a few microseconds).
    static let spinLimit = 4096

    /// Helpers that have finished since the job started.
    var finished: Int { finishedCount.load(ordering: .acquiring) }
    /// Helpers still out.
    var count: Int { outstanding.load(ordering: .acquiring) }

    /// Adds helpers about to be dispatched (caller only).
    func add(_ helpers: Int) { outstanding.add(helpers, ordering: .relaxed) }

    /// One helper (or `helpers`, for ones the caller took back unstarted) is done with the job.
    func countDown(_ helpers: Int = 1) {
        guard helpers > 0 else { return }
        finishedCount.add(helpers, ordering: .relaxed)
        outstanding.subtract(helpers, ordering: .releasing)
        lock.withLock {
            if callerSleeping { zero.signal() }
        }
    }

    /// Waits until no helper is out.
    func wait() {
        for _ in 0..<Self.spinLimit where outstanding.load(ordering: .acquiring) == 0 { return }
        lock.withLock {
            callerSleeping = true
            while outstanding.load(ordering: .acquiring) > 0 { zero.wait(lock) }
            callerSleeping = false
        }
    }

    /// Waits until ``finished`` reaches `finished` or no helper is out, for at most `timeoutNanoseconds`;
    /// false if it timed out.
    func wait(untilFinished target: Int, timeoutNanoseconds: Int64) -> Bool {
        func done() -> Bool { finished >= target || outstanding.load(ordering: .acquiring) == 0 }
        for _ in 0..<Self.spinLimit where done() { return true }
        let deadline = monotonicDeadline(afterNanoseconds: timeoutNanoseconds)
        return lock.withLock {
            callerSleeping = true
            defer { callerSleeping = false }
            while !done() {
                if !zero.wait(lock, until: deadline) { return done() }
            }
            return true
        }
    }
}
