import CKTaskShims

#if canImport(Glibc)
import Glibc
#endif

extension KTask {
    /// What keeps low-priority helpers from holding up a job when the machine is busy.
    ///
    /// Helpers at nice 19 take only idle CPU time. On a busy machine a helper can sit on a chunk it
    /// claimed while the caller, done with everything else, waits for it: the job then ends later than
    /// if the caller had worked alone.
    public enum StarvationGuard: String, Sendable, CaseIterable {
        /// Choose: ``priorityBoost`` where the process may raise priority, else ``smallerHelperChunks``.
        case automatic = "automatic"
        /// When the caller runs out of chunks, it lends its own nice value to unfinished helpers that have
        /// completed nothing for a while (4 grains' time, at least 1 ms), one at a time, and takes them out
        /// of the helpers' idle cgroup; each returns to its own priority (and group) once the job has heard
        /// it is done. Helpers also claim small grains, as with ``smallerHelperChunks``. Needs root,
        /// CAP_SYS_NICE, or an RLIMIT_NICE that allows the caller's nice value.
        case priorityBoost = "priority boost"
        /// Helpers claim grains of about 1/64 of a chunk while the caller claims whole chunks, so a starved
        /// helper holds back little work. Needs no privilege.
        case smallerHelperChunks = "smaller helper chunks"
        /// Nothing: helpers run at their priority to the end (also what applies when helpers are not below
        /// the caller's priority).
        case none = "none"

        /// The guard `automatic` stands for in this process, for helpers at `helperNice` under a caller at
        /// `callerNice`.
        static func resolve(_ requested: KTask.StarvationGuard, helperNice: Int32, callerNice: Int32) -> KTask.StarvationGuard {
            guard helperNice > callerNice else { return .none }
            guard requested == .automatic else { return requested }
            return mayRaisePriority(to: callerNice) ? .priorityBoost : .smallerHelperChunks
        }

        /// What `automatic` chooses in this process for default helpers (nice 19) under the calling thread.
        package static var inForce: KTask.StarvationGuard {
            resolve(.automatic, helperNice: Int32(ThreadPriority.lowestNice), callerNice: ThreadPriority.currentThreadNice())
        }

        /// Whether a thread of this process may lower a nice value to `nice`: CAP_SYS_NICE (root has it), or
        /// RLIMIT_NICE allowing it (the limit is 20 − the lowest nice allowed).
        static func mayRaisePriority(to nice: Int32) -> Bool {
            if hasCapSysNice { return true }
            let limit = CKTask_rlimit_nice()
            if limit == -1 { return true }
            return limit >= 0 && 20 - Int(limit) <= Int(nice)
        }

        /// CAP_SYS_NICE (bit 23) in the effective set, from /proc/self/status.
        static let hasCapSysNice: Bool = {
            guard let status = readSmallFile("/proc/self/status") else { return geteuid() == 0 }
            for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
                let hex = line.dropFirst("CapEff:".count).trimmingCharacters(in: " \t")
                if let bits = UInt64(hex, radix: 16) { return bits & (1 << 23) != 0 }
            }
            return geteuid() == 0
        }()
    }
}

/// The caller's side of ``KTask/StarvationGuard/priorityBoost``: lends its nice value to a helper that has
/// completed no grain for a while (4 grains' time at the job's pace so far, at least 1 ms), one at a
/// time, and takes it out of the helpers' idle cgroup (nice orders threads only inside one group).
/// The helper gives both back itself right after it has counted down on the job's latch (``JobState``,
/// ``HelperThread``): back at nice 19 in the idle cgroup first, it would starve before it could.
///
/// Only starved helpers: a working helper needs neither, and the system calls and the cgroup move
/// (~20 µs, at times 20 ms under the kernel's cgroup rwsem) would cost every job.
struct PriorityBoost {
    let job: JobState
    let start: ContinuousClock.Instant
    /// Helpers boosted so far.
    private(set) var boosted = 0
    /// A job shorter than this is over before a boost (two system calls and a cgroup write) pays off.
    static let earliest = Duration.milliseconds(1)

    init(job: JobState, start: ContinuousClock.Instant) {
        self.job = job
        self.start = start
    }

    /// When the caller claims the job's last grains: boost one starved helper, so it catches up while
    /// the caller still works.
    mutating func boostOneIfStarved() {
        guard ContinuousClock.now - start > Self.earliest else { return }
        boostOne(starvedAfter: starvedAfter())
    }

    /// While the caller waits: boost starved helpers one at a time, until no helper is out.
    mutating func boostStarvedUntilDone() {
        guard job.latch.count > 0 else { return }
        // The pace is the one the job had until the caller ran out of grains: measured once, or the
        // threshold would grow as fast as the starved helper's wait.
        let starvedAfter = starvedAfter()
        while job.latch.count > 0 {
            let finishedBefore = job.latch.finished
            boostOne(starvedAfter: starvedAfter)
            _ = job.latch.wait(untilFinished: finishedBefore + 1, timeoutNanoseconds: starvedAfter)
        }
    }

    /// A helper that has completed no grain for this long is starved: 4 grains' time at the pace the job
    /// has had so far (all threads busy), at least 1 ms.
    private func starvedAfter() -> Int64 {
        let elapsed = Int64((ContinuousClock.now - start).seconds * 1e9)
        let grains = job.plans.reduce(0) { $0 + $1.grainCount }
        return max(1_000_000, 4 * elapsed * Int64(job.slots) / Int64(max(1, grains)))
    }

    private mutating func boostOne(starvedAfter: Int64) {
        let now = monotonicNanoseconds()
        let done = job.withParticipantsLocked { () -> Bool in
            // Under the lock: the helper cannot leave the job (and keep the boost) meanwhile.
            guard let slot = (1..<job.slots).first(where: { slot in
                let tid = job.tids[slot].load(ordering: .relaxed)
                return tid != 0 && job.participantFlags[slot].isDisjoint(with: [.done, .boosted])
                    && now - job.lastProgress[slot].load(ordering: .relaxed) > starvedAfter
            }) else { return false }
            let tid = job.tids[slot].load(ordering: .relaxed)
            guard CKTask_set_nice_of(tid, job.callerNice) == 0 else { return false }
            job.participantFlags[slot].insert(.boosted)
            if job.helpersIsolated && HelperIsolation.current.release(tid: tid) { job.participantFlags[slot].insert(.released) }
            return true
        }
        if done { boosted += 1 }
    }
}
