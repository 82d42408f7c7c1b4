import CKTaskShims

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
        try runOnCallingThread(.range(range), options: options, taskCancellation: nil, observesCurrentTask: true,
                               undo: undo, chunk)
    }

    /// Runs a job that carries one range per NUMA node (the kernel's `ktask_run_numa`): each node's
    /// range is worked first by helpers pinned to that node's usable CPUs (and by the caller, on its
    /// own node's range); a thread whose node's range is done helps the others. Failure, undo and
    /// cancellation are as for ``run(_:options:undo:_:)``; ``KTaskOptions/placement`` is not used.
    ///
    /// - Throws: ``KTaskError`` for an unknown node, a node without usable CPUs, a node named twice or a
    ///   negative range, before any work; else as ``run(_:options:undo:_:)``.
    @discardableResult
    @available(*, noasync, message: "blocks the calling thread; use the async KTask.run(perNode:) from async code")
    public static func run(
        perNode ranges: [NodeRange],
        options: KTaskOptions = KTaskOptions(),
        undo: ((Range<Int>) -> Void)? = nil,
        _ chunk: @Sendable (Range<Int>) throws -> Void
    ) throws -> KTaskReport {
        try runOnCallingThread(.perNode(ranges), options: options, taskCancellation: nil, observesCurrentTask: true,
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
        try await runOnKTaskThreads(.range(range), options: options, undo: undo, chunk)
    }

    /// The per-node job of ``run(perNode:options:undo:_:)``, from async code: all work on ktask's threads.
    @discardableResult
    public static func run(
        perNode ranges: [NodeRange],
        options: KTaskOptions = KTaskOptions(),
        undo: (@Sendable (Range<Int>) -> Void)? = nil,
        _ chunk: @escaping @Sendable (Range<Int>) throws -> Void
    ) async throws -> KTaskReport {
        try await runOnKTaskThreads(.perNode(ranges), options: options, undo: undo, chunk)
    }

    private static func runOnKTaskThreads(
        _ input: JobInput, options: KTaskOptions, undo: (@Sendable (Range<Int>) -> Void)?,
        _ chunk: @escaping @Sendable (Range<Int>) throws -> Void
    ) async throws -> KTaskReport {
        try options.validate()
        let taskCancellation = KTaskCancellation()
        let callerNice = ThreadPriority.currentThreadNice()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let standIn = AsyncCaller(input: input, options: options, taskCancellation: taskCancellation,
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

    /// What a job covers: one range, or one range per node.
    enum JobInput: Sendable {
        case range(Range<Int>)
        case perNode([NodeRange])
    }

    /// The most threads a job may use: its own cap, the CPU budget, and the tuning profile's cap for
    /// its class of work.
    static func threadLimit(_ options: KTaskOptions, _ limits: JobLimits) throws(KTaskError) -> Int {
        var limit = min(options.maxThreads ?? limits.budget, limits.budget)
        if let workClass = options.workClass, let cap = try TuningProfile.threadCap(for: workClass) { limit = min(limit, cap) }
        return limit
    }

    static func runOnCallingThread(
        _ input: JobInput,
        options: KTaskOptions,
        taskCancellation: KTaskCancellation?,
        observesCurrentTask: Bool,
        undo: ((Range<Int>) -> Void)?,
        _ chunk: @Sendable (Range<Int>) throws -> Void
    ) throws -> KTaskReport {
        try options.validate()
        let clock = ContinuousClock()
        let start = clock.now
        func cancelled() -> Bool {
            options.cancellation?.isCancelled == true || taskCancellation?.isCancelled == true
                || (observesCurrentTask && Task.isCancelled)
        }
        func runInline(_ range: Range<Int>) throws -> KTaskReport {
            if cancelled() { throw KTaskError.cancelled }
            try chunk(range)
            return KTaskReport(threadsUsed: 1, chunkSize: range.count, chunkCount: 1, helperNice: nil,
                               wallTime: clock.now - start, perThread: nil)
        }
        let noWork = KTaskReport(threadsUsed: 1, chunkSize: 0, chunkCount: 0, helperNice: nil,
                                 wallTime: .zero, perThread: nil)

        let limits: JobLimits
        let lanes: LanePlan
        let parts: [Range<Int>]
        switch input {
        case .range(let range):
            guard range.lowerBound >= 0 else { throw KTaskError.negativeRangeStart(range.lowerBound) }
            guard !range.isEmpty else { return noWork }
            // A job that fits in one chunk needs no other thread and no system call.
            let oneChunkOrLess = range.count <= max(options.minChunk, options.align)
            if oneChunkOrLess || options.maxThreads == 1 { return try runInline(range) }
            limits = JobLimits.current()
            let threads = ChunkPlan.usefulThreads(size: range.count, minChunk: options.minChunk, align: options.align,
                                                  limit: try threadLimit(options, limits))
            if threads == 1 { return try runInline(range) }
            lanes = try LanePlan.single(placement: options.placement, threads: threads,
                                        callerCPU: Int(CKTask_sched_getcpu()), nodes: limits.nodes)
            parts = [range]
        case .perNode(let ranges):
            var seen = Set<Int>()
            for part in ranges {
                guard part.range.lowerBound >= 0 else { throw KTaskError.negativeRangeStart(part.range.lowerBound) }
                guard seen.insert(part.node).inserted else { throw KTaskError.duplicateNode(part.node) }
            }
            let work = ranges.filter { !$0.range.isEmpty }
            guard !work.isEmpty else { return noWork }
            limits = JobLimits.current()
            let useful = work.map { part in
                (node: part.node, usefulThreads: ChunkPlan.usefulThreads(size: part.range.count, minChunk: options.minChunk,
                                                                           align: options.align, limit: Int.max))
            }
            lanes = try LanePlan.perNode(useful, threadLimit: try threadLimit(options, limits),
                                         callerCPU: Int(CKTask_sched_getcpu()), nodes: limits.nodes)
            parts = work.map(\.range)
        }

        let pool = options.pool
        let cap = try pool.cap(cpuBudget: limits.budget, energyRestricted: limits.energyRestricted)
        var reservations: [(lane: LanePlan.Lane, reservation: KTaskPool.Reservation)] = []
        for lane in lanes.lanes where lane.helpers > 0 {
            var nodeCap = Int.max
            if let node = lane.node {
                nodeCap = try pool.nodeCap(usableCPUs: limits.nodes.first { $0.id == node }?.cpus.count ?? 1).maxBusyHelpers
            }
            let reservation = pool.reserve(upTo: lane.helpers, cap: cap.maxBusyHelpers, node: lane.node, nodeCap: nodeCap)
            if reservation.count > 0 { reservations.append((lane, reservation)) }
        }
        let reserved = reservations.reduce(0) { $0 + $1.reservation.count }
        if reserved == 0 && parts.count == 1 { return try runInline(parts[0]) }

        let nice = options.helperPriority.resolvedNice()
        let callerNice = ThreadPriority.currentThreadNice()
        let guardInForce = StarvationGuard.resolve(options.starvationGuard, helperNice: nice, callerNice: callerNice)
        let adaptive = options.adaptiveThreads
        let plans = parts.indices.map { part in
            let threads = reservations.filter { $0.lane.part == part }.reduce(0) { $0 + $1.reservation.count }
                + (part == lanes.callerPart ? 1 : 0)
            return ChunkPlan(range: parts[part], minChunk: options.minChunk, align: options.align, threads: max(1, threads),
                             smallHelperClaims: guardInForce != .none || adaptive != nil)
        }
        return try withoutActuallyEscaping(chunk) { chunk in
            let job = JobState(plans: plans, threads: 1 + reserved, helpersClaimGrains: guardInForce != .none,
                               tracksHelperProgress: guardInForce == .priorityBoost, adaptive: adaptive != nil, cancellation: options.cancellation,
                               taskCancellation: taskCancellation, chunk: chunk)
            var helpers: [HelperThread] = []
            // Adaptive mode wakes its reserved helpers one at a time, as its controller asks.
            var waiting: [(lane: LanePlan.Lane, reservation: KTaskPool.Reservation)] = []
            var controller = adaptive.map { AdaptiveController(settings: $0, maxThreads: 1 + reserved) }
            func dispatch(_ lane: LanePlan.Lane, _ reservation: KTaskPool.Reservation) -> Int {
                let started = pool.dispatch(reservation, work: .jobShare(Unmanaged.passUnretained(job)),
                                            firstSlot: 1 + helpers.count, part: lane.part, nice: nice, cpus: lane.cpus)
                helpers += started
                return started.count
            }
            func giveBackWaiting() {
                for (_, reservation) in waiting { pool.cancel(reservation) }
                waiting = []
            }
            if adaptive != nil {
                waiting = reservations.flatMap { entry in entry.reservation.singles().map { (entry.lane, $0) } }
            } else {
                for (lane, reservation) in reservations { _ = dispatch(lane, reservation) }
            }
            func adapt() {
                let (items, claims) = job.progress
                switch controller!.observe(now: clock.now - start, items: items, claims: claims) {
                case .keep: break
                case .addHelper:
                    let (lane, reservation) = waiting.removeFirst()
                    if dispatch(lane, reservation) == 0 {
                        // The system would not start a thread: stay with the threads there are.
                        controller!.stop(at: helpers.count + 1)
                        giveBackWaiting()
                    }
                case .settle(let threads):
                    job.admit(upTo: threads)
                    giveBackWaiting()
                }
            }
            // Once the caller has claimed the last grains, helpers that have not woken yet are not needed
            // (their assignments are taken back), and with the priority boost a starved helper gets the
            // caller's priority while the caller still works.
            var stragglers: [(slot: Int, tid: Int32)]?
            var boosted = 0
            func takeStock() -> [(slot: Int, tid: Int32)] {
                if let stragglers { return stragglers }
                let joined = pool.revokeUnstarted(helpers, of: .jobShare(Unmanaged.passUnretained(job))).enumerated().compactMap { index, tid in tid.map { (slot: index + 1, tid: $0) } }
                stragglers = joined
                return joined
            }
            let boosting = guardInForce == .priorityBoost
            // A helper that has completed no grain for this long is starved: 4 grains' time at the pace
            // the job has had so far (all threads busy), at least 1 ms.
            func starvedAfter() -> Int64 {
                let elapsed = Int64((clock.now - start).seconds * 1e9)
                let grains = plans.reduce(0) { $0 + $1.grainCount }
                return max(1_000_000, 4 * elapsed * Int64(1 + reserved) / Int64(max(1, grains)))
            }
            // A job shorter than that is over before a boost (two system calls and a cgroup write) pays off.
            let earlyBoostAfter = Duration.milliseconds(1)
            job.participate(slot: 0, home: lanes.callerPart, observesCurrentTask: observesCurrentTask,
                            onLastClaim: {
                                guard boosting, clock.now - start > earlyBoostAfter else { return }
                                boosted += job.boostStragglers(takeStock(), callerNice: callerNice,
                                                               starvedAfter: starvedAfter(), waits: false)
                            },
                            afterClaim: { if controller != nil { adapt() } })
            giveBackWaiting()
            let joinedHelpers = takeStock()
            if boosting && !joinedHelpers.isEmpty {
                boosted += job.boostStragglers(joinedHelpers, callerNice: callerNice, starvedAfter: starvedAfter())
            }
            let joined = joinedHelpers.count
            job.waitForHelpers(joined)
            if let error = job.error {
                if let undo { _ = job.undoCompletedChunks(undo) }
                throw error
            }
            let perThread = job.chunksPerThread(slots: 1 + reserved)
            return KTaskReport(threadsUsed: perThread.count, chunkSize: plans[0].chunkSize,
                               chunkCount: perThread.reduce(0, +), helperNice: joined > 0 ? Int(nice) : nil,
                               wallTime: clock.now - start, starvationGuard: guardInForce, boostedHelpers: boosted,
                               adaptiveThreads: controller.map { $0.settled ?? $0.threads },
                               adaptiveThroughput: controller?.rates ?? [], perThread: perThread)
        }
    }
}

/// An async job's stand-in for its caller: runs the caller's share on a ktask thread, then resumes it.
final class AsyncCaller: @unchecked Sendable {
    let input: KTask.JobInput
    let options: KTaskOptions
    let taskCancellation: KTaskCancellation
    let undo: (@Sendable (Range<Int>) -> Void)?
    let chunk: @Sendable (Range<Int>) throws -> Void
    let continuation: CheckedContinuation<KTaskReport, any Error>
    private var selfReference: Unmanaged<AsyncCaller>?

    init(input: KTask.JobInput, options: KTaskOptions, taskCancellation: KTaskCancellation,
         undo: (@Sendable (Range<Int>) -> Void)?, chunk: @escaping @Sendable (Range<Int>) throws -> Void,
         continuation: CheckedContinuation<KTaskReport, any Error>) {
        self.input = input
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

    func run() -> JobCompletion? {
        let result = Result {
            try KTask.runOnCallingThread(input, options: options, taskCancellation: taskCancellation,
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
