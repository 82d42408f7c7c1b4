import Foundation
import Synchronization
import Testing
@testable import KTask

@Suite("Async jobs")
struct AsyncTests {
    @Test("every chunk, the caller's share included, runs on ktask's own threads")
    func runsOnKTaskThreads() async throws {
        let names = Locked<Set<String>>([])
        let chunks = Locked<[Range<Int>]>([])
        let report = try await KTask.run(0..<100_000, options: KTask.Options(minChunk: 1000)) { chunk in
            let name = ThreadSnapshot.read(tid: ThreadSnapshot.currentTID)?.name ?? "?"
            names.withLock { _ = $0.insert(name) }
            chunks.withLock { $0.append(chunk) }
        }
        #expect(names.current.allSatisfy { $0.hasPrefix("ktask") }, "\(names.current)")
        #expect(tilingProblems(chunks.current, range: 0..<100_000, align: 1, minChunk: 1000).isEmpty)
        #expect(report.claimsPerThread.reduce(0, +) == chunks.current.count)
    }

    @Test("cancelling the task cancels the job and undoes completed chunks")
    func taskCancellation() async throws {
        let completed = Locked<[Range<Int>]>([])
        let undone = Locked<[Range<Int>]>([])
        let pool = try KTask.Pool(name: "kt-async", maxBusyHelpers: 1, isolateHelpers: false)
        let task = Task {
            try await KTask.run(0..<400, options: KTask.Options(maxThreads: 2, pool: pool),
                                undo: { chunk in undone.withLock { $0.append(chunk) } }) { chunk in
                usleep(50_000)
                completed.withLock { $0.append(chunk) }
            }
        }
        cancel(task, after: 2, of: completed)
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(completed.current.count < 8)
        #expect(Set(undone.current) == Set(completed.current))
        #expect(undone.current.count == completed.current.count)
    }

    @Test("a chunk's error reaches the awaiting caller")
    func errorsPropagate() async {
        await #expect(throws: ChunkFailure.self) {
            try await KTask.run(0..<10) { chunk in throw ChunkFailure(chunk: chunk) }
        }
    }

    @Test("invalid input throws before any thread is used")
    func validation() async {
        await #expect(throws: KTask.Error.invalidAlign(0)) {
            try await KTask.run(0..<10, options: KTask.Options(align: 0)) { _ in }
        }
    }
}
