import Dispatch
import KTask
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Work whose throughput is capped at `permits` threads: each item holds one of `permits` permits of a
/// shared limiter while it waits `itemDuration` (a stand-in for a device queue, a rate-limited service
/// or a saturated memory bus). More threads than permits only wait, so its knee is exactly `permits`:
/// the test case for `ktask tune` and adaptive mode. Items sleep rather than spin, so the knee shows on
/// a machine with fewer CPUs than permits, or one busy with other work.
package final class RateLimitedWorkload: BenchWorkload, Sendable {
    package let items: Int
    package let permits: Int
    package let itemDuration: Duration
    package let minChunk = 1
    package let align = 1
    private let limiter: DispatchSemaphore

    package init(items: Int, permits: Int, itemDuration: Duration = .microseconds(250)) throws(WorkloadError) {
        guard items >= 1 else { throw .sizeTooSmall(workload: "rate-limited", size: items, minimum: 1) }
        guard permits >= 1 else { throw .invalidParameter(name: "permits", value: permits, allowed: "at least 1") }
        self.items = items
        self.permits = permits
        self.itemDuration = itemDuration
        limiter = DispatchSemaphore(value: permits)
    }

    package var summary: String {
        "\(items) items that each wait \(Int((itemDuration.seconds * 1e6).rounded())) µs, at most \(permits) at a time"
    }

    /// Sleeps for `duration`: a waiting item needs no CPU, so the knee shows even on a busy machine.
    static func wait(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000)), remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }

    package func prepareRun() throws -> PreparedRun {
        let done = Atomic<Int>(0)
        let itemDuration = itemDuration
        return PreparedRun(
            perNode: nil,
            body: { [limiter] chunk in
                for _ in chunk {
                    limiter.wait()
                    Self.wait(itemDuration)
                    limiter.signal()
                }
                done.add(chunk.count, ordering: .relaxed)
            },
            check: { [items] in
                let count = done.load(ordering: .relaxed)
                guard count == items else {
                    throw WorkloadError.wrongResult(workload: "rate-limited", detail: "\(count) of \(items) items ran")
                }
            })
    }
}
