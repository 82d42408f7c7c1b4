import CKTaskShims
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A policy that follows a job's claims from inside the claim loop: the priority boost and adaptive mode.
/// ``JobState`` holds each as its own type (a call through `any ClaimHook` would retain and release it per
/// claim); a job without one pays a branch per claim. Each is called on the participant's own thread; what the
/// caller does with what they saw (boost a helper, add one) it does between its own claims.
protocol ClaimHook: AnyObject {
    /// A helper has picked the job up, on its own thread.
    func helperJoined(slot: Int)
    /// Whether participant `slot` may make another claim.
    func mayClaim(slot: Int) -> Bool
    /// Participant `slot` completed a claim of `items` items.
    func claimed(slot: Int, items: Int)
    /// A helper is done with the job: what its thread must give back once the job has heard it
    /// (``HelperRestore`` bits, 0 for nothing).
    func helperLeaving(slot: Int) -> Int32
}

extension ClaimHook {
    func helperJoined(slot: Int) {}
    func mayClaim(slot: Int) -> Bool { true }
    func helperLeaving(slot: Int) -> Int32 { 0 }
}

/// What a boosted helper gives back after its job (``CKTask_note_helper_restore``'s bits).
enum HelperRestore {
    static let nice: Int32 = 1
    static let idleCgroup: Int32 = 2
}

/// ``KTask/StarvationGuard/priorityBoost``: the caller lends its nice value to a helper that has completed
/// no claim for a while (4 grains' time at the job's pace so far, at least 1 ms), one at a time, and takes
/// it out of the helpers' idle cgroup (nice orders threads only inside one group). The helper gives both
/// back itself right after it has counted down on the job's latch (``HelperThread``): back at nice 19 in
/// the idle cgroup first, it would starve before it could.
///
/// Only starved helpers: a working helper needs neither, and the system calls and the cgroup move
/// (~20 µs, at times 20 ms under the kernel's cgroup rwsem) would cost every job.
///
/// Helpers note their thread id when they join and the time of each completed claim; the caller reads
/// them when it runs out of claims. Whether a helper left, and whether it was boosted, is decided under one
/// lock, so that a helper never leaves holding a boost nobody gives back.
final class PriorityBoost: ClaimHook, @unchecked Sendable {
    /// A job shorter than this is over before a boost (two system calls and a cgroup write) pays off.
    static let earliest = Duration.milliseconds(1)

    private let slots: Int
    private let grains: Int
    private let callerNice: Int32
    private let helpersIsolated: Bool
    private let start: ContinuousClock.Instant
    /// Helpers boosted so far (the caller's count).
    private(set) var boosted = 0
    /// tids[slot]: the helper's thread id once it joined (0: not yet).
    private let tids: UnsafeMutablePointer<Atomic<Int32>>
    /// lastProgress[slot]: when the helper last completed a claim (CLOCK_MONOTONIC nanoseconds).
    private let lastProgress: UnsafeMutablePointer<Atomic<Int64>>
    /// flags[slot], under `mutex`.
    private let flags: UnsafeMutablePointer<Flags>
    /// A pthread mutex (ThreadSanitizer understands it) at the start of the one allocation that holds the
    /// arrays above: a job with the boost costs one object and one buffer more, not five.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    struct Flags: OptionSet {
        let rawValue: UInt8
        static let left = Flags(rawValue: 1)
        /// The caller lent it its nice value.
        static let boosted = Flags(rawValue: 2)
        /// The caller also took it out of the helpers' idle cgroup.
        static let released = Flags(rawValue: 4)
    }

    /// For a job of `slots` participants and `grains` grains in all, whose helpers run in the idle cgroup
    /// where `helpersIsolated`.
    init(slots: Int, grains: Int, callerNice: Int32, helpersIsolated: Bool, start: ContinuousClock.Instant) {
        self.slots = slots
        self.grains = grains
        self.callerNice = callerNice
        self.helpersIsolated = helpersIsolated
        self.start = start
        let mutexBytes = (MemoryLayout<pthread_mutex_t>.size + 7) / 8 * 8
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: mutexBytes + 8 * slots + 4 * slots + slots, alignment: 8)
        mutex = buffer.bindMemory(to: pthread_mutex_t.self, capacity: 1)
        pthread_mutex_init(mutex, nil)
        lastProgress = (buffer + mutexBytes).bindMemory(to: Atomic<Int64>.self, capacity: slots)
        tids = (buffer + mutexBytes + 8 * slots).bindMemory(to: Atomic<Int32>.self, capacity: slots)
        flags = (buffer + mutexBytes + 12 * slots).bindMemory(to: Flags.self, capacity: slots)
        // A helper that has not started yet counts as having made progress when the job began.
        let created = monotonicNanoseconds()
        for slot in 0..<slots {
            (tids + slot).initialize(to: Atomic(0))
            (lastProgress + slot).initialize(to: Atomic(created))
        }
        flags.initialize(repeating: [], count: slots)
    }

    deinit {
        tids.deinitialize(count: slots)
        lastProgress.deinitialize(count: slots)
        pthread_mutex_destroy(mutex)
        UnsafeMutableRawPointer(mutex).deallocate()
    }

    private func withLock<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    // MARK: The helpers' side (ClaimHook)

    func helperJoined(slot: Int) {
        tids[slot].store(CKTask_gettid(), ordering: .relaxed)
        lastProgress[slot].store(monotonicNanoseconds(), ordering: .relaxed)
    }

    func claimed(slot: Int, items: Int) {
        if slot > 0 { lastProgress[slot].store(monotonicNanoseconds(), ordering: .relaxed) }
    }

    func helperLeaving(slot: Int) -> Int32 {
        // Under the lock: the caller cannot boost this helper any more once it is marked as left.
        let flags = withLock {
            self.flags[slot].insert(.left)
            return self.flags[slot]
        }
        return (flags.contains(.boosted) ? HelperRestore.nice : 0) | (flags.contains(.released) ? HelperRestore.idleCgroup : 0)
    }

    // MARK: The caller's side

    /// When the caller claims the job's last grains: boost one starved helper, so it catches up while
    /// the caller still works.
    func boostOneIfStarved() {
        guard ContinuousClock.now - start > Self.earliest else { return }
        boostOne(starvedAfter: starvedAfter())
    }

    /// While the caller waits: boost starved helpers one at a time, until no helper is out.
    func boostStarvedUntilDone(latch: HelperLatch) {
        guard latch.count > 0 else { return }
        // The pace is the one the job had until the caller ran out of grains: measured once, or the
        // threshold would grow as fast as the starved helper's wait.
        let starvedAfter = starvedAfter()
        while latch.count > 0 {
            let finishedBefore = latch.finished
            boostOne(starvedAfter: starvedAfter)
            _ = latch.wait(untilFinished: finishedBefore + 1, timeoutNanoseconds: starvedAfter)
        }
    }

    /// A helper that has completed no grain for this long is starved: 4 grains' time at the pace the job
    /// has had so far (all threads busy), at least 1 ms.
    private func starvedAfter() -> Int64 {
        let elapsed = Int64((ContinuousClock.now - start).seconds * 1e9)
        return max(1_000_000, 4 * elapsed * Int64(slots) / Int64(max(1, grains)))
    }

    private func boostOne(starvedAfter: Int64) {
        let now = monotonicNanoseconds()
        let done = withLock { () -> Bool in
            // Under the lock: the helper cannot leave the job (and keep the boost) meanwhile.
            guard let slot = (1..<slots).first(where: { slot in
                tids[slot].load(ordering: .relaxed) != 0 && flags[slot].isDisjoint(with: [.left, .boosted])
                    && now - lastProgress[slot].load(ordering: .relaxed) > starvedAfter
            }) else { return false }
            let tid = tids[slot].load(ordering: .relaxed)
            guard ThreadPriority.setNice(callerNice, ofThread: tid) else { return false }
            flags[slot].insert(.boosted)
            if helpersIsolated && HelperIsolation.current.release(tid: tid) { flags[slot].insert(.released) }
            return true
        }
        if done { boosted += 1 }
    }
}
