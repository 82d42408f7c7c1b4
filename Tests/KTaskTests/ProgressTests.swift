import Foundation
import Synchronization
import Testing
@testable import KTask

@Suite("Options.progress: how far a long job has got", .serialized)
struct ProgressTests {
    /// What the callback saw, and whether two calls ever overlapped.
    final class Seen: @unchecked Sendable {
        let inside = Atomic<Int>(0)
        let overlapped = Atomic<Bool>(false)
        let lock = NSLock()
        var reports: [(done: Int, total: Int, at: ContinuousClock.Instant)] = []

        func report(_ done: Int, _ total: Int) {
            if inside.add(1, ordering: .relaxed).newValue > 1 { overlapped.store(true, ordering: .relaxed) }
            lock.withLock { reports.append((done, total, .now)) }
            inside.subtract(1, ordering: .relaxed)
        }
        var current: [(done: Int, total: Int, at: ContinuousClock.Instant)] { lock.withLock { reports } }
    }

    @Test("reports while the job runs, one at a time, never less than the last, at most once per interval, then total of total")
    func reportsDuringAndAtTheEnd() throws {
        let seen = Seen()
        let options = KTask.Options(maxThreads: 2, helperPriority: .inheritCaller, maxChunk: 10,
                                    progress: KTask.Progress(every: .milliseconds(20)) { seen.report($0, $1) })
        // 2000 items of 50 µs in chunks of 10: about 0.05-0.1 s, many chunks per interval.
        let start = ContinuousClock.now
        try KTask.run(0..<2000, options: options) { chunk in usleep(UInt32(chunk.count) * 50) }
        let elapsed = ContinuousClock.now - start
        let reports = seen.current
        let overlapped = seen.overlapped.load(ordering: .relaxed)
        #expect(!overlapped)
        #expect(reports.allSatisfy { $0.total == 2000 })
        #expect(reports.last.map { $0.done == 2000 } == true, "the last report is total of total")
        #expect(reports.count >= 2 && reports.dropLast().contains { $0.done < 2000 }, "reports while running: \(reports.map(\.done))")
        #expect(zip(reports, reports.dropFirst()).allSatisfy { $0.done <= $1.done })
        // Within the interval: the reports while running are at least 20 ms apart.
        let during = reports.dropLast()
        #expect(zip(during, during.dropFirst()).allSatisfy { $1.at - $0.at >= .milliseconds(19) }, "\(reports.map(\.at))")
        #expect(during.count <= Int(elapsed / .milliseconds(20)) + 1)
    }

    @Test("a job that fails gets no final report of total")
    func failedJobHasNoFinalReport() {
        let seen = Seen()
        struct Failure: Error {}
        let options = KTask.Options(maxThreads: 1, maxChunk: 10, progress: KTask.Progress(every: .zero) { seen.report($0, $1) })
        #expect(throws: Failure.self) {
            try KTask.run(0..<1000, options: options) { chunk in if chunk.lowerBound >= 500 { throw Failure() } }
        }
        let reports = seen.current
        #expect(!reports.isEmpty && reports.allSatisfy { $0.done <= 500 }, "\(reports.map(\.done))")
    }

    @Test("a populate counts bytes, 64 MiB pieces at a time: a one-thread job of one chunk still moves")
    func populateCountsBytes() throws {
        let memory = try KTask.Memory(bytes: 256 << 20, pages: .base)
        let seen = Seen()
        // A read of fresh anonymous memory maps the zero page: nothing allocated.
        let report = try KTask.populate(memory, write: false,
                                        options: KTask.Options(maxThreads: 1, progress: KTask.Progress(every: .zero) { seen.report($0, $1) }))
        #expect(report.claimCount == 1)
        #expect(seen.current.map(\.done) == [64 << 20, 128 << 20, 192 << 20, 256 << 20, 256 << 20], "\(seen.current.map(\.done))")
        #expect(seen.current.allSatisfy { $0.total == 256 << 20 })
    }

    @Test("map from async code reports its progress too")
    func asyncMap() async throws {
        let seen = Seen()
        let squares = try await KTask.map(0..<10_000, options: KTask.Options(progress: KTask.Progress { seen.report($0, $1) })) { $0 * $0 }
        #expect(squares[100] == 10_000)
        #expect(seen.current.last.map { $0.done == 10_000 && $0.total == 10_000 } == true)
    }
}
