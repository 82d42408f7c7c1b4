import Foundation
import Synchronization
import Testing
@testable import KTask

struct ChunkFailure: Error, Equatable {
    let chunk: Range<Int>
    var label = ""
}

@Suite("Failure, undo and cancellation")
struct FailureTests {
    @Test("random failures: undo runs exactly once for each completed chunk, never for others")
    func randomFailures() throws {
        var generator = SplitMix(state: 42)
        for round in 0..<150 {
            let size = Int.random(in: 2...100_000, using: &generator)
            let minChunk = Int.random(in: 1...2000, using: &generator)
            let failEvery = UInt64.random(in: 2...40, using: &generator)
            let seed = generator.next()
            let completed = Locked<[Range<Int>]>([])
            let failed = Locked<[Range<Int>]>([])
            let undone = Locked<[Range<Int>]>([])
            let guardMode = [KTask.StarvationGuard.automatic, .smallerHelperChunks, .none].randomElement(using: &generator)!
            let options = KTask.Options(minChunk: minChunk, maxThreads: Int.random(in: 2...6, using: &generator),
                                       starvationGuard: guardMode)
            do {
                try KTask.run(0..<size, options: options, undo: { chunk in undone.withLock { $0.append(chunk) } }) { chunk in
                    var chunkRandom = SplitMix(state: seed ^ UInt64(chunk.lowerBound))
                    if chunkRandom.next() % failEvery == 0 {
                        failed.withLock { $0.append(chunk) }
                        throw ChunkFailure(chunk: chunk)
                    }
                    completed.withLock { $0.append(chunk) }
                }
                #expect(failed.current.isEmpty, "round \(round): a chunk failed but the job succeeded")
                #expect(undone.current.isEmpty, "round \(round): undo ran for a job that succeeded")
            } catch let error as ChunkFailure {
                #expect(failed.current.contains(error.chunk), "round \(round): the thrown error is not a chunk's")
                let undoneChunks = undone.current
                #expect(Set(undoneChunks).count == undoneChunks.count, "round \(round): a chunk was undone twice")
                #expect(Set(undoneChunks) == Set(completed.current), "round \(round): undone ≠ completed")
                #expect(Set(undoneChunks).isDisjoint(with: failed.current), "round \(round): a failed chunk was undone")
            }
        }
    }

    @Test("the first error thrown is the one the caller gets")
    func firstErrorWins() throws {
        for _ in 0..<20 {
            let firstThrown = Atomic<Bool>(false)
            do {
                try KTask.run(0..<64, options: KTask.Options(maxThreads: 2)) { chunk in
                    if firstThrown.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
                        throw ChunkFailure(chunk: chunk, label: "first")
                    }
                    // Every other chunk that was already running fails well after the first.
                    usleep(20_000)
                    throw ChunkFailure(chunk: chunk, label: "later")
                }
                Issue.record("the job did not throw")
            } catch let error as ChunkFailure {
                #expect(error.label == "first")
            }
        }
    }

    @Test("no chunk starts after one failed")
    func stopsHandingOutChunks() throws {
        let started = Atomic<Int>(0)
        let pool = try KTask.Pool(name: "kt-stop", maxBusyHelpers: 1, isolateHelpers: false)
        #expect(throws: ChunkFailure.self) {
            try KTask.run(0..<1000, options: KTask.Options(maxThreads: 2, pool: pool)) { chunk in
                started.add(1, ordering: .relaxed)
                throw ChunkFailure(chunk: chunk)
            }
        }
        // One failure per thread at most: each thread stops at its own first failure or at the flag.
        #expect(started.load(ordering: .relaxed) <= 2)
    }

    @Test("a cancellation token stops the job, undoes completed chunks, throws cancelled")
    func tokenCancellation() throws {
        let token = KTask.Cancellation()
        let completed = Locked<[Range<Int>]>([])
        let undone = Locked<[Range<Int>]>([])
        let pool = try KTask.Pool(name: "kt-cancel", maxBusyHelpers: 1, isolateHelpers: false)
        #expect(throws: KTask.Error.cancelled) {
            try KTask.run(0..<1000, options: KTask.Options(maxThreads: 2, cancellation: token, pool: pool),
                          undo: { chunk in undone.withLock { $0.append(chunk) } }) { chunk in
                usleep(5_000)
                // Counted in the same lock as the append: two threads appending between a separate append and
                // read would both see 4, and nothing would cancel (seen once in CI under load).
                let count = completed.withLock { $0.append(chunk); return $0.count }
                if count >= 3 { token.cancel() }
            }
        }
        #expect(completed.current.count >= 3 && completed.current.count < 8)
        #expect(Set(undone.current) == Set(completed.current))
        #expect(undone.current.count == completed.current.count)
    }

    /// The blocking API, called from synchronous code inside a task, sees the task's cancellation.
    static func runBlocking(_ completed: Locked<[Range<Int>]>, _ undone: Locked<[Range<Int>]>) throws {
        let pool = try KTask.Pool(name: "kt-taskcx", maxBusyHelpers: 1, isolateHelpers: false)
        try KTask.run(0..<400, options: KTask.Options(maxThreads: 2, pool: pool),
                      undo: { chunk in undone.withLock { $0.append(chunk) } }) { chunk in
            usleep(20_000)
            completed.withLock { $0.append(chunk) }
        }
    }

    @Test("the blocking API stops when the task it runs in is cancelled")
    func blockingAPISeesTaskCancellation() async throws {
        let completed = Locked<[Range<Int>]>([])
        let undone = Locked<[Range<Int>]>([])
        let task = Task.detached { try Self.runBlocking(completed, undone) }
        cancel(task, after: 2, of: completed)
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(completed.current.count < 8)
        #expect(Set(undone.current) == Set(completed.current))
    }

    @Test("a token cancelled before the job starts runs nothing")
    func cancelledBeforeStart() {
        let token = KTask.Cancellation()
        token.cancel()
        let calls = Atomic<Int>(0)
        #expect(throws: KTask.Error.cancelled) {
            try KTask.run(0..<10, options: KTask.Options(cancellation: token)) { _ in calls.add(1, ordering: .relaxed) }
        }
        #expect(calls.load(ordering: .relaxed) == 0)
    }
}

#if canImport(Glibc)
import Glibc
#endif
