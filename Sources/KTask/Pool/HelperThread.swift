import CKTaskShims
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One pthread of a ``KTask/Pool``. After a piece of work it spins briefly for the next (jobs that
/// follow one another then skip a futex sleep and wake-up), then parks on its own condition variable,
/// and retires once it has been parked for the pool's idle timeout.
final class HelperThread: @unchecked Sendable {
    let id: Int
    private let pool: KTask.Pool
    /// Signalled when an assignment is given to a parked thread. Waited on with the pool's lock.
    private let wake = PThreadCondition()
    /// Guarded by the pool's lock.
    private(set) var assignment: PoolAssignment?
    /// Mirrors `assignment != nil` for the spinning thread, which polls it without the lock.
    private let hasAssignment = Atomic<Bool>(false)
    /// Guarded by the pool's lock: asleep on `wake` (a spinning thread needs no signal).
    private var parked = false
    /// Guarded by the pool's lock: taken off the idle list for a job whose assignment is on its way.
    var reserved = false
    /// Guarded by the pool's lock: idle but still holding the permits (machine-wide slot, jobserver token)
    /// of its last job, which it gives back before it parks or a job takes over.
    var holdsPermit = false
    /// Only touched by this thread.
    private var currentNice: Int32 = 0
    /// The CPUs this thread is pinned to; nil while it has the process's affinity. Only this thread.
    private var pinnedTo: CPUList?
    /// Whether this thread is in the helpers' idle cgroup, and its thread id. Only this thread.
    private var inIdleCgroup = false
    private var tid: Int32 = 0

    /// How long a thread that just finished work polls for the next before it parks: a few times the
    /// cost of a futex wake-up in a VM, and short enough that idle threads use no CPU to speak of.
    static let spinNanoseconds: Int64 = 50_000

    init(id: Int, pool: KTask.Pool, assignment: PoolAssignment) {
        self.id = id
        self.pool = pool
        self.assignment = assignment
    }

    /// Gives the thread work (pool lock held); wakes it if it is parked.
    func assignLocked(_ work: PoolAssignment) {
        assignment = work
        hasAssignment.store(true, ordering: .releasing)
        if parked { wake.signal() }
    }

    /// Takes back an assignment the thread has not picked up (pool lock held).
    func takeBackLocked() {
        assignment = nil
        reserved = false
        hasAssignment.store(false, ordering: .relaxed)
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
        if rc != 0 { Unmanaged<HelperThread>.fromOpaque(context).release() }
        return rc == 0
    }

    private func main() {
        tid = CKTask_gettid()
        _ = CKTask_set_thread_name("\(pool.name)/\(id)")
        if pool.isolatesHelpers { inIdleCgroup = HelperIsolation.current.admit(tid: tid) }
        currentNice = ThreadPriority.currentThreadNice()
        pool.lock.lock()
        while let work = nextAssignmentLocked() {
            pool.lock.unlock()
            run(work)
            pool.lock.lock()
            pool.threadFinishedLocked(self, node: work.node)
            pool.lock.unlock()
            work.work.finished?(work.work.context, work.argument)
            // A priority boost the job's caller lent this thread is given back only now that the job has
            // heard it is done (``JobState``): its nice, and its place in the idle cgroup.
            let restore = CKTask_take_helper_restore()
            if restore & HelperRestore.nice != 0 { ThreadPriority.setCurrentThreadNice(currentNice) }
            if restore & HelperRestore.idleCgroup != 0 { inIdleCgroup = HelperIsolation.current.admit(tid: tid) }
            // Poll for the next job without the lock (the caller's next job takes it to hand one
            // out); an assignment seen but taken back (the job ran out of grains first) does not end
            // the polling early.
            let deadline = monotonicNanoseconds() + Self.spinNanoseconds
            while true {
                let seen = spinForWork(until: deadline)
                pool.lock.lock()
                if !seen || assignment != nil { break }
                pool.lock.unlock()
            }
        }
        pool.lock.unlock()
    }

    /// The next assignment (pool lock held on entry and return), parking until one comes; nil once the
    /// thread has been idle for the pool's timeout and has retired.
    private func nextAssignmentLocked() -> PoolAssignment? {
        while assignment == nil {
            // Done polling: the permits kept since the last job go back before the thread parks.
            if holdsPermit {
                givePermitsBackLocked()
                continue
            }
            let deadline = monotonicDeadline(afterNanoseconds: pool.idleTimeoutNanoseconds)
            parked = true
            let woken = wake.wait(pool.lock, until: deadline)
            parked = false
            if !woken && assignment == nil && !reserved {
                // A job may have reserved this thread and taken it back while its wait was timing out: the
                // permits that came back with it go back before it leaves (unless work came meanwhile).
                if holdsPermit {
                    givePermitsBackLocked()
                    if assignment != nil || reserved { continue }
                }
                pool.retireLocked(self)
                return nil
            }
        }
        let work = assignment!
        assignment = nil
        reserved = false
        hasAssignment.store(false, ordering: .relaxed)
        return work
    }

    /// Gives back the permits kept since the last job (pool lock held on entry and return; the system calls
    /// run without it, so a job may reserve the thread meanwhile, and then takes permits of its own).
    private func givePermitsBackLocked() {
        holdsPermit = false
        pool.lock.unlock()
        pool.permits?.give()
        pool.lock.lock()
    }

    /// Polls for an assignment until `deadline` (the pool lock not held); false if none came.
    private func spinForWork(until deadline: Int64) -> Bool {
        spinWait(until: deadline) { hasAssignment.load(ordering: .acquiring) }
    }

    private func run(_ work: PoolAssignment) {
        if let nice = work.nice, nice != currentNice {
            // Raising priority can fail without privilege; the thread then stays where it is.
            ThreadPriority.setCurrentThreadNice(nice)
            currentNice = ThreadPriority.currentThreadNice()
        }
        place(on: work.cpus)
        // A job whose helpers are not below its caller (`.inheritCaller`, a nice at or above the caller's) runs
        // them outside the idle cgroup: inside, they would get only CPU time nobody else wants, whatever their
        // nice. Moved only when that changes from one job to the next (a cgroup write costs ~20 µs).
        if pool.isolatesHelpers && work.idleCgroup != inIdleCgroup {
            if work.idleCgroup { inIdleCgroup = HelperIsolation.current.admit(tid: tid) }
            else if HelperIsolation.current.release(tid: tid) { inIdleCgroup = false }
        }
        work.work.run(work.work.context, work.argument)
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
