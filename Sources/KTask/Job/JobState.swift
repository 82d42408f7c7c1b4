import CKTaskShims
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The shared state of one multithreaded job: a cursor per part that every participant claims grains
/// from (the claim loop), the first error, the per-grain map that undo walks, and the latch its caller
/// waits on. One per job, owned by the caller; helpers reach it unretained through ``work`` and never
/// after counting themselves down on ``latch``.
///
/// Words: a *part* is one range of the job (a per-node job has one per node); a *grain* is the
/// smallest claim; a *chunk* is ``ChunkPlan/grainsPerChunk`` grains; a *claim* is the grains one
/// participant takes at once; a *slot* numbers a participant (0 is the caller, helpers 1...).
final class JobState: @unchecked Sendable {
    let plans: [ChunkPlan]
    let policy: ClaimPolicy
    /// Helpers still out; the caller returns once it is zero.
    let latch = HelperLatch()
    /// Participants the job may have: the caller and every reserved helper.
    let slots: Int
    private let chunkFunction: (Range<Int>) throws -> Void
    private let cancellation: JobCancellation
    /// The part each slot starts on; empty for a single-part job (every slot starts on part 0).
    private let homes: [Int]
    /// The policies that follow the claims (``ClaimHook``); nil for most jobs. Held as their own types, not
    /// as a list of `any ClaimHook`: a call through an existential retains and releases the shared object
    /// on every claim of every thread (seen in the release build's code), a cache line they would all
    /// write.
    private let boost: PriorityBoost?
    private let adaptive: AdaptiveProgress?

    /// Set once a chunk failed or the job was cancelled: no claim starts after it.
    private let stopped = Atomic<Bool>(false)
    /// The first chunk error; read and written only under `errorMutex`.
    private var firstError: (any Error)?

    // The per-part and per-slot arrays below share one allocation with the mutex (a job's cost is partly
    // its mallocs); `errorMutex` is its start.
    /// cursors[p]: the next grain of part p to hand out.
    private let cursors: UnsafeMutablePointer<Atomic<Int>>
    /// firstGrain[p]: where part p's grains start in `claimed`.
    private let firstGrain: UnsafeMutablePointer<Int>
    /// claimsRun[slot]: claims participant `slot` completed; −1 for a helper that never joined.
    private let claimsRun: UnsafeMutablePointer<Int>
    /// cpuTime[slot]: the CPU time (nanoseconds) participant `slot`'s thread got while in the job: on a busy
    /// machine, what a helper actually got.
    private let cpuTime: UnsafeMutablePointer<Int64>
    /// claimed[firstGrain[p] + g]: the grains in the completed claim that starts at grain g of part p
    /// (0: none starts there). Written only by the claimer; read by the caller after the latch reached
    /// zero (which orders the two).
    private let claimed: UnsafeMutablePointer<Int32>
    /// A pthread mutex in the arena (no allocation of its own; ThreadSanitizer understands it, where it
    /// does not understand Synchronization.Mutex on this toolchain).
    private let errorMutex: UnsafeMutablePointer<pthread_mutex_t>

    /// Helpers that have picked their assignment up (the caller need not take any back once all have).
    let joined = Atomic<Int>(0)
    /// When the first helper joined (CLOCK_MONOTONIC nanoseconds; 0: none yet): what a helper cost this job.
    let firstJoin = Atomic<Int64>(0)

    init(plans: [ChunkPlan], policy: ClaimPolicy, slots: Int, homes: [Int], boost: PriorityBoost?, adaptive: AdaptiveProgress?,
         cancellation: JobCancellation, chunk: @escaping (Range<Int>) throws -> Void) {
        self.plans = plans
        self.policy = policy
        self.homes = homes
        self.slots = slots
        self.boost = boost
        self.adaptive = adaptive
        self.cancellation = cancellation
        self.chunkFunction = chunk
        let parts = plans.count
        let grainTotal = plans.reduce(0) { $0 + $1.grainCount }
        // The mutex and the 8-byte arrays first, then the 4-byte one: all aligned.
        let mutexBytes = (MemoryLayout<pthread_mutex_t>.size + 7) / 8 * 8
        let words = 2 * parts + 2 * slots
        let allocation = UnsafeMutableRawPointer.allocate(byteCount: mutexBytes + 8 * words + 4 * grainTotal, alignment: 8)
        errorMutex = allocation.bindMemory(to: pthread_mutex_t.self, capacity: 1)
        pthread_mutex_init(errorMutex, nil)
        let arena = allocation + mutexBytes
        cursors = arena.bindMemory(to: Atomic<Int>.self, capacity: parts)
        firstGrain = (arena + 8 * parts).bindMemory(to: Int.self, capacity: parts)
        claimsRun = (arena + 16 * parts).bindMemory(to: Int.self, capacity: slots)
        cpuTime = (arena + 16 * parts + 8 * slots).bindMemory(to: Int64.self, capacity: slots)
        claimed = (arena + 8 * words).bindMemory(to: Int32.self, capacity: grainTotal)
        var offset = 0
        for (part, plan) in plans.enumerated() {
            (cursors + part).initialize(to: Atomic(0))
            (firstGrain + part).initialize(to: offset)
            offset += plan.grainCount
        }
        claimed.initialize(repeating: 0, count: grainTotal)
        claimsRun.initialize(repeating: -1, count: slots)
        cpuTime.initialize(repeating: 0, count: slots)
    }

    deinit {
        cursors.deinitialize(count: plans.count)
        pthread_mutex_destroy(errorMutex)
        UnsafeMutableRawPointer(errorMutex).deallocate()
    }

    /// The job as pool work: each helper's share, then its count-down on the latch.
    var work: PoolWork {
        PoolWork(context: Unmanaged.passUnretained(self).toOpaque(),
                 run: { context, slot in
                     // Unretained: a release after the count-down could free the job or outlive the
                     // `withoutActuallyEscaping` closure it holds.
                     Unmanaged<JobState>.fromOpaque(context)._withUnsafeGuaranteedRef { $0.helperShare(slot: slot) }
                 },
                 finished: { context, _ in
                     // The latch is held by this reference while it counts down: the job may be freed meanwhile.
                     let latch = Unmanaged<JobState>.fromOpaque(context)._withUnsafeGuaranteedRef { $0.latch }
                     latch.countDown()
                 })
    }

    /// A helper's share: claim until nothing is left; then note what a hook lent it (a boost) for the
    /// pool thread to give back once the job has heard this helper is done (``HelperThread``): given back
    /// before, it would be starved again at nice 19 in the idle cgroup before it could say so, and the
    /// caller would wait for that (0.7-1.2 s for a 40 ms job under a load on every CPU).
    private func helperShare(slot: Int) {
        if joined.add(1, ordering: .relaxed).oldValue == 0 { firstJoin.store(monotonicNanoseconds(), ordering: .relaxed) }
        boost?.helperJoined(slot: slot)
        participate(slot: slot)
        if let restore = boost?.helperLeaving(slot: slot), restore != 0 { CKTask_note_helper_restore(restore) }
    }

    /// The claim loop: claim the next grains of the slot's home part and run them until the part runs
    /// out; then help the other parts in turn; stop early if the job stops. `onLastClaim` runs once, when
    /// this participant claims the job's last grains; `afterClaim` after each completed claim in adaptive
    /// mode (which adds helpers there). Both are non-escaping, so that what they capture stays on
    /// the caller's stack.
    func participate(slot: Int, onLastClaim: () -> Void = {}, afterClaim: () -> Void = {}) {
        var count = 0
        let cpuStart = threadCPUNanoseconds()
        let home = homes.isEmpty ? 0 : homes[slot]
        let (boost, adaptive) = (self.boost, self.adaptive)
        parts: for offset in 0..<plans.count {
            let part = (home + offset) % plans.count
            let plan = plans[part]
            while !stopped.load(ordering: .relaxed) {
                if let adaptive, !adaptive.mayClaim(slot: slot) { break parts }
                if cancellation.isCancelled(onCaller: slot == 0) {
                    record(cancellation.error)
                    break parts
                }
                let left = plan.grainCount - cursors[part].load(ordering: .relaxed)
                let claim = policy.grainsToClaim(slot: slot, plan: plan, left: left, participants: slots)
                let first = cursors[part].wrappingAdd(claim, ordering: .relaxed).oldValue
                guard first < plan.grainCount else { continue parts }
                let grains = first..<min(first + claim, plan.grainCount)
                if grains.upperBound == plan.grainCount && offset == plans.count - 1 { onLastClaim() }
                do {
                    let items = plan.items(ofGrains: grains)
                    try chunkFunction(items)
                    claimed[firstGrain[part] + first] = Int32(grains.count)
                    count += 1
                    boost?.claimed(slot: slot, items: items.count)
                    if let adaptive {
                        adaptive.claimed(slot: slot, items: items.count)
                        afterClaim()
                    }
                } catch {
                    record(error)
                    break parts
                }
            }
        }
        claimsRun[slot] = count
        cpuTime[slot] = threadCPUNanoseconds() - cpuStart
    }

    /// Whether any part still has grains to hand out.
    var hasGrainsLeft: Bool {
        !stopped.load(ordering: .relaxed)
            && plans.indices.contains { cursors[$0].load(ordering: .relaxed) < plans[$0].grainCount }
    }

    private func record(_ error: any Error) {
        pthread_mutex_lock(errorMutex)
        if firstError == nil { firstError = error }
        pthread_mutex_unlock(errorMutex)
        stopped.store(true, ordering: .relaxed)
    }

    /// After the latch reached zero: the first error, if any.
    var error: (any Error)? {
        pthread_mutex_lock(errorMutex)
        defer { pthread_mutex_unlock(errorMutex) }
        return firstError
    }

    /// After the latch reached zero: undoes every completed claim exactly once, with the range it ran,
    /// on the calling thread.
    func undoCompletedClaims(_ undo: (Range<Int>) -> Void) {
        for (part, plan) in plans.enumerated() {
            var grain = 0
            while grain < plan.grainCount {
                let length = Int(claimed[firstGrain[part] + grain])
                if length > 0 { undo(plan.items(ofGrains: grain..<grain + length)) }
                grain += max(1, length)
            }
        }
    }

    /// After the latch reached zero: claims completed by each thread that joined, the caller first.
    var claimsPerThread: [Int] { UnsafeBufferPointer(start: claimsRun, count: slots).filter { $0 >= 0 } }

    /// After the latch reached zero: the CPU time each thread that joined got in the job, the caller first.
    var cpuTimePerThread: [Duration] {
        (0..<slots).filter { claimsRun[$0] >= 0 }.map { .nanoseconds(cpuTime[$0]) }
    }
}

/// What stops a job: its options' token, an async job's task, or (on the caller, for the blocking
/// API) the task the caller runs in.
@usableFromInline
struct JobCancellation: Sendable {
    let token: KTask.Cancellation?
    let asyncTask: KTask.Cancellation?
    /// The blocking API: the caller also observes `Task.isCancelled` (helpers run on other threads,
    /// where it means nothing; they stop when the caller records the cancellation).
    let observesCurrentTask: Bool

    @inline(__always)
    func isCancelled(onCaller: Bool) -> Bool {
        token?.isCancelled == true || asyncTask?.isCancelled == true || (onCaller && observesCurrentTask && Task.isCancelled)
    }

    /// What a cancelled job throws: the options' token stops it with ``KTask/Error/cancelled``; a cancelled
    /// task with Swift's `CancellationError`, as `Task.checkCancellation()` would.
    var error: any Error { token?.isCancelled == true ? KTask.Error.cancelled : CancellationError() }
}
