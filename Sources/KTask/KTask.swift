import Synchronization
/// Runs one big job on several threads: the range is cut into chunks that the calling thread and
/// low-priority helper threads claim until none are left.
///
/// ```swift
/// try KTask.run(0..<pages, options: KTask.Options(minChunk: 512)) { chunk in
///     for page in chunk { prefault(page) }
/// }
/// ```
public enum KTask {
    /// Runs `chunk` over disjoint sub-ranges that together cover `range` exactly once, and returns
    /// when every chunk has run. The calling thread works too.
    ///
    /// If a chunk throws, no new chunk starts, chunks already running finish, `undo` is called once for
    /// every chunk that completed (on the calling thread), and the first error thrown is rethrown.
    /// Cancellation ends the job the same way: with ``KTask/Error/cancelled`` for the options' token
    /// (``KTask/Options/cancellation``), with `CancellationError` for the current task's. It takes effect
    /// between chunks: ``KTask/Options/maxChunk`` bounds how long that is.
    ///
    /// A job that fits in one chunk, or gets one thread, runs inline as one call on the calling thread.
    ///
    /// - Parameters:
    ///   - range: the work items; must start at 0 or above. An empty range is a no-op.
    ///   - options: chunking, thread and priority settings, validated first.
    ///   - undo: reverts one completed chunk after a failure.
    ///   - chunk: does the work for one sub-range; called concurrently from several threads.
    /// - Throws: ``KTask/Error`` for invalid input or cancellation, else the first error `chunk` threw.
    @discardableResult
    @available(*, noasync, message: "blocks the calling thread; use the async KTask.run from async code")
    public static func run(
        _ range: Range<Int>,
        options: KTask.Options = KTask.Options(),
        undo: ((Range<Int>) -> Void)? = nil,
        _ chunk: @Sendable (Range<Int>) throws -> Void
    ) throws -> KTask.Report {
        try MultithreadedJob.run(.range(range), options: options, cancellation: blocking(options), undo: undo, chunk)
    }

    /// Runs a job that carries one range per NUMA node (the kernel's `ktask_run_numa`): each node's
    /// range is worked first by helpers pinned to that node's usable CPUs (and by the caller, on its
    /// own node's range); a thread whose node's range is done helps the others. Failure, undo and
    /// cancellation are as for ``run(_:options:undo:_:)-9guvk``; ``KTask/Options/placement`` is not used.
    ///
    /// - Throws: ``KTask/Error`` for an unknown node, a node without usable CPUs, a node named twice or a
    ///   negative range, before any work; else as ``run(_:options:undo:_:)-9guvk``.
    @discardableResult
    @available(*, noasync, message: "blocks the calling thread; use the async KTask.run(perNode:) from async code")
    public static func run(
        perNode ranges: [KTask.NodeRange],
        options: KTask.Options = KTask.Options(),
        undo: ((Range<Int>) -> Void)? = nil,
        _ chunk: @Sendable (Range<Int>) throws -> Void
    ) throws -> KTask.Report {
        try MultithreadedJob.run(.perNode(ranges), options: options, cancellation: blocking(options), undo: undo, chunk)
    }

    /// The engine behind map, reduce and update: one non-generic call per job, so that their inlinable
    /// bodies compile the per-item loop in the caller's module.
    @usableFromInline
    static func runChunks(_ range: Range<Int>, options: KTask.Options, cancellation: JobCancellation,
                          undo: ((Range<Int>) -> Void)?, _ chunk: (Range<Int>) throws -> Void) throws -> KTask.Report {
        try MultithreadedJob.run(.range(range), options: options, cancellation: cancellation, undo: undo, chunk)
    }

    /// The blocking API's cancellation: the options' token, and the task the caller runs in.
    @usableFromInline
    static func blocking(_ options: KTask.Options) -> JobCancellation {
        JobCancellation(token: options.cancellation, asyncTask: nil, observesCurrentTask: true)
    }

    /// Runs the job like the blocking ``run(_:options:undo:_:)-9guvk``, but every thread that works on it,
    /// the caller's share included, is one of ktask's own; the calling task is suspended, not
    /// blocked, and cancelling it cancels the job.
    @discardableResult
    public static func run(
        _ range: Range<Int>,
        options: KTask.Options = KTask.Options(),
        undo: (@Sendable (Range<Int>) -> Void)? = nil,
        _ chunk: @escaping @Sendable (Range<Int>) throws -> Void
    ) async throws -> KTask.Report {
        try await onKTaskThread(options: options) { cancellation in
            try MultithreadedJob.run(.range(range), options: options, cancellation: cancellation, undo: undo, chunk)
        }
    }

    /// The per-node job of ``run(perNode:options:undo:_:)``, from async code: all work on ktask's threads.
    @discardableResult
    public static func run(
        perNode ranges: [KTask.NodeRange],
        options: KTask.Options = KTask.Options(),
        undo: (@Sendable (Range<Int>) -> Void)? = nil,
        _ chunk: @escaping @Sendable (Range<Int>) throws -> Void
    ) async throws -> KTask.Report {
        try await onKTaskThread(options: options) { cancellation in
            try MultithreadedJob.run(.perNode(ranges), options: options, cancellation: cancellation, undo: undo, chunk)
        }
    }

    /// The async jobs' path: the caller's share runs as ordinary work on one of ktask's threads (at the
    /// calling thread's nice), which resumes the continuation with the job's outcome. `body` gets the
    /// job's cancellation: the options' token and the calling task's.
    @usableFromInline
    static func onKTaskThread<Result: Sendable>(
        options: KTask.Options, _ body: @escaping @Sendable (JobCancellation) throws -> Result
    ) async throws -> Result {
        try options.validate()
        let taskCancellation = KTask.Cancellation()
        let cancellation = JobCancellation(token: options.cancellation, asyncTask: taskCancellation, observesCurrentTask: false)
        let callerNice = ThreadPriority.callerNice()
        // What the job's threads wrote is the awaiting task's to read once the job returns. The resume orders
        // that, but this toolchain's concurrency runtime does not tell ThreadSanitizer so: without this
        // release/acquire pair, a user running TSan sees their array, filled by ktask, reported as a race.
        let handoff = Handoff()
        defer { handoff.receive() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let started = KTask.Pool.asyncCallers.runOnce(nice: callerNice) {
                    let result = Swift.Result { try body(cancellation) }
                    handoff.publish()
                    continuation.resume(with: result)
                }
                if !started { continuation.resume(throwing: KTask.Error.threadStartFailed) }
            }
        } onCancel: {
            taskCancellation.cancel()
        }
    }
}

/// A release by the thread that finishes an async job and an acquire by the task that awaited it.
final class Handoff: Sendable {
    private let published = Atomic<Bool>(false)
    func publish() { published.store(true, ordering: .releasing) }
    func receive() { _ = published.load(ordering: .acquiring) }
}
