extension KTask {
    /// What bounded a job's thread count: the answer to "why only 1 thread?" (``KTask/Report/threadLimit``).
    ///
    /// The cases are in the order the limits narrow a job's count (<doc:PlacementAndLimits>); the report
    /// names the last one that cut it.
    public enum ThreadLimit: String, Sendable, Equatable, CaseIterable {
        /// Nothing held the job back: it got every thread it could use.
        case none = "nothing"
        /// The range holds fewer items than a chunk per thread (`minChunk`/`align`).
        case tooLittleWork = "too little work: one thread per minChunk items"
        /// The caller ran the first chunks alone and found the rest would take less time than a helper costs
        /// (see "How a job runs": the caller starts at once).
        case helperCost = "too little work to pay for a helper"
        /// ``KTask/Options/maxThreads``.
        case maxThreads = "maxThreads"
        /// The CPUs the process may use (online ∩ affinity ∩ cgroup cpuset) or the cgroup CPU quota.
        case cpuBudget = "CPU budget (affinity, cpuset, quota)"
        /// The tuning profile's cap for the job's ``KTask/Options/workClass``.
        case tuningProfile = "tuning profile"
        /// The machine saves energy: no helpers by default.
        case energySaving = "energy saving"
        /// The per-node cap on busy helpers (API or `KTASK_NODE_MAX_THREADS`), or a node's CPUs.
        case nodeCap = "per-node cap"
        /// The pool's cap on busy helpers, set through the API.
        case poolCap = "the pool's cap on busy helpers"
        /// `KTASK_MAX_THREADS`.
        case environment = "KTASK_MAX_THREADS"
        /// Other jobs held the helpers the caps allow.
        case helpersBusy = "helpers busy with other jobs"
        /// Every machine-wide slot was held, by other processes or this one's other jobs (`ktask info` shows
        /// the holders).
        case machineSlots = "machine-wide slots held by other jobs"
        /// Every token of make's jobserver was held (`make -jN`: N − 1 tokens for the whole build).
        case jobserverTokens = "make jobserver tokens held by other jobs"
        /// Adaptive mode stopped adding helpers (``KTask/Options/adaptiveThreads``).
        case adaptive = "adaptive mode"
        /// The system would not start a thread.
        case threadStart = "a thread could not be started"
        /// The caller ran out of work before a reserved helper joined.
        case helpersNotNeeded = "the caller finished before a helper joined"
    }
}
