import CKTaskShims

#if canImport(Glibc)
import Glibc
#endif

/// Per-thread nice values. On Linux, setpriority(2) given a thread id changes only that thread.
enum ThreadPriority {
    static let lowestNice = 19
    static let niceRange = -20...19

    /// The calling thread's nice value (0 if it cannot be read).
    static func currentThreadNice() -> Int32 {
        var nice: Int32 = 0
        return CKTask_get_thread_nice(0, &nice) == 0 ? nice : 0
    }

    /// How stale a job's reading of its caller's nice and affinity may be: a `renice` or `taskset` of the
    /// calling thread is seen by its jobs within this time (ktask's own changes at once).
    static let cacheNanoseconds: Int64 = 10_000_000

    /// The calling thread's nice value as a job reads it: at most ``cacheNanoseconds`` old.
    static func callerNice() -> Int32 { CKTask_cached_thread_nice(cacheNanoseconds) }

    /// Sets the calling thread's nice value; returns false where the process may not (raising
    /// priority needs root, CAP_SYS_NICE or RLIMIT_NICE).
    @discardableResult
    static func setCurrentThreadNice(_ nice: Int32) -> Bool {
        CKTask_set_thread_nice(nice) == 0
    }
}
