import CKTaskShims

/// Polls `done` with a `pause` between polls until it holds (true) or `deadline` (CLOCK_MONOTONIC
/// nanoseconds) passes (false). The clock is read every 64 polls: a `pause` can take 140 cycles, a clock
/// read more. The waits that cost less than a futex sleep and wake-up in a VM: a caller waiting for its
/// helpers, a helper waiting for its next job.
@inline(__always)
func spinWait(until deadline: Int64, _ done: () -> Bool) -> Bool {
    var polls = 0
    while !done() {
        CKTask_cpu_relax()
        polls += 1
        if polls % 64 == 0 && monotonicNanoseconds() > deadline { return false }
    }
    return true
}
