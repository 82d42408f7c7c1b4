import CKTaskShims
import Synchronization

/// The shared state of one multithreaded job: a cursor per part over its chunks that every participant
/// claims from, the first error, and a completion the caller waits on. One per job, owned by the
/// caller; helpers reach it unretained (``PoolWork``) and never after reporting that they are done.
final class JobState: @unchecked Sendable {
    /// The job's parts: one range, or one per node; each cut into grains by its own plan.
    let plans: [ChunkPlan]
    private let chunkFunction: (Range<Int>) throws -> Void
    private let cancellation: KTaskCancellation?
    private let taskCancellation: KTaskCancellation?
    /// Helpers claim single grains (``StarvationGuard/smallerHelperChunks``) instead of whole chunks.
    private let helpersClaimGrains: Bool
    /// Helpers note the time of each completed claim, for the caller to tell a starved one
    /// (``StarvationGuard/priorityBoost`` only).
    private let tracksHelperProgress: Bool
    /// Adaptive mode (``AdaptiveThreads``): everyone claims single grains and counts what completed, so
    /// that the caller can measure the job's throughput as helpers join.
    private let adaptive: Bool
    /// Adaptive mode: items and claims completed so far, all threads.
    private let itemsDone = Atomic<Int>(0)
    private let claimsDone = Atomic<Int>(0)
    /// Participants with a slot at or past this stop claiming (adaptive mode drops its newest helper so).
    private let admittedSlots = Atomic<Int>(Int.max)

    /// cursors[p]: the next grain of part p to hand out.
    private let cursors: UnsafeMutablePointer<Atomic<Int>>
    /// Set once a chunk failed or the job was cancelled: no chunk starts after it.
    private let stopped = Atomic<Bool>(false)

    /// The first error recorded, thrown to the caller.
    private let firstError = Mutex<(any Error)?>(nil)
    /// Where helpers report that they are done; an object of its own, see ``run(slot:part:)``.
    private let completion = JobCompletion()

    /// claimed[firstGrain[p] + g]: the grains in the completed claim that starts at grain g of part p
    /// (0: no completed claim starts there). Written only by the claimer; read by the caller after every
    /// helper reported done (the completion's lock orders the two).
    private let claimed: UnsafeMutableBufferPointer<Int32>
    private let firstGrain: [Int]
    /// chunksRun[slot]: how many claims participant `slot` completed; −1 for a helper that never joined.
    private let chunksRun: UnsafeMutableBufferPointer<Int>
    /// Per participant: whether it has left the job, and whether the caller lent it its priority.
    private let participants: Mutex<[Participant]>

    struct Participant {
        var done = false
        /// The caller lent it its nice value.
        var boosted = false
        /// The caller also took it out of the helpers' idle cgroup (it showed no progress while boosted).
        var released = false
    }

    /// lastProgress[slot]: monotonic nanoseconds of the participant's last completed claim (or of its
    /// joining): how the caller tells a starved helper from a working one.
    private let lastProgress: UnsafeMutablePointer<Atomic<Int64>>
    /// Participants the job may have (the caller and every reserved helper).
    private let slots: Int
    /// Near the end of a part a whole-chunk claim shrinks to 1/(this × participants) of the grains left.
    static let tailShareDivisor = 2

    init(plans: [ChunkPlan], threads: Int, helpersClaimGrains: Bool, tracksHelperProgress: Bool = false,
         adaptive: Bool = false, cancellation: KTaskCancellation?, taskCancellation: KTaskCancellation?,
         chunk: @escaping (Range<Int>) throws -> Void) {
        self.adaptive = adaptive
        self.tracksHelperProgress = tracksHelperProgress
        self.plans = plans
        self.chunkFunction = chunk
        self.cancellation = cancellation
        self.taskCancellation = taskCancellation
        self.helpersClaimGrains = helpersClaimGrains
        cursors = .allocate(capacity: plans.count)
        for index in plans.indices { (cursors + index).initialize(to: Atomic(0)) }
        var offsets: [Int] = []
        var total = 0
        for plan in plans {
            offsets.append(total)
            total += plan.grainCount
        }
        firstGrain = offsets
        claimed = .allocate(capacity: total)
        claimed.initialize(repeating: 0)
        chunksRun = .allocate(capacity: threads)
        chunksRun.initialize(repeating: -1)
        slots = threads
        lastProgress = .allocate(capacity: threads)
        // A helper that has not started yet counts as having made progress when the job began.
        let created = monotonicNanoseconds()
        for slot in 0..<threads { (lastProgress + slot).initialize(to: Atomic(created)) }
        participants = Mutex(Array(repeating: Participant(), count: threads))
    }

    deinit {
        cursors.deinitialize(count: plans.count)
        cursors.deallocate()
        claimed.deallocate()
        chunksRun.deallocate()
        lastProgress.deinitialize(count: slots)
        lastProgress.deallocate()
    }

    /// A helper's share: claim until nothing is left. Returns the completion the helper reports to once
    /// it is back in the pool (after that the caller may free this job at once, so the helper holds its
    /// own reference to it), and whether the caller lent it its priority (to be given back).
    func run(slot: Int, part: Int) -> (JobCompletion, boosted: Bool, released: Bool) {
        participate(slot: slot, home: part, observesCurrentTask: false)
        let (boosted, released) = participants.withLock { list in
            list[slot].done = true
            return (list[slot].boosted, list[slot].released)
        }
        return (completion, boosted, released)
    }

    /// The claim loop: claim the next grains of the home part, run them, until the part runs out; then
    /// help the other parts in turn; stop early if the job stops.
    /// `onLastClaim` runs once, when this participant claims the job's last grains (the caller uses it
    /// to start lending its priority while it still works on them). `afterClaim` runs after each of
    /// this participant's completed claims in adaptive mode (the caller's controller). Both are
    /// non-escaping, so that what they capture stays on the caller's stack (no allocation per job).
    func participate(slot: Int, home: Int, observesCurrentTask: Bool, onLastClaim: () -> Void = {},
                     afterClaim: () -> Void = {}) {
        var count = 0
        let tracksProgress = slot > 0 && tracksHelperProgress
        if tracksProgress { lastProgress[slot].store(monotonicNanoseconds(), ordering: .relaxed) }
        parts: for offset in 0..<plans.count {
            let part = (home + offset) % plans.count
            let plan = plans[part]
            let chunkClaim = (slot > 0 && helpersClaimGrains) || adaptive ? 1 : plan.grainsPerChunk
            while !stopped.load(ordering: .relaxed) {
                if slot >= admittedSlots.load(ordering: .relaxed) { break parts }
                if cancellation?.isCancelled == true || taskCancellation?.isCancelled == true
                    || (observesCurrentTask && Task.isCancelled) {
                    record(KTaskError.cancelled)
                    break parts
                }
                // A whole chunk, but near the end no more than a share of what is left (a guided tail):
                // a last big chunk would keep one thread busy while the others, done, wait for it.
                var claim = chunkClaim
                if claim > 1 {
                    let left = plan.grainCount - cursors[part].load(ordering: .relaxed)
                    claim = max(1, min(claim, left / (Self.tailShareDivisor * slots)))
                }
                let first = cursors[part].wrappingAdd(claim, ordering: .relaxed).oldValue
                guard first < plan.grainCount else { continue parts }
                let grains = first..<min(first + claim, plan.grainCount)
                if grains.upperBound == plan.grainCount && offset == plans.count - 1 { onLastClaim() }
                do {
                    let items = plan.items(ofGrains: grains)
                    try chunkFunction(items)
                    claimed[firstGrain[part] + first] = Int32(grains.count)
                    count += 1
                    if tracksProgress { lastProgress[slot].store(monotonicNanoseconds(), ordering: .relaxed) }
                    if adaptive {
                        itemsDone.add(items.count, ordering: .relaxed)
                        claimsDone.add(1, ordering: .relaxed)
                        afterClaim()
                    }
                } catch {
                    record(error)
                    break parts
                }
            }
            break
        }
        chunksRun[slot] = count
    }

    /// Adaptive mode: items and claims completed so far by all threads.
    var progress: (items: Int, claims: Int) {
        (itemsDone.load(ordering: .relaxed), claimsDone.load(ordering: .relaxed))
    }

    /// Lets only participants 0 ..< `slots` claim from now on; the others leave after their current claim.
    func admit(upTo slots: Int) { admittedSlots.store(slots, ordering: .relaxed) }

    private func record(_ error: any Error) {
        firstError.withLock { first in
            if first == nil { first = error }
        }
        stopped.store(true, ordering: .relaxed)
    }

    /// The caller, out of chunks, waits for the helpers that joined (slot, thread id), and lends its
    /// nice value to one that has completed nothing for `starvedAfter` nanoseconds, one at a time
    /// (``StarvationGuard/priorityBoost``). Nice orders threads only inside the helpers' idle cgroup,
    /// so a boosted helper also leaves it, next to the caller. Only starved helpers: a working helper
    /// needs neither, and the system calls and the cgroup move (~20 µs, at times 20 ms under the
    /// kernel's cgroup rwsem) would cost every job. Returns how many it boosted. With `waits` false it
    /// boosts at most one and returns at once.
    func boostStragglers(_ helpers: [(slot: Int, tid: Int32)], callerNice: Int32, starvedAfter: Int64,
                         waits: Bool = true) -> Int {
        var boosted = 0
        while true {
            let finishedBefore = completion.finished
            if finishedBefore >= helpers.count { return boosted }
            let now = monotonicNanoseconds()
            participants.withLock { list in
                // Under the lock: the helper cannot leave the job (and keep the boost) meanwhile.
                guard let next = helpers.first(where: { helper in
                    !list[helper.slot].done && !list[helper.slot].boosted
                        && now - lastProgress[helper.slot].load(ordering: .relaxed) > starvedAfter
                }) else { return }
                list[next.slot].boosted = CKTask_set_nice_of(next.tid, callerNice) == 0
                guard list[next.slot].boosted else { return }
                boosted += 1
                list[next.slot].released = HelperIsolation.current.release(tid: next.tid)
            }
            if !waits { return boosted }
            _ = completion.wait(forHelpers: finishedBefore + 1, timeoutNanoseconds: starvedAfter)
        }
    }

    /// Waits until `helpers` helpers have reported done; then the caller owns every result.
    func waitForHelpers(_ helpers: Int) { completion.wait(forHelpers: helpers) }

    /// After the wait: the first error, if any.
    var error: (any Error)? { firstError.withLock { $0 } }

    /// After the wait: undoes every completed claim exactly once, with the range it ran, on the calling
    /// thread. Returns how many.
    func undoCompletedChunks(_ undo: (Range<Int>) -> Void) -> Int {
        var undone = 0
        for (part, plan) in plans.enumerated() {
            var grain = 0
            while grain < plan.grainCount {
                let length = Int(claimed[firstGrain[part] + grain])
                if length > 0 {
                    undo(plan.items(ofGrains: grain..<grain + length))
                    undone += 1
                    grain += length
                } else {
                    grain += 1
                }
            }
        }
        return undone
    }

    /// After the wait: claims completed by each thread that joined, the caller first.
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

    /// Helpers done so far.
    var finished: Int { finishedHelpers.load(ordering: .acquiring) }

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

    /// As ``wait(forHelpers:)``, for at most `timeoutNanoseconds`; false if it timed out.
    func wait(forHelpers helpers: Int, timeoutNanoseconds: Int64) -> Bool {
        for _ in 0..<Self.spinLimit where finishedHelpers.load(ordering: .acquiring) >= helpers { return true }
        let deadline = monotonicDeadline(afterNanoseconds: timeoutNanoseconds)
        return lock.withLock {
            callerSleeping = true
            defer { callerSleeping = false }
            while finishedHelpers.load(ordering: .acquiring) < helpers {
                if !allDone.wait(lock, until: deadline) { return finishedHelpers.load(ordering: .acquiring) >= helpers }
            }
            return true
        }
    }
}
