import Logging
#if canImport(Glibc)
import Glibc
#endif

/// One job from the call to the report, in the order of the kernel's `padata_do_multithreaded`:
/// plan (inline or parallel, lanes, chunk plans) → reserve helpers → dispatch them → the caller
/// participates → finish (wait for every helper dispatched, undo on failure, report).
enum MultithreadedJob {
    static func run(_ input: JobInput, options: KTask.Options, cancellation: JobCancellation,
                    undo: ((Range<Int>) -> Void)?, _ chunk: (Range<Int>) throws -> Void) throws -> KTask.Report {
        try options.validate()
        if let progress = options.progress { return try runReportingProgress(progress, input, options: options, cancellation: cancellation, undo: undo, chunk) }
        // CLOCK_MONOTONIC nanoseconds: one clock read serves the caller's first chunks and the report.
        let start = monotonicNanoseconds()
        // A job cancelled before it starts runs no chunk, on any thread.
        guard !cancellation.isCancelled(onCaller: true) else { throw cancellation.error }

        // Plan: inline, parallel, or first the caller alone (``CallerFirst``) and then the rest.
        var head: CallerFirst?
        var restInline = false
        var shape = try Admission.make(input, options: options)
        switch shape {
        case .noWork:
            options.onReport?(.noWork)
            return .noWork
        case .inline(let range, let limit):
            // The ~100 ns path: no JobLog at all unless a logger is set.
            if options.logger != nil || options.pool.logger != nil {
                JobLog(options).debug("\(range.count) items run inline on the calling thread: limited by \(limit.rawValue)")
            }
            let report = try runInline(range, options: options, cancellation: cancellation, start: start, limit: limit, undo: undo, chunk)
            options.onReport?(report)
            return report
        case .parallel, .callerFirst: break
        }
        if case .callerFirst(let range, _) = shape {
            var first = CallerFirst(range: range, minChunk: options.minChunk, align: options.align, maxChunk: options.maxChunk)
            let cost = options.pool.helperCost(now: start)
            let outcome: CallerFirst.Outcome, finished: Int64, estimate: Int64
            do {
                (outcome, finished, estimate) = try first.run(start: start, decideAfter: cost.decideAfter, breakEven: cost.breakEven,
                                                    cancellation: cancellation, chunk)
            } catch {
                if let undo { first.undo(undo) }
                throw error
            }
            if options.logger != nil || options.pool.logger != nil {
                JobLog(options).debug("the caller ran \(first.doneUpTo - range.lowerBound) of \(range.count) items alone in \(first.claims) chunk(s): "
                                      + "\(outcome) (a helper breaks even at \(cost.breakEven) ns of work left)")
            }
            if outcome == .restInline && estimate >= cost.breakEven / 2 { options.pool.noteNearMiss() }
            if outcome == .done {
                let report = KTask.Report(threadsUsed: 1, chunkSize: first.largestChunk, claimCount: first.claims, helperNice: nil,
                                    wallTime: .nanoseconds(finished - start), threadLimit: .helperCost, perThread: nil)
                options.onReport?(report)
                return report
            }
            head = first
            restInline = outcome == .restInline
        }
        do {
            if let head, case .callerFirst(let range, let limits) = shape {
                // Sized in here: an error reading the limits (a tuning profile changed meanwhile) undoes the
                // caller's first chunks like any other failure.
                let rest = head.doneUpTo..<range.upperBound
                shape = restInline ? .inline(rest, .helperCost) : try Admission.sized(rest, options: options, limits: limits)
                // The first chunks checked before each; the rest, inline or not, starts only if not cancelled since.
                guard !cancellation.isCancelled(onCaller: true) else { throw cancellation.error }
            }
            let (planned, log) = try runPlanned(shape, options: options, cancellation: cancellation, start: start, undo: undo, chunk)
            let report = head.map { planned.addingCallerClaims($0.claims, largestChunk: $0.largestChunk,
                                                               wallTime: .nanoseconds(monotonicNanoseconds() - start)) } ?? planned
            log?.debug("job done: \(report)")
            options.onReport?(report)
            return report
        } catch {
            if let undo { head?.undo(undo) }
            throw error
        }
    }

    /// A job with ``KTask/Options/progress``: the same job, each completed chunk counted (only such a job pays
    /// for counting), and the last report once it succeeded.
    private static func runReportingProgress(_ progress: KTask.Progress, _ input: JobInput, options: KTask.Options,
                                             cancellation: JobCancellation, undo: ((Range<Int>) -> Void)?,
                                             _ chunk: (Range<Int>) throws -> Void) throws -> KTask.Report {
        let total = switch input {
        case .range(let range): range.count
        case .perNode(let ranges): ranges.reduce(0) { $0 + $1.range.count }
        }
        let reporter = ProgressReporter(progress, total: total)
        var counted = options
        counted.progress = nil
        let report = try run(input, options: counted, cancellation: cancellation, undo: undo) { range in
            try chunk(range)
            reporter.add(range.count)
        }
        reporter.finish(total)
        return report
    }

    /// The job once sized: inline, or parallel (reserve, dispatch, participate, finish).
    private static func runPlanned(_ shape: Admission.Shape, options: KTask.Options, cancellation: JobCancellation,
                                   start: Int64, undo: ((Range<Int>) -> Void)?,
                                   _ chunk: (Range<Int>) throws -> Void) throws -> (KTask.Report, JobLog?) {
        var admission: Admission
        switch shape {
        case .noWork: return (.noWork, nil)
        case .inline(let range, let limit):
            // The rest of a job the caller started alone: no JobLog at all unless a logger is set.
            let log = options.logger != nil || options.pool.logger != nil ? JobLog(options) : nil
            log?.debug("\(range.count) items run inline on the calling thread: limited by \(limit.rawValue)")
            return (try runInline(range, options: options, cancellation: cancellation, start: start, limit: limit, undo: undo, chunk), log)
        case .parallel(let parallel): admission = parallel
        case .callerFirst: preconditionFailure("sized before it runs")
        }
        let log = admission.log
        // Reserve: the admission's last step.
        let reserving = monotonicNanoseconds()
        let reserved = admission.reserve(in: options.pool)
        let helpers = reserved.reduce(0) { $0 + $1.reservation.count }
        log.debug(admission.account(options: options))
        if helpers == 0 && admission.parts.count == 1 {
            let report = try runInline(admission.parts[0], options: options, cancellation: cancellation, start: start, limit: admission.limit,
                                       refusedBy: admission.refusedBy, undo: undo, chunk)
            return (report, log)
        }

        return try withoutActuallyEscaping(chunk) { chunk in
            let startInstant = ContinuousClock.now - .nanoseconds(monotonicNanoseconds() - start)
            let setup = JobSetup(admission, reserved, helpers: helpers, options: options, start: startInstant)
            let job = JobState(plans: setup.plans, policy: setup.policy, slots: 1 + helpers, homes: setup.homes, boost: setup.boost,
                               adaptive: setup.adaptiveProgress,
                               cancellation: cancellation, chunk: chunk)
            var dispatcher = HelperDispatcher(job: job, pool: options.pool, nice: setup.helperNice,
                                              idleCgroup: setup.helpersIsolated, log: log)
            var adaptive = setup.adaptiveProgress.map { AdaptiveDriver(options.adaptiveThreads!, job: job, progress: $0,
                                                                        start: startInstant, waiting: reserved) }
            let boost = setup.boost
            // Dispatch: every helper now, or in adaptive mode one at a time as its controller asks.
            if adaptive == nil { for entry in reserved { dispatcher.dispatch(entry) } }
            // Participate: the caller claims like any helper. Once it has claimed the last grains, helpers
            // that have not woken yet are not needed, and a starved one may be lent the caller's priority.
            job.participate(slot: 0,
                            onLastClaim: { dispatcher.revokeUnstarted(); boost?.boostOneIfStarved() },
                            afterClaim: { adaptive?.afterClaim(dispatcher: &dispatcher) })
            // Finish: no helper is dispatched from here on; wait until none is out.
            let callerDone = monotonicNanoseconds()
            adaptive?.giveBackWaiting(to: options.pool)
            dispatcher.revokeUnstarted()
            boost?.boostStarvedUntilDone(latch: job.latch)
            job.latch.wait()
            // What helpers cost the caller: the time until the first joined (or, none in time, until the caller
            // was done), plus its wait for them at the end beyond two grains' time at the job's pace (a helper
            // finishing its last claim is work; one starved on a busy machine while it holds a claim is cost).
            // Not where a thread had to be started (once per ~10 s of idleness: not the next job's).
            // Nor for adaptive mode (its helpers wait on purpose) or a job that got none.
            if helpers > 0 && adaptive == nil && reserved.allSatisfy({ $0.reservation.toStart == 0 }) {
                let joinedAt = job.firstJoin.load(ordering: .relaxed)
                let finished = monotonicNanoseconds()
                let items = job.plans.reduce(0) { $0 + $1.range.count }
                let grainTime = Double(callerDone - reserving) * Double(job.slots) * Double(job.plans[0].grainSize) / Double(max(1, items))
                let starvedWait = max(0, Double(finished - callerDone) - 2 * grainTime)
                options.pool.noteHelperCost(nanoseconds: ((joinedAt > 0 ? min(joinedAt, callerDone) : callerDone) - reserving)
                                                         + Int64(min(starvedWait, 1e15)))
            }
            if let error = job.error {
                if let undo { job.undoCompletedClaims(undo) }
                throw error
            }
            let perThread = job.claimsPerThread
            admission.finished(adaptive: adaptive, startFailures: dispatcher.startFailures, threadsUsed: perThread.count,
                               dispatched: dispatcher.dispatched)
            let report = KTask.Report(threadsUsed: perThread.count, chunkSize: job.plans[0].chunkSize,
                               claimCount: perThread.reduce(0, +), helperNice: perThread.count > 1 ? Int(setup.helperNice) : nil,
                               wallTime: .nanoseconds(monotonicNanoseconds() - start), threadLimit: admission.limit,
                               helpersRefusedBy: admission.refusedBy, starvationGuard: setup.starvationGuard, boostedHelpers: boost?.boosted ?? 0,
                               adaptiveThreads: adaptive?.threads, adaptiveThroughput: adaptive?.rates ?? [], perThread: perThread,
                               cpuTimePerThread: job.cpuTimePerThread, helpersPerNode: Admission.helpersPerNode(reserved))
            return (report, log)
        }
    }

    /// One call on the calling thread: no helper, no system call, nothing allocated; or, for a range
    /// longer than ``KTask/Options/maxChunk``, chunks of that size one after the other, each checking
    /// cancellation first, so that a job on one thread stops as soon as one on several would.
    @inline(__always)
    private static func runInline(_ range: Range<Int>, options: KTask.Options, cancellation: JobCancellation, start: Int64,
                                  limit: KTask.ThreadLimit, refusedBy: KTask.ThreadLimit? = nil,
                                  undo: ((Range<Int>) -> Void)?, _ chunk: (Range<Int>) throws -> Void) throws -> KTask.Report {
        guard let maxChunk = options.maxChunk, range.count > maxChunk else {
            try chunk(range)
            return KTask.Report(threadsUsed: 1, chunkSize: range.count, claimCount: 1, helperNice: nil,
                                wallTime: .nanoseconds(monotonicNanoseconds() - start), threadLimit: limit, helpersRefusedBy: refusedBy,
                                perThread: nil)
        }
        let plan = ChunkPlan(range: range, minChunk: options.minChunk, align: options.align, threads: 1, maxChunk: maxChunk)
        var done = 0
        do {
            while done < plan.chunkCount {
                if done > 0, cancellation.isCancelled(onCaller: true) { throw cancellation.error }
                try chunk(plan.chunk(done))
                done += 1
            }
        } catch {
            if let undo { for index in 0..<done { undo(plan.chunk(index)) } }
            throw error
        }
        return KTask.Report(threadsUsed: 1, chunkSize: plan.chunkSize, claimCount: done, helperNice: nil,
                            wallTime: .nanoseconds(monotonicNanoseconds() - start), threadLimit: limit, helpersRefusedBy: refusedBy,
                            perThread: nil)
    }

}

/// What a parallel job is set up with once its helpers are reserved: chunk plans sized for the threads each
/// part got, the claim policy and hooks the starvation guard and adaptive mode call for, each slot's home
/// part, and the priority its helpers run at.
private struct JobSetup {
    let plans: [ChunkPlan]
    let policy: ClaimPolicy
    let homes: [Int]
    let starvationGuard: KTask.StarvationGuard
    let helperNice: Int32
    /// Below the caller only: helpers at its priority run outside the idle cgroup (``HelperThread``).
    let helpersIsolated: Bool
    let boost: PriorityBoost?
    let adaptiveProgress: AdaptiveProgress?

    init(_ admission: Admission, _ reserved: [Admission.LaneReservation], helpers: Int, options: KTask.Options,
         start: ContinuousClock.Instant) {
        let callerNice = ThreadPriority.callerNice()
        helperNice = options.helperPriority.resolved(callerNice: callerNice)
        starvationGuard = KTask.StarvationGuard.resolve(options.starvationGuard, helperNice: helperNice, callerNice: callerNice)
        policy = ClaimPolicy(starvationGuard: starvationGuard, adaptive: options.adaptiveThreads != nil)
        helpersIsolated = options.pool.isolatesHelpers && helperNice > callerNice
        let slots = 1 + helpers
        // Each slot's home part (a single-part job needs no list: every slot starts on part 0).
        var homes: [Int] = []
        if admission.parts.count > 1 {
            homes = [admission.lanes.callerPart]
            for entry in reserved { homes += repeatElement(entry.lane.part, count: entry.reservation.count) }
        }
        self.homes = homes
        let policy = policy
        plans = admission.parts.indices.map { part in
            ChunkPlan(range: admission.parts[part], minChunk: options.minChunk, align: options.align,
                      threads: homes.isEmpty ? slots : max(1, homes.count(where: { $0 == part })), maxChunk: options.maxChunk,
                      smallHelperClaims: policy.smallGrains)
        }
        // No helper, nothing to boost (a per-node job whose lanes got none).
        boost = starvationGuard == .priorityBoost && helpers > 0
            ? PriorityBoost(slots: slots, grains: plans.reduce(0) { $0 + $1.grainCount }, callerNice: callerNice,
                            helpersIsolated: helpersIsolated, start: start)
            : nil
        adaptiveProgress = options.adaptiveThreads == nil ? nil : AdaptiveProgress()
    }
}

/// The caller's hand-out of a job's helpers: each counted on the job's latch before the pool gets it, so
/// the caller waits for every helper it ever dispatched.
struct HelperDispatcher {
    let job: JobState
    let pool: KTask.Pool
    /// The nice value helpers run at, and whether in the pool's idle cgroup.
    let nice: Int32
    let idleCgroup: Bool
    /// The slot the next helper gets (1 + helpers dispatched so far).
    private var nextSlot = 1
    private var revoked = false
    /// Helpers the system would not start.
    private(set) var startFailures = 0

    private let log: JobLog

    init(job: JobState, pool: KTask.Pool, nice: Int32, idleCgroup: Bool, log: JobLog) {
        self.job = job
        self.pool = pool
        self.nice = nice
        self.idleCgroup = idleCgroup
        self.log = log
    }

    /// Dispatches a lane's reserved helpers; returns how many the system started.
    @discardableResult
    mutating func dispatch(_ entry: Admission.LaneReservation) -> Int {
        let wanted = entry.reservation.count
        job.latch.add(wanted)
        let started = pool.dispatch(entry.reservation, work: job.work, firstArgument: nextSlot, nice: nice,
                                    cpus: entry.lane.cpus, idleCgroup: idleCgroup, log: log)
        job.latch.countDown(wanted - started)
        startFailures += wanted - started
        nextSlot += wanted
        return started
    }

    /// Helpers dispatched so far.
    var dispatched: Int { nextSlot - 1 }

    /// Takes back (once) the assignments helpers have not picked up: the job needs them no more.
    mutating func revokeUnstarted() {
        guard !revoked else { return }
        revoked = true
        // Every helper dispatched has joined: nothing to take back, no need for the pool's lock.
        guard job.joined.load(ordering: .relaxed) < nextSlot - 1 else { return }
        job.latch.countDown(pool.revoke(job.work))
    }
}

extension KTask.Report {
    @usableFromInline static let noWork = KTask.Report(threadsUsed: 1, chunkSize: 0, claimCount: 0, helperNice: nil, wallTime: .zero,
                                    threadLimit: .tooLittleWork, perThread: nil)
}

/// Where a job's decisions and warnings go: the `Logger` the user gave (``KTask/Options/logger``, else the
/// pool's), never one ktask makes itself. Decisions a user may wonder about ("why only 1 thread?") are
/// logged at debug; what degrades a job (a helper that could not start, a malformed environment variable)
/// at warning. With no logger anywhere, debug lines are dropped and warnings go to standard error, as
/// libgomp's do, so that a degraded job is never silent.
package struct JobLog {
    let logger: Logger?

    init(_ options: KTask.Options) {
        logger = options.logger ?? options.pool.logger
    }

    init(logger: Logger?) {
        self.logger = logger
    }

    /// The message is built only when a debug line would be kept.
    func debug(_ message: @autoclosure () -> String, metadata: Logger.Metadata = [:]) {
        guard let logger, logger.logLevel <= .debug else { return }
        logger.debug("\(message())", metadata: metadata)
    }

    func warning(_ message: String, metadata: Logger.Metadata = [:]) {
        if let logger {
            logger.warning("\(message)", metadata: metadata)
        } else {
            let details = metadata.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
            let line = Array("ktask: warning: \(message)\(details)\n".utf8)
            _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        }
    }
}
