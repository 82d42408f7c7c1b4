import Synchronization

/// The shared state of one multithreaded job: a cursor per part over its chunks that every participant
/// claims from, the first error, and a completion the caller waits on. One per job, owned by the
/// caller; helpers reach it unretained (``PoolWork``) and never after reporting that they are done.
final class JobState: @unchecked Sendable {
    /// The job's parts: one range, or one per node; each cut into chunks by its own plan.
    let plans: [ChunkPlan]
    private let chunkFunction: (Range<Int>) throws -> Void
    private let cancellation: KTaskCancellation?
    private let taskCancellation: KTaskCancellation?

    /// cursors[p]: the next chunk index of part p to hand out.
    private let cursors: UnsafeMutablePointer<Atomic<Int>>
    /// Set once a chunk failed or the job was cancelled: no chunk starts after it.
    private let stopped = Atomic<Bool>(false)

    /// The first error recorded, thrown to the caller.
    private let firstError = Mutex<(any Error)?>(nil)
    /// Where helpers report that they are done; an object of its own, see ``run(slot:part:)``.
    private let completion = JobCompletion()

    /// completed[firstChunk[p] + i]: chunk i of part p returned without throwing. Written only by the
    /// chunk's claimer; read by the caller after every helper reported done (the lock orders the two).
    private let completed: UnsafeMutableBufferPointer<Bool>
    private let firstChunk: [Int]
    /// chunksRun[slot]: how many chunks participant `slot` completed; −1 for a helper that never joined.
    private let chunksRun: UnsafeMutableBufferPointer<Int>

    init(plans: [ChunkPlan], threads: Int, cancellation: KTaskCancellation?, taskCancellation: KTaskCancellation?,
         chunk: @escaping (Range<Int>) throws -> Void) {
        self.plans = plans
        self.chunkFunction = chunk
        self.cancellation = cancellation
        self.taskCancellation = taskCancellation
        cursors = .allocate(capacity: plans.count)
        for index in plans.indices { (cursors + index).initialize(to: Atomic(0)) }
        var offsets: [Int] = []
        var total = 0
        for plan in plans {
            offsets.append(total)
            total += plan.chunkCount
        }
        firstChunk = offsets
        completed = .allocate(capacity: total)
        completed.initialize(repeating: false)
        chunksRun = .allocate(capacity: threads)
        chunksRun.initialize(repeating: -1)
    }

    deinit {
        cursors.deinitialize(count: plans.count)
        cursors.deallocate()
        completed.deallocate()
        chunksRun.deallocate()
    }

    var chunkCount: Int { completed.count }

    /// A helper's share: claim chunks until none are left. The helper then reports to the returned
    /// completion; once it has, the caller may free this job at once, so the helper holds its own
    /// reference to the completion, which it may still be unlocking when the caller wakes.
    func run(slot: Int, part: Int) -> JobCompletion {
        participate(slot: slot, home: part, observesCurrentTask: false)
        return completion
    }

    /// The claim loop: take the next chunk of the home part, run it, until its chunks run out; then
    /// help the other parts in turn; stop early if the job stops.
    func participate(slot: Int, home: Int, observesCurrentTask: Bool) {
        var count = 0
        parts: for offset in 0..<plans.count {
            let part = (home + offset) % plans.count
            let plan = plans[part]
            while !stopped.load(ordering: .relaxed) {
                if cancellation?.isCancelled == true || taskCancellation?.isCancelled == true
                    || (observesCurrentTask && Task.isCancelled) {
                    record(KTaskError.cancelled)
                    break parts
                }
                let index = cursors[part].wrappingAdd(1, ordering: .relaxed).oldValue
                guard index < plan.chunkCount else { continue parts }
                do {
                    try chunkFunction(plan.chunk(index))
                    completed[firstChunk[part] + index] = true
                    count += 1
                } catch {
                    record(error)
                    break parts
                }
            }
            break
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
        for (part, plan) in plans.enumerated() {
            for index in 0..<plan.chunkCount where completed[firstChunk[part] + index] {
                undo(plan.chunk(index))
                undone += 1
            }
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
