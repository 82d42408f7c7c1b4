import CKTaskShims
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Work a pool thread runs: a share of a job's chunks, or an async job's stand-in for its caller.
///
/// Pool threads hold work unretained: the job's caller keeps it alive until every thread it started
/// has reported back. The report is the last thing a thread does with the work, so the call must not
/// retain it either (a release after the report could free the job, or outlive a
/// `withoutActuallyEscaping` closure it holds): hence `_withUnsafeGuaranteedRef`.
enum PoolWork {
    case jobShare(Unmanaged<JobState>)
    case asyncCaller(Unmanaged<AsyncCaller>)

    /// Whether both are the same job's share (or the same async caller).
    func isSame(as other: PoolWork) -> Bool {
        switch (self, other) {
        case (.jobShare(let a), .jobShare(let b)): a.toOpaque() == b.toOpaque()
        case (.asyncCaller(let a), .asyncCaller(let b)): a.toOpaque() == b.toOpaque()
        default: false
        }
    }

    /// Runs the work; returns the job's completion, which the thread reports to once it is back in the
    /// pool, whether the job's caller lent the thread its priority meanwhile, and whether it also took
    /// the thread out of the helpers' idle cgroup.
    func run(slot: Int, part: Int) -> (JobCompletion?, boosted: Bool, released: Bool) {
        switch self {
        case .jobShare(let job): job._withUnsafeGuaranteedRef { $0.run(slot: slot, part: part) }
        case .asyncCaller(let caller): caller._withUnsafeGuaranteedRef { ($0.run(), false, false) }
        }
    }
}

/// What a parked pool thread is woken to do.
struct PoolAssignment {
    let work: PoolWork
    /// The job's participant number (0 is the job's caller).
    let slot: Int
    /// The part of the job to start on (per-node jobs have one part per node).
    let part: Int
    /// The nice value to run the work at; nil keeps the thread's own.
    let nice: Int32?
    /// The node whose per-node cap this helper counts against; nil for none.
    let node: Int?
    /// The CPUs to run on; nil: the process's own affinity.
    let cpus: CPUList?
}

/// One pthread of a ``KTaskPool``: parked on its own condition variable while idle, retired once
/// it has been idle for the pool's idle timeout.
final class HelperThread: @unchecked Sendable {
    let id: Int
    private let pool: KTaskPool
    /// Signalled when an assignment is given. Waited on with the pool's lock.
    let wake = PThreadCondition()
    /// Guarded by the pool's lock.
    var assignment: PoolAssignment?
    /// Guarded by the pool's lock: taken off the idle list for a job whose assignment is on its way.
    var reserved = false
    /// The kernel's id for this thread, set when it starts (before it takes any assignment).
    private(set) var tid: Int32 = 0
    /// Only touched by this thread.
    private var currentNice: Int32 = 0
    /// The CPUs ktask pinned this thread to; nil while it has the process's affinity. Only this thread.
    private var pinnedTo: CPUList?

    init(id: Int, pool: KTaskPool, assignment: PoolAssignment) {
        self.id = id
        self.pool = pool
        self.assignment = assignment
    }

    /// Starts the pthread; false if the system refused (e.g. too many threads).
    func start() -> Bool {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { context in
            Unmanaged<HelperThread>.fromOpaque(context!).takeRetainedValue().main()
            return nil
        }, context)
        if rc != 0 {
            Unmanaged<HelperThread>.fromOpaque(context).release()
            KTaskPool.logger.warning("could not start helper thread", metadata: ["errno": "\(rc)"])
            return false
        }
        return true
    }

    private func main() {
        tid = CKTask_gettid()
        _ = CKTask_set_thread_name("\(pool.name)/\(id)")
        if pool.isolatesHelpers { HelperIsolation.current.admit(tid: tid) }
        currentNice = ThreadPriority.currentThreadNice()
        pool.lock.lock()
        while true {
            while assignment == nil {
                let deadline = monotonicDeadline(afterNanoseconds: pool.idleTimeoutNanoseconds)
                let woken = wake.wait(pool.lock, until: deadline)
                if !woken && assignment == nil && !reserved {
                    pool.retireLocked(self)
                    pool.lock.unlock()
                    return
                }
            }
            let work = assignment!
            assignment = nil
            reserved = false
            pool.lock.unlock()

            if let nice = work.nice, nice != currentNice {
                // Raising priority can fail without privilege; the thread then stays where it is.
                ThreadPriority.setCurrentThreadNice(nice)
                currentNice = ThreadPriority.currentThreadNice()
            }
            place(on: work.cpus)
            let (completion, boosted, released) = work.work.run(slot: work.slot, part: work.part)
            if boosted {
                // Back to the job's helper priority (raising nice needs no privilege).
                ThreadPriority.setCurrentThreadNice(work.nice ?? currentNice)
                currentNice = ThreadPriority.currentThreadNice()
            }

            // Free in the pool before the job hears it is done, so that the caller's next job finds
            // this helper free instead of running short of one.
            pool.lock.lock()
            pool.helperFinishedLocked(self, node: work.node)
            pool.lock.unlock()
            completion?.helperFinished()
            // Back into the idle group after the job heard it is done: a cgroup move can take
            // milliseconds, and the caller must not wait for it. No new work is taken before.
            if released && pool.isolatesHelpers { HelperIsolation.current.admit(tid: tid) }
            pool.lock.lock()
        }
    }

    /// Pins this thread to `cpus`, or gives it back the process's affinity for an unplaced job.
    private func place(on cpus: CPUList?) {
        if let cpus {
            if pinnedTo != cpus, Affinity.pinCurrentThread(to: cpus) { pinnedTo = cpus }
        } else if pinnedTo != nil {
            if let process = Affinity.process() { Affinity.pinCurrentThread(to: process) }
            pinnedTo = nil
        }
    }
}
