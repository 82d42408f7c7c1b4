/// Runs one big job on several threads: the range is cut into chunks that the calling thread and
/// low-priority helper threads claim until none are left.
///
/// ```swift
/// try KTask.run(0..<pages, options: KTaskOptions(minChunk: 512)) { chunk in
///     for page in chunk { prefault(page) }
/// }
/// ```
public enum KTask {
    /// Runs `chunk` over disjoint sub-ranges that together cover `range` exactly once, and returns
    /// when every chunk has run. The calling thread works too.
    ///
    /// If a chunk throws, no new chunk starts, chunks already running finish, `undo` is called once for
    /// every chunk that completed (on the calling thread), and the first error thrown is rethrown.
    /// Cancellation (``KTaskOptions/cancellation``, or the current task's) ends the job the same way
    /// with ``KTaskError/cancelled``.
    ///
    /// A job that fits in one chunk, or gets one thread, runs inline as one call on the calling thread.
    ///
    /// - Parameters:
    ///   - range: the work items; must start at 0 or above. An empty range is a no-op.
    ///   - options: chunking, thread and priority settings, validated first.
    ///   - undo: reverts one completed chunk after a failure.
    ///   - chunk: does the work for one sub-range; called concurrently from several threads.
    /// - Throws: ``KTaskError`` for invalid input or cancellation, else the first error `chunk` threw.
    @discardableResult
    @available(*, noasync, message: "blocks the calling thread; use the async KTask.run from async code")
    public static func run(
        _ range: Range<Int>,
        options: KTaskOptions = KTaskOptions(),
        undo: ((Range<Int>) -> Void)? = nil,
        _ chunk: @Sendable (Range<Int>) throws -> Void
    ) throws -> KTaskReport {
        try runOnCallingThread(range, options: options, taskCancellation: nil, observesCurrentTask: true,
                               undo: undo, chunk)
    }

    /// Runs the job like the blocking ``run(_:options:undo:_:)``, but every thread that works on it,
    /// the caller's share included, is one of ktask's own; the calling task is suspended, not
    /// blocked, and cancelling it cancels the job.
    @discardableResult
    public static func run(
        _ range: Range<Int>,
        options: KTaskOptions = KTaskOptions(),
        undo: (@Sendable (Range<Int>) -> Void)? = nil,
        _ chunk: @escaping @Sendable (Range<Int>) throws -> Void
    ) async throws -> KTaskReport {
        try options.validate()
        let taskCancellation = KTaskCancellation()
        let callerNice = ThreadPriority.currentThreadNice()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let standIn = AsyncCaller(range: range, options: options, taskCancellation: taskCancellation,
                                          undo: undo, chunk: chunk, continuation: continuation)
                let pool = KTaskPool.asyncCallers
                let reservation = pool.reserve(upTo: 1, cap: Int.max)
                // The stand-in keeps itself alive until it has resumed the caller.
                if pool.dispatch(reservation, work: .asyncCaller(standIn.retainedUntilDone()), nice: callerNice).isEmpty {
                    standIn.releaseUnstarted()
                    continuation.resume(throwing: KTaskError.threadStartFailed)
                }
            }
        } onCancel: {
            taskCancellation.cancel()
        }
    }

    static func runOnCallingThread(
        _ range: Range<Int>,
        options: KTaskOptions,
        taskCancellation: KTaskCancellation?,
        observesCurrentTask: Bool,
        undo: ((Range<Int>) -> Void)?,
        _ chunk: @Sendable (Range<Int>) throws -> Void
    ) throws -> KTaskReport {
        try options.validate()
        guard range.lowerBound >= 0 else { throw KTaskError.negativeRangeStart(range.lowerBound) }
        let clock = ContinuousClock()
        let start = clock.now
        guard !range.isEmpty else {
            return KTaskReport(threadsUsed: 1, chunkSize: 0, chunkCount: 0, helperNice: nil,
                               wallTime: clock.now - start, perThread: nil)
        }
        func cancelled() -> Bool {
            options.cancellation?.isCancelled == true || taskCancellation?.isCancelled == true
                || (observesCurrentTask && Task.isCancelled)
        }
        func runInline() throws -> KTaskReport {
            if cancelled() { throw KTaskError.cancelled }
            try chunk(range)
            return KTaskReport(threadsUsed: 1, chunkSize: range.count, chunkCount: 1, helperNice: nil,
                               wallTime: clock.now - start, perThread: nil)
        }

        // A job that fits in one chunk needs no other thread and no system call.
        let oneChunkOrLess = range.count <= max(options.minChunk, options.align)
        if oneChunkOrLess || options.maxThreads == 1 { return try runInline() }

        let limits = JobLimits.current()
        let wanted = ChunkPlan.usefulThreads(size: range.count, minChunk: options.minChunk, align: options.align,
                                             limit: min(options.maxThreads ?? limits.budget, limits.budget))
        let pool = options.pool
        let cap = try pool.cap(cpuBudget: limits.budget, energyRestricted: limits.energyRestricted)
        let reservation = pool.reserve(upTo: wanted - 1, cap: cap.maxBusyHelpers)
        if reservation.count == 0 { return try runInline() }

        let threads = 1 + reservation.count
        let plan = ChunkPlan(range: range, minChunk: options.minChunk, align: options.align, threads: threads)
        let nice = options.helperPriority.resolvedNice()
        return try withoutActuallyEscaping(chunk) { chunk in
            let job = JobState(plan: plan, threads: threads, cancellation: options.cancellation,
                               taskCancellation: taskCancellation, chunk: chunk)
            let helpers = pool.dispatch(reservation, work: .jobShare(Unmanaged.passUnretained(job)), nice: nice)
            job.participate(slot: 0, observesCurrentTask: observesCurrentTask)
            // The caller is out of chunks: helpers that have not woken yet are not needed any more.
            let joined = helpers.count - pool.revokeUnstarted(helpers)
            job.waitForHelpers(joined)
            if let error = job.error {
                if let undo { _ = job.undoCompletedChunks(undo) }
                throw error
            }
            let perThread = job.chunksPerThread(slots: 1 + helpers.count)
            return KTaskReport(threadsUsed: perThread.count, chunkSize: plan.chunkSize, chunkCount: plan.chunkCount,
                               helperNice: joined > 0 ? Int(nice) : nil, wallTime: clock.now - start,
                               perThread: perThread)
        }
    }
}

/// An async job's stand-in for its caller: runs the caller's share on a ktask thread, then resumes it.
final class AsyncCaller: @unchecked Sendable {
    let range: Range<Int>
    let options: KTaskOptions
    let taskCancellation: KTaskCancellation
    let undo: (@Sendable (Range<Int>) -> Void)?
    let chunk: @Sendable (Range<Int>) throws -> Void
    let continuation: CheckedContinuation<KTaskReport, any Error>
    private var selfReference: Unmanaged<AsyncCaller>?

    init(range: Range<Int>, options: KTaskOptions, taskCancellation: KTaskCancellation,
         undo: (@Sendable (Range<Int>) -> Void)?, chunk: @escaping @Sendable (Range<Int>) throws -> Void,
         continuation: CheckedContinuation<KTaskReport, any Error>) {
        self.range = range
        self.options = options
        self.taskCancellation = taskCancellation
        self.undo = undo
        self.chunk = chunk
        self.continuation = continuation
    }

    /// Pool threads hold work unretained; an async job has no blocked owner, so it owns itself.
    func retainedUntilDone() -> Unmanaged<AsyncCaller> {
        let reference = Unmanaged.passRetained(self)
        selfReference = reference
        return reference
    }

    func releaseUnstarted() { selfReference?.release() }

    func run(slot: Int) -> JobCompletion? {
        let result = Result {
            try KTask.runOnCallingThread(range, options: options, taskCancellation: taskCancellation,
                                         observesCurrentTask: false, undo: undo, chunk)
        }
        // Only locals from here: releasing the self-reference may free this object.
        let continuation = self.continuation
        let reference = selfReference
        continuation.resume(with: result)
        reference?.release()
        return nil
    }
}
