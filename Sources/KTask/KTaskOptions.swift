import Logging

extension KTask {
    /// How a job is divided and run. Every field is validated when the job starts (``validate()``).
    public struct Options: Sendable {
        /// The smallest chunk, in work items, worth handing to a thread. Must be at least 1.
        ///
        /// Chunks are never smaller than this except where the range itself is smaller, or at its ends
        /// when `align` cuts them.
        public var minChunk: Int

        /// Chunk boundaries fall on multiples of `align`, except the two ends of the range. Must be at least 1.
        public var align: Int

        /// The largest chunk, in items (cut down to a multiple of `align`, never below `minChunk`); nil: the
        /// kernel's formula alone (about four chunks per thread). A cancelled job stops after each thread's
        /// current chunk, so this bounds how long cancelling a long job takes: with chunks of 1 ms of work,
        /// cancelling stops it within about 1 ms. Must be at least `minChunk`.
        public var maxChunk: Int?

        /// The most threads the job may use, the calling thread included; `nil` means every usable CPU.
        /// Must be at least 1.
        public var maxThreads: Int?

        /// The priority helper threads run at while they work on this job.
        public var helperPriority: KTask.HelperPriority

        /// Where helper threads run: the caller's NUMA node (default), given nodes, or anywhere.
        public var placement: KTask.Placement

        /// What keeps low-priority helpers from holding the job up on a busy machine.
        public var starvationGuard: KTask.StarvationGuard

        /// A token that stops the job: once cancelled, no new chunk starts, completed chunks are undone
        /// and the job throws ``KTask/Error/cancelled``. (Cancelling the task the job runs in stops it the
        /// same way, with Swift's `CancellationError`.) How soon: see ``maxChunk``.
        public var cancellation: KTask.Cancellation?

        /// The pool the job's helper threads come from, and whose cap on busy helpers the job shares.
        public var pool: KTask.Pool

        /// The class of work this job is (e.g. "prefault"), to look up in the tuning profile in force
        /// (``KTask/TuningProfile``): the job then gets at most the threads `ktask tune` measured worth having
        /// for that class. nil: no profile cap. Must not be empty.
        public var workClass: String?

        /// Adaptive mode: measure the job's throughput as helpers join and stop adding them past the knee
        /// (``KTask/AdaptiveThreads``). nil: take every helper the limits allow at once.
        public var adaptiveThreads: KTask.AdaptiveThreads?

        /// Where this job logs (swift-log): at debug, the decisions a user may wonder about (how many threads
        /// and what bounded them, the chunk size, the placement); at warning, what degrades the job (a helper
        /// thread that could not start, a malformed `KTASK_MAX_THREADS`). nil: the pool's logger
        /// (``KTask/Pool/init(name:maxBusyHelpers:idleTimeout:isolateHelpers:logger:)``); with neither,
        /// warnings go to standard error and nothing else is logged. ktask never makes a logger of its own.
        public var logger: Logger?

        /// Called with the job's report once it succeeded, on the calling thread (an async job's: one of
        /// ktask's threads), before the entry point returns: how ``KTask/map(_:options:_:)-5g1uv``,
        /// ``KTask/reduce(_:options:_:_:_:)-1u6qv`` and ``KTask/update(_:options:undo:_:)-6shut``, which
        /// return their results, tell how many threads ran and what limited them (for `reduce`, the job
        /// over its blocks). Not called for a job that throws.
        public var onReport: (@Sendable (KTask.Report) -> Void)?

        /// How far the job has got, told at most once per interval while it runs, and once at its end
        /// (``KTask/Progress``): for a long job (a VM's memory, a file) a user watches. nil: no reports, and
        /// nothing counted.
        public var progress: KTask.Progress?

        /// Options for a job; every field as documented on its property, validated when the job starts.
        public init(
            minChunk: Int = 1,
            align: Int = 1,
            maxThreads: Int? = nil,
            helperPriority: KTask.HelperPriority = .lowest,
            placement: KTask.Placement = .callerNode,
            starvationGuard: KTask.StarvationGuard = .automatic,
            cancellation: KTask.Cancellation? = nil,
            pool: KTask.Pool = .shared,
            workClass: String? = nil,
            adaptiveThreads: KTask.AdaptiveThreads? = nil,
            logger: Logger? = nil,
            maxChunk: Int? = nil,
            onReport: (@Sendable (KTask.Report) -> Void)? = nil,
            progress: KTask.Progress? = nil
        ) {
            self.progress = progress
            self.logger = logger
            self.maxChunk = maxChunk
            self.onReport = onReport
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

    }
}
