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
