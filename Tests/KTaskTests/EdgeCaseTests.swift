import Foundation
import Logging
import Synchronization
import Testing
@testable import KTask

/// Defects a hostile review found in the admission, maxChunk, onReport and the hooks (each failed before its fix).
@Suite("Edge cases of the admission, maxChunk and onReport", .serialized)
struct EdgeCaseTests {
    // D1: onReport is documented as "called with the job's report once it succeeded, before the entry point
    // returns"; an empty range succeeds (KTask.run returns `.noWork`) but onReport is never called.
    @Test("an empty job that succeeds hands its report to onReport too")
    func onReportForEmptyRange() throws {
        let reports = Locked<[KTask.Report]>([])
        let options = KTask.Options(onReport: { report in reports.withLock { $0.append(report) } })
        let report = try KTask.run(0..<0, options: options) { _ in }
        #expect(reports.current == [report], "run(0..<0) returned \(report) but onReport got \(reports.current.count) report(s)")
        let mapped = try KTask.map(0..<0, options: options) { $0 }
        #expect(mapped.isEmpty)
        #expect(reports.current.count == 2, "map(0..<0): onReport got \(reports.current.count - 1) report(s)")
    }

    // D2: the debug line "N items: T thread(s), limited by L" is logged after the reservation (its limit is
    // the reservation's) but T is the count planned before it: a job that got no helper says 2 threads.
    @Test("the admission's debug line counts the threads the job got, not the ones it asked for")
    func debugLineCountsReservedThreads() throws {
        let captured = CapturedLog()
        let pool = try KTask.Pool(name: "kt-rv-log", maxBusyHelpers: 1, isolateHelpers: false)
        let held = pool.reserve(upTo: 1, cap: 1)
        defer { pool.cancel(held) }
        // 10 chunks: below CallerFirst's 16 (8 per thread × 2), so sized and reserved at once.
        let report = try KTask.run(0..<10, options: KTask.Options(maxThreads: 2, placement: .anywhere, pool: pool,
                                                                  logger: captured.logger)) { _ in }
        #expect(report.threadsUsed == 1 && report.threadLimit == .helpersBusy)
        let line = captured.messages(.debug).first { $0.hasPrefix("10 items:") } ?? ""
        #expect(line.hasPrefix("10 items: 1 thread(s), limited by helpers busy"), "\(line)")
    }

    // D3: CallerFirst rounds its first chunk *up* to the next multiple of align from an unaligned start, so the
    // caller's first chunk is longer than maxChunk (ChunkPlan cuts it shorter at the same boundary).
    @Test("no chunk is larger than maxChunk when the range starts off an align boundary")
    func callerFirstUnalignedStartWithinMaxChunk() throws {
        let sizes = Locked<[Int]>([])
        _ = try KTask.run(1..<400_000, options: KTask.Options(minChunk: 4, align: 4, maxThreads: 2, maxChunk: 4)) { chunk in
            sizes.withLock { $0.append(chunk.count) }
        }
        #expect(sizes.current.allSatisfy { $0 <= 4 }, "largest chunk \(sizes.current.max() ?? 0) > maxChunk 4")

        var first = CallerFirst(range: 1..<100_000, minChunk: 4, align: 4, maxChunk: 4)
        let cancellation = JobCancellation(token: nil, asyncTask: nil, observesCurrentTask: false)
        _ = try first.run(start: monotonicNanoseconds(), decideAfter: 50_000, breakEven: Int64.max / 4, cancellation: cancellation) { _ in }
        #expect(first.largestChunk <= 4, "CallerFirst's largest chunk \(first.largestChunk)")
    }

    // D4: populate raises minChunk (and align) to 2 MiB of pages, after which a valid user maxChunk below that
    // fails validation with an error naming a minChunk the user never set.
    @Test("populate accepts a maxChunk the user's own options allow")
    func populateWithSmallMaxChunk() throws {
        let memory = try KTask.Memory(bytes: 8 << 20, pages: .base)
        // maxChunk 256 pages (1 MiB) >= the user's minChunk (1): valid options.
        try KTask.Options(maxChunk: 256).validate()
        #expect(throws: Never.self) {
            try KTask.populate(memory, options: KTask.Options(maxChunk: 256))
        }
    }

    // D5: reduce converts maxChunk to blocks as max(1, maxChunk / blocks.size); where a block is larger than
    // maxChunk (ranges over 4096 × maxChunk items, or minChunk/align above it), each `partial` call still gets a
    // whole block: maxChunk (and the cancellation latency it is documented to bound) is silently exceeded.
    @Test("reduce's partial calls stay within maxChunk")
    func reduceWithinMaxChunk() throws {
        let largest = Atomic<Int>(0)
        let total = try KTask.reduce(0..<10_000_000, options: KTask.Options(maxThreads: 2, maxChunk: 1000), 0, &+) { range in
            largest.max(range.count, ordering: .relaxed)
            return range.reduce(0, &+)
        }
        #expect(total == (0..<10_000_000).reduce(0, &+))
        #expect(largest.load(ordering: .relaxed) <= 1000, "a partial got \(largest.load(ordering: .relaxed)) items with maxChunk 1000")
    }

    // D6: onReport is "not called for a job that throws"; reduce's block job reports before `combine` runs, so a
    // reduce that throws from `combine` has already handed a report to onReport.
    @Test("a reduce that throws from combine reports nothing")
    func reduceCombineThrowsNoReport() {
        struct Failure: Error {}
        let reports = Locked<[KTask.Report]>([])
        let options = KTask.Options(onReport: { report in reports.withLock { $0.append(report) } })
        #expect(throws: Failure.self) {
            _ = try KTask.reduce(0..<10_000, options: options, 0, { _, _ in throw Failure() }) { $0.reduce(0, +) }
        }
        #expect(reports.current.isEmpty, "onReport got \(reports.current.count) report(s) for a reduce that threw")
    }

    // D7: the documented rule is "a limit equal to the count so far cuts nothing: the earlier one keeps the
    // name"; the inline fast path names maxThreads for a one-chunk job with maxThreads 1 (useful threads, step 1,
    // already made it 1), where Admission.sized names tooLittleWork for the same tie.
    @Test("a one-chunk job with maxThreads 1 is named tooLittleWork (the earlier step keeps a tie)")
    func oneChunkMaxThreadsOneTie() throws {
        let report = try KTask.run(0..<10, options: KTask.Options(minChunk: 100, maxThreads: 1)) { _ in }
        #expect(report.threadLimit == .tooLittleWork, "\(report.threadLimit)")
    }

    // Checks that passed (kept as regression tests).
    @Test("a blocking parallel job in a cancelled task throws CancellationError and undoes its chunks")
    func blockingInCancelledTask() async throws {
        let ran = Counter(), undone = Counter(), started = Counter()
        let task = Task.detached { () -> (any Error)? in blockingJob(ran: ran, undone: undone, started: started) }
        while started.value.load(ordering: .relaxed) == 0 { usleep(100) }
        task.cancel()
        let error = await task.value
        #expect(error is CancellationError, "\(String(describing: error))")
        #expect(ran.value.load(ordering: .relaxed) == undone.value.load(ordering: .relaxed))
    }

    @Test("token and task both cancelled: the token's KTask.Error.cancelled")
    func tokenWins() async throws {
        let token = KTask.Cancellation()
        token.cancel()
        let task = Task.detached { () -> (any Error)? in
            withUnsafeCurrentTask { $0?.cancel() }
            do { try await KTask.run(0..<1000, options: KTask.Options(cancellation: token)) { _ in }; return nil } catch { return error }
        }
        let error = await task.value
        #expect((error as? KTask.Error) == .cancelled, "\(String(describing: error))")
    }

    @Test("per-node job whose only helper lane is cut to 0 by the per-node cap: every part still runs once")
    func perNodeLaneCutToZero() throws {
        let pool = try KTask.Pool(name: "kt-rv-pn", isolateHelpers: false)
        try pool.setMaxBusyHelpersPerNode(0)
        let sum = Atomic<Int>(0)
        let report = try KTask.run(perNode: [KTask.NodeRange(node: 0, range: 0..<10_000)],
                                   options: KTask.Options(pool: pool, maxChunk: 100)) { chunk in
            sum.add(chunk.reduce(0, +), ordering: .relaxed)
        }
        #expect(sum.load(ordering: .relaxed) == (0..<10_000).reduce(0, +))
        #expect(report.threadsUsed == 1 && report.threadLimit == .nodeCap, "\(report)")
    }
}

/// A blocking job called from a task (through a synchronous function, as user code would).
final class Counter: Sendable { let value = Atomic<Int>(0) }

private func blockingJob(ran: Counter, undone: Counter, started: Counter) -> (any Error)? {
    do {
        try KTask.run(0..<200_000, options: KTask.Options(maxThreads: 2, maxChunk: 100),
                      undo: { undone.value.add($0.count, ordering: .relaxed) }) { chunk in
            ran.value.add(chunk.count, ordering: .relaxed)
            started.value.store(1, ordering: .relaxed)
            usleep(50)
        }
        return nil
    } catch { return error }
}
