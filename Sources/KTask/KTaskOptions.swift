import Synchronization

/// How a job is divided and run. Every field is validated when the job starts (``validate()``).
public struct KTaskOptions: Sendable {
    /// The smallest chunk, in work items, worth handing to a thread. Must be at least 1.
    ///
    /// Chunks are never smaller than this except where the range itself is smaller, or at its ends
    /// when `align` cuts them.
    public var minChunk: Int

    /// Chunk boundaries fall on multiples of `align`, except the two ends of the range. Must be at least 1.
    public var align: Int

    /// The most threads the job may use, the calling thread included; `nil` means every usable CPU.
    /// Must be at least 1.
    public var maxThreads: Int?

    /// The priority helper threads run at while they work on this job.
    public var helperPriority: HelperPriority

    /// Where helper threads run: the caller's NUMA node (default), given nodes, or anywhere.
    public var placement: Placement

    /// What keeps low-priority helpers from holding the job up on a busy machine.
    public var starvationGuard: StarvationGuard

    /// A token that stops the job: once cancelled, no new chunk starts, completed chunks are undone
    /// and the job throws ``KTaskError/cancelled``.
    public var cancellation: KTaskCancellation?

    /// The pool the job's helper threads come from, and whose cap on busy helpers the job shares.
    public var pool: KTaskPool

    /// The class of work this job is (e.g. "prefault"), to look up in the tuning profile in force
    /// (``TuningProfile``): the job then gets at most the threads `ktask tune` measured worth having
    /// for that class. nil: no profile cap. Must not be empty.
    public var workClass: String?

    /// Adaptive mode: measure the job's throughput as helpers join and stop adding them past the knee
    /// (``AdaptiveThreads``). nil: take every helper the limits allow at once.
    public var adaptiveThreads: AdaptiveThreads?

    /// Options for a job; every field as documented on its property, validated when the job starts.
    public init(
        minChunk: Int = 1,
        align: Int = 1,
        maxThreads: Int? = nil,
        helperPriority: HelperPriority = .lowest,
        placement: Placement = .callerNode,
        starvationGuard: StarvationGuard = .automatic,
        cancellation: KTaskCancellation? = nil,
        pool: KTaskPool = .shared,
        workClass: String? = nil,
        adaptiveThreads: AdaptiveThreads? = nil
    ) {
        self.workClass = workClass
        self.adaptiveThreads = adaptiveThreads
        self.placement = placement
        self.starvationGuard = starvationGuard
        self.minChunk = minChunk
        self.align = align
        self.maxThreads = maxThreads
        self.helperPriority = helperPriority
        self.cancellation = cancellation
        self.pool = pool
    }

    /// Throws the ``KTaskError`` for the first field that is out of range.
    public func validate() throws(KTaskError) {
        guard minChunk >= 1 else { throw .invalidMinChunk(minChunk) }
        guard align >= 1 else { throw .invalidAlign(align) }
        if let maxThreads, maxThreads < 1 { throw .invalidMaxThreads(maxThreads) }
        if case .nice(let value) = helperPriority, !(ThreadPriority.niceRange ~= value) {
            throw .invalidNice(value)
        }
        if workClass?.isEmpty == true { throw .emptyWorkClass }
        try adaptiveThreads?.validate()
        if case .nodes(let ids) = placement {
            guard !ids.isEmpty else { throw .noNodes }
            if let repeated = ids.first(where: { id in ids.filter { $0 == id }.count > 1 }) { throw .duplicateNode(repeated) }
        }
    }
}
