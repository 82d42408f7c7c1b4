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
    }
}
