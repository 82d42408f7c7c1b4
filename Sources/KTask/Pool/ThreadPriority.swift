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
        errno = 0
        let nice = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)  // -1 is also a nice value: errno tells
        return nice == -1 && errno != 0 ? 0 : nice
    }

    /// Sets another thread's nice value (setpriority(2) on its tid); false where the process may not.
    static func setNice(_ nice: Int32, ofThread tid: Int32) -> Bool {
        setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(tid), nice) == 0
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

extension KTask.HelperPriority {
        /// The nice value to run helpers at for a job started by a thread at `callerNice`.
        func resolved(callerNice: Int32) -> Int32 {
            switch self {
            case .lowest: Int32(ThreadPriority.lowestNice)
            case .nice(let value): Int32(value)
            case .inheritCaller: callerNice
            }
        }
}

extension KTask.StarvationGuard {
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
            var limit = rlimit()
            guard getrlimit(__rlimit_resource_t(__RLIMIT_NICE.rawValue), &limit) == 0 else { return false }
            if limit.rlim_cur == rlim_t.max { return true }  // RLIM_INFINITY, whose cast of -1 Swift cannot import
            return 20 - Int(clamping: limit.rlim_cur) <= Int(nice)
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
