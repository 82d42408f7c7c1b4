import Synchronization
import Testing
@testable import KTask

@Suite("maxChunk bounds a chunk, and so how soon cancelling stops a long job; onReport tells map/reduce/update's report", .serialized)
struct ChunkBoundTests {
    @Test("the chunk formula is cut to maxChunk, on a multiple of align, never below minChunk")
    func planCutToMaxChunk() {
        #expect(ChunkPlan(range: 0..<100_000, minChunk: 1, align: 1, threads: 2).chunkSize == 12_500)
        #expect(ChunkPlan(range: 0..<100_000, minChunk: 1, align: 1, threads: 2, maxChunk: 1000).chunkSize == 1000)
        #expect(ChunkPlan(range: 0..<100_000, minChunk: 1, align: 64, threads: 2, maxChunk: 1000).chunkSize == 960)
        #expect(ChunkPlan(range: 0..<100_000, minChunk: 100, align: 64, threads: 2, maxChunk: 100).chunkSize == 128)
        // The grains of a starvation guard stay within the smaller chunk.
        let guarded = ChunkPlan(range: 0..<100_000, minChunk: 1, align: 1, threads: 2, maxChunk: 640, smallHelperClaims: true)
        #expect(guarded.chunkSize == 640 && guarded.grainSize == 10)
    }

    @Test("the caller's first chunks grow by their pace, but not past maxChunk")
    func callerFirstWithinBound() throws {
        var first = CallerFirst(range: 0..<10_000_000, minChunk: 1, align: 1, maxChunk: 100)
        let cancellation = JobCancellation(token: nil, asyncTask: nil, observesCurrentTask: false)
        // Items that cost nothing, and 10 ms to decide in (a cold first chunk on a busy machine cannot end it early):
        // unbounded, the chunks would grow ×16 each time.
        _ = try first.run(start: monotonicNanoseconds(), decideAfter: 10_000_000, breakEven: Int64.max / 4, cancellation: cancellation) { _ in }
        #expect(first.claims > 3 && first.largestChunk == 100, "\(first.claims) chunks, largest \(first.largestChunk)")
    }

    @Test("maxChunk below minChunk is refused before any work")
    func maxChunkBelowMinChunk() {
        #expect(throws: KTask.Error.invalidParameter(name: "maxChunk", value: "5", allowed: "at least minChunk (10)")) {
            try KTask.run(0..<100, options: KTask.Options(minChunk: 10, maxChunk: 5)) { _ in Issue.record("no chunk may run") }
        }
    }

    @Test("no chunk is larger than maxChunk, on several threads or on one", arguments: [2, 1])
    func chunksWithinBound(maxThreads: Int) throws {
        let sizes = Locked<[Int]>([])
        let covered = Atomic<Int>(0)
        let report = try KTask.run(0..<500_000, options: KTask.Options(maxThreads: maxThreads, maxChunk: 700)) { chunk in
            sizes.withLock { $0.append(chunk.count) }
            covered.add(chunk.count, ordering: .relaxed)
        }
        // The caller's first chunks too (``CallerFirst``): items of ~1 ns would grow them to thousands.
        #expect(sizes.current.allSatisfy { $0 <= 700 }, "\(sizes.current.max() ?? 0)")
        #expect(covered.load(ordering: .relaxed) == 500_000)
        #expect(report.claimCount == sizes.current.count)
    }

    @Test("a long job on one thread stops within a chunk of its cancellation, and undoes what it did")
    func oneThreadStopsWithinAChunk() {
        let token = KTask.Cancellation()
        let ran = Locked<[Range<Int>]>([])
        let undone = Locked<[Range<Int>]>([])
        // Without maxChunk this job is one call of 100,000 items: cancelling it would stop nothing.
        #expect(throws: KTask.Error.cancelled) {
            try KTask.run(0..<100_000, options: KTask.Options(maxThreads: 1, cancellation: token, maxChunk: 1000),
                          undo: { chunk in undone.withLock { $0.append(chunk) } }) { chunk in
                let count = ran.withLock { $0.append(chunk); return $0.count }
                if count == 3 { token.cancel() }
            }
        }
        #expect(ran.current.count == 3, "no chunk starts after the cancellation")
        #expect(Set(undone.current) == Set(ran.current))
    }

    @Test("on several threads, cancelling stops the job within about a chunk per thread")
    func severalThreadsStopWithinAChunkEach() throws {
        let token = KTask.Cancellation()
        let itemsRun = Atomic<Int>(0)
        let pool = try KTask.Pool(name: "kt-bound", maxBusyHelpers: 1, isolateHelpers: false)
        #expect(throws: KTask.Error.cancelled) {
            try KTask.run(0..<1_000_000, options: KTask.Options(maxThreads: 2, helperPriority: .inheritCaller, cancellation: token,
                                                                pool: pool, maxChunk: 100)) { chunk in
                if itemsRun.add(chunk.count, ordering: .relaxed).newValue >= 1000 { token.cancel() }
            }
        }
        // Cancelled at 1000 items; each of the 2 threads may finish the chunk it holds and one it claimed as the
        // token flipped: far below the 125,000-item chunks of the formula alone.
        #expect(itemsRun.load(ordering: .relaxed) <= 1000 + 2 * 2 * 100, "\(itemsRun.load(ordering: .relaxed))")
    }

    @Test("map, reduce and update hand their report to onReport; a failed job does not")
    func onReportForResults() throws {
        let reports = Locked<[KTask.Report]>([])
        let options = KTask.Options(maxThreads: 2, onReport: { report in reports.withLock { $0.append(report) } })
        let squares = try KTask.map(0..<10_000, options: options) { $0 * $0 }
        let sum = try KTask.reduce(0..<10_000, options: options, 0, +) { $0.reduce(0, +) }
        var values = Array(repeating: 1, count: 10_000)
        try KTask.update(&values, options: options) { _, span in
            for index in span.indices { span[index] += 1 }
        }
        #expect(squares[9_999] == 9_999 * 9_999 && sum == 49_995_000 && values.allSatisfy { $0 == 2 })
        #expect(reports.current.count == 3)
        #expect(reports.current.allSatisfy { $0.threadsUsed >= 1 && $0.threadsUsed <= 2 })
        struct Failure: Error {}
        #expect(throws: Failure.self) { _ = try KTask.map(0..<10_000, options: options) { index -> Int in if index == 5000 { throw Failure() }; return index } }
        #expect(reports.current.count == 3, "no report for a job that threw")
    }

    @Test("the async map hands its report to onReport too")
    func onReportFromAsync() async throws {
        let reports = Locked<[KTask.Report]>([])
        let squares = try await KTask.map(0..<100, options: KTask.Options(onReport: { report in reports.withLock { $0.append(report) } })) { $0 * $0 }
        #expect(squares[9] == 81 && reports.current.count == 1)
    }
}
