import Synchronization

/// The shared state of one multithreaded job: a cursor over its chunks that every participant
/// claims from, the first error, and a completion the caller waits on. One per job, owned by the
/// caller; helpers reach it unretained (``PoolWork``) and never after reporting that they are done.
final class JobState: @unchecked Sendable {
    let plan: ChunkPlan
    private let chunkFunction: (Range<Int>) throws -> Void
    private let cancellation: KTaskCancellation?
    private let taskCancellation: KTaskCancellation?

    /// The next chunk index to hand out.
    private let cursor = Atomic<Int>(0)
    /// Set once a chunk failed or the job was cancelled: no chunk starts after it.
    private let stopped = Atomic<Bool>(false)

    /// The first error recorded, thrown to the caller.
    private let firstError = Mutex<(any Error)?>(nil)
    /// Where helpers report that they are done; an object of its own, see ``run(slot:)``.
    private let completion = JobCompletion()

    /// completed[i]: chunk i returned without throwing. Written only by the chunk's claimer; read
    /// by the caller after every helper reported done (the lock orders the two).
    private let completed: UnsafeMutableBufferPointer<Bool>
    /// chunksRun[slot]: how many chunks participant `slot` completed; −1 for a helper that never joined.
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
        chunksRun.initialize(repeating: -1)
    }

    deinit {
        completed.deallocate()
        chunksRun.deallocate()
    }

    /// A helper's share: claim chunks until none are left. The helper then reports to the returned
    /// completion; once it has, the caller may free this job at once, so the helper holds its own
    /// reference to the completion, which it may still be unlocking when the caller wakes.
    func run(slot: Int) -> JobCompletion {
        participate(slot: slot, observesCurrentTask: false)
        return completion
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
        firstError.withLock { first in
            if first == nil { first = error }
        }
        stopped.store(true, ordering: .relaxed)
    }

    /// Waits until `helpers` helpers have reported done; then the caller owns every result.
    func waitForHelpers(_ helpers: Int) { completion.wait(forHelpers: helpers) }

    /// After the wait: the first error, if any.
    var error: (any Error)? { firstError.withLock { $0 } }

    /// After the wait: undoes every completed chunk exactly once, on the calling thread. Returns how many.
    func undoCompletedChunks(_ undo: (Range<Int>) -> Void) -> Int {
        var undone = 0
        for index in 0..<plan.chunkCount where completed[index] {
            undo(plan.chunk(index))
            undone += 1
        }
        return undone
    }

    /// After the wait: chunks completed by each thread that joined, the caller first.
    func chunksPerThread(slots: Int) -> [Int] { chunksRun[0..<slots].filter { $0 >= 0 } }
}

/// The count of helpers done with a job, and the condition its caller waits on.
///
/// The caller spins briefly before it sleeps: a helper finishing its last chunk is usually
/// microseconds away, and a futex sleep and wake-up costs more than that in a VM.
final class JobCompletion: @unchecked Sendable {
    private let finishedHelpers = Atomic<Int>(0)
    private let lock = PThreadMutex()
    private let allDone = PThreadCondition()
    /// Guarded by `lock`: the caller is asleep on `allDone`.
    private var callerSleeping = false

    /// How many times the caller polls before it sleeps (a few microseconds).
    static let spinLimit = 4096

    func helperFinished() {
        finishedHelpers.add(1, ordering: .releasing)
        lock.withLock {
            if callerSleeping { allDone.signal() }
        }
    }

    func wait(forHelpers helpers: Int) {
        for _ in 0..<Self.spinLimit where finishedHelpers.load(ordering: .acquiring) >= helpers { return }
        lock.withLock {
            callerSleeping = true
            while finishedHelpers.load(ordering: .acquiring) < helpers { allDone.wait(lock) }
            callerSleeping = false
        }
    }
}
