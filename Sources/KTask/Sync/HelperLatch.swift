import CKTaskShims
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
/// may free the job (and its reference to the latch) while the helper is still inside ``countDown(_:)``.
/// The caller polls briefly before it sleeps (a helper finishing its last chunk is usually
/// microseconds away, and a sleep and wake-up costs more than that in a VM), then sleeps on the
/// count's own word with a futex; a helper makes the wake-up system call only when the caller sleeps.
final class HelperLatch: @unchecked Sendable {
    /// Helpers out in the low 31 bits; bit 31 set while the caller may be asleep on the word.
    private let word: UnsafeMutablePointer<Atomic<UInt32>>
    private static let sleeper: UInt32 = 1 << 31
    /// Helpers added so far; only the caller touches it (so helpers pay no second atomic to count down).
    private var added = 0

    /// How long the caller polls before it sleeps.
    static let spinNanoseconds: Int64 = 20_000

    init() {
        word = .allocate(capacity: 1)
        word.initialize(to: Atomic(0))
    }

    deinit {
        word.deinitialize(count: 1)
        word.deallocate()
    }

    /// Helpers that have finished (or were taken back) since the job started; caller only.
    var finished: Int { added - count }
    /// Helpers still out.
    var count: Int { Int(word[0].load(ordering: .acquiring) & ~Self.sleeper) }

    /// Adds helpers about to be dispatched (caller only).
    func add(_ helpers: Int) {
        added += helpers
        word[0].add(UInt32(helpers), ordering: .relaxed)
    }

    /// One helper (or `helpers`, for ones the caller took back unstarted) is done with the job.
    func countDown(_ helpers: Int = 1) {
        guard helpers > 0 else { return }
        let old = word[0].subtract(UInt32(helpers), ordering: .releasing).oldValue
        if old & Self.sleeper != 0 { _ = CKTask_futex_wake(address, Int32.max) }
    }

    /// Waits until no helper is out.
    func wait() {
        if spin(until: { count == 0 }) { return }
        while count > 0 { sleep(timeoutNanoseconds: -1) }
    }

    /// Waits until ``finished`` reaches `target` or no helper is out, for at most `timeoutNanoseconds`;
    /// false if it timed out.
    func wait(untilFinished target: Int, timeoutNanoseconds: Int64) -> Bool {
        func done() -> Bool { finished >= target || count == 0 }
        if spin(until: done) { return true }
        let deadline = monotonicNanoseconds() + timeoutNanoseconds
        while !done() {
            let left = deadline - monotonicNanoseconds()
            if left <= 0 { return done() }
            sleep(timeoutNanoseconds: left)
        }
        return true
    }

    private var address: UnsafeMutablePointer<UInt32> { UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self) }

    /// Marks the word as slept on and sleeps until a count-down changes it (or the timeout passes).
    private func sleep(timeoutNanoseconds: Int64) {
        let value = word[0].load(ordering: .acquiring)
        guard value & ~Self.sleeper > 0 else { return }
        let marked = value | Self.sleeper
        if value != marked {
            guard word[0].compareExchange(expected: value, desired: marked, ordering: .acquiringAndReleasing).exchanged
            else { return }
        }
        _ = CKTask_futex_wait(address, marked, timeoutNanoseconds)
    }

    /// Polls `done` for ``spinNanoseconds``; true once it holds.
    @inline(__always)
    private func spin(until done: () -> Bool) -> Bool {
        spinWait(until: monotonicNanoseconds() + Self.spinNanoseconds, done)
    }
}
