import Synchronization

/// The shared state of one multithreaded job: a cursor over its chunks that every participant
/// claims from, the first error, and a completion the caller waits on. One per job, owned by the
/// caller; helpers reach it `unowned(unsafe)` and never after reporting that they are done.
final class JobState: PoolWork, @unchecked Sendable {
    let plan: ChunkPlan
    private let chunkFunction: (Range<Int>) throws -> Void
    private let cancellation: KTaskCancellation?
    private let taskCancellation: KTaskCancellation?

    /// The next chunk index to hand out.
    private let cursor = Atomic<Int>(0)
    /// Set once a chunk failed or the job was cancelled: no chunk starts after it.
    private let stopped = Atomic<Bool>(false)

    private let lock = PThreadMutex()
    private let helpersDone = PThreadCondition()
    /// Guarded by `lock`.
    private var finishedHelpers = 0
    /// Guarded by `lock`: the first error recorded, thrown to the caller.
    private var firstError: (any Error)?

    /// completed[i]: chunk i returned without throwing. Written only by the chunk's claimer; read
    /// by the caller after every helper reported done (the lock orders the two).
    private let completed: UnsafeMutableBufferPointer<Bool>
    /// chunksRun[slot]: how many chunks participant `slot` completed.
    private let chunksRun: UnsafeMutableBufferPointer<Int>

    init(plan: ChunkPlan, threads: Int, cancellation: KTaskCancellation?, taskCancellation: KTaskCancellation?,
         chunk: @escaping (Range<Int>) throws -> Void) {
        self.plan = plan
        self.chunkFunction = chunk
        self.cancellation = cancellation
        self.taskCancellation = taskCancellation
        completed = .allocate(capacity: plan.chunkCount)
        completed.initialize(repeating: false)
        chunksRun = .allocate(capacity: threads)
        chunksRun.initialize(repeating: 0)
    }

    deinit {
        completed.deallocate()
        chunksRun.deallocate()
    }

    /// A helper's share: claim chunks until none are left, then report done.
    func run(slot: Int) {
        participate(slot: slot, observesCurrentTask: false)
        lock.withLock {
            finishedHelpers += 1
            helpersDone.signal()
        }
    }

    /// The claim loop: take the next chunk, run it, until the chunks run out or the job stops.
    func participate(slot: Int, observesCurrentTask: Bool) {
        var count = 0
        while !stopped.load(ordering: .relaxed) {
            if cancellation?.isCancelled == true || taskCancellation?.isCancelled == true
                || (observesCurrentTask && Task.isCancelled) {
                record(KTaskError.cancelled)
                break
            }
            let index = cursor.wrappingAdd(1, ordering: .relaxed).oldValue
            guard index < plan.chunkCount else { break }
            do {
                try chunkFunction(plan.chunk(index))
                completed[index] = true
                count += 1
            } catch {
                record(error)
                break
            }
        }
        chunksRun[slot] = count
    }

    private func record(_ error: any Error) {
        lock.withLock {
            if firstError == nil { firstError = error }
        }
        stopped.store(true, ordering: .relaxed)
    }

    /// Waits until `helpers` helpers have reported done; then the caller owns every result.
    func waitForHelpers(_ helpers: Int) {
        lock.withLock {
            while finishedHelpers < helpers { helpersDone.wait(lock) }
        }
    }

    /// After the wait: the first error, if any.
    var error: (any Error)? { lock.withLock { firstError } }

    /// After the wait: undoes every completed chunk exactly once, on the calling thread. Returns how many.
    func undoCompletedChunks(_ undo: (Range<Int>) -> Void) -> Int {
        var undone = 0
        for index in 0..<plan.chunkCount where completed[index] {
            undo(plan.chunk(index))
            undone += 1
        }
        return undone
    }

    /// After the wait: chunks completed by each participant, the caller first.
    func chunksPerThread(threads: Int) -> [Int] { Array(chunksRun[0..<threads]) }
}
