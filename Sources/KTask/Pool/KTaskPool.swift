import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension KTask {
    /// A process-wide pool of helper pthreads, and the cap on how many of them may be busy at once.
    ///
    /// Threads are started on demand, park (using no CPU) when idle, and retire after `idleTimeout`
    /// without work. Every job that names a pool shares its cap: a job takes the free helpers there are
    /// and never waits for one; its calling thread does the rest. Helper threads are named
    /// `NAME/N` (`ktask/N` for the shared pool) so that `top -H` and `ps -L` show them.
    ///
    /// The pool runs type-erased work (`PoolWork`) and knows nothing of jobs; all its state is guarded
    /// by one lock.
    public final class Pool: @unchecked Sendable {
        /// The pool every job uses unless it names another. Cap: what ``setMaxBusyHelpers(_:)`` set, else
        /// `KTASK_MAX_THREADS` − 1, else 0 while the machine saves energy, else the CPU budget − 1.
        public static let shared = KTask.Pool(validatedName: "ktask", maxBusyHelpers: nil, idleTimeout: .seconds(10))

        /// The threads that run async jobs' caller shares, each at its caller's priority. Not capped: there
        /// is one per async job in flight, as there would be one blocked caller per sync job.
        static let asyncCallers = KTask.Pool(validatedName: "ktask-a", maxBusyHelpers: Int.max, idleTimeout: .seconds(10),
                                            isolatesHelpers: false, permits: nil)

        /// The logger of the jobs that set none (``KTask/Options/logger``); nil: warnings to standard error.
        let logger: Logger?
        /// The machine-wide slots and jobserver tokens each busy helper holds; nil for the async callers'
        /// threads, which are callers, each its own implicit slot.
        let permits: HelperPermits?

        let name: String
        let idleTimeoutNanoseconds: Int64
        /// Whether its threads go into the helpers' idle cgroup (see the article "Staying out of the way"); not for threads
        /// that run a caller's own share.
        let isolatesHelpers: Bool
        /// Guards every mutable field below and each thread's assignment.
        let lock = PThreadMutex()
        /// Every live thread, to find the assignments of one work (``revoke(_:)``).
        private var threads: [HelperThread] = []
        private var idle: [HelperThread] = []
        private var busy = 0
        /// Busy helpers per node, for jobs placed on nodes.
        private var busyByNode: [Int: Int] = [:]
        private var nextThreadID = 1
        /// The cap set by API (−1: none, use the environment or the CPU count).
        private let capOverride: Atomic<Int>
        /// The per-node cap set by API (−1: none, use `KTASK_NODE_MAX_THREADS` or the node's usable CPUs).
        private let nodeCapOverride = Atomic<Int>(-1)
        /// Set once a thread could not be started: the warning is logged once per pool, not per job.
        private let warnedThreadStart = Atomic<Bool>(false)

        /// Creates a separate pool, with its own threads and cap.
        /// - Parameters:
        ///   - name: thread-name prefix (threads are named `name/N`; Linux keeps 15 bytes of a name).
        ///   - maxBusyHelpers: the cap on busy helpers; nil: `KTASK_MAX_THREADS` − 1, else 0 while the machine
        ///     saves energy, else the CPU budget − 1.
        ///   - idleTimeout: how long a helper stays parked without work before it exits (longer than about
        ///     292 years counts as never).
        ///   - isolateHelpers: put helper threads in the idle child cgroup where the process may
        ///     (`ktask-helpers`, `cpu.idle` = 1), so that they take only CPU time no other group wants.
        ///   - logger: where the jobs on this pool that name no logger of their own log
        ///     (``KTask/Options/logger``); nil: warnings to standard error, nothing else.
        public convenience init(name: String = "ktask", maxBusyHelpers: Int? = nil, idleTimeout: Duration = .seconds(10),
                                isolateHelpers: Bool = true, logger: Logger? = nil) throws(KTask.Error) {
            if let maxBusyHelpers, maxBusyHelpers < 0 { throw .invalidHelperCap(maxBusyHelpers) }
            guard idleTimeout > .zero else { throw .invalidIdleTimeout(idleTimeout) }
            self.init(validatedName: name, maxBusyHelpers: maxBusyHelpers, idleTimeout: idleTimeout, isolatesHelpers: isolateHelpers,
                      logger: logger)
        }

        init(validatedName name: String, maxBusyHelpers: Int?, idleTimeout: Duration, isolatesHelpers: Bool = true,
                     logger: Logger? = nil, permits: HelperPermits? = .process) {
            self.name = name
            self.logger = logger
            self.permits = permits
            self.isolatesHelpers = isolatesHelpers
            let (seconds, attoseconds) = idleTimeout.components
            // Saturates: a timeout past Int64 nanoseconds (292 years) is as good as none.
            let whole = seconds.multipliedReportingOverflow(by: 1_000_000_000)
            let total = whole.partialValue.addingReportingOverflow(attoseconds / 1_000_000_000)
            self.idleTimeoutNanoseconds = whole.overflow || total.overflow ? Int64.max : total.partialValue
            self.capOverride = Atomic(maxBusyHelpers ?? -1)
        }

        /// Sets the cap on busy helpers for every job that uses this pool (nil: back to the default).
        /// Jobs already running keep the helpers they have.
        public func setMaxBusyHelpers(_ cap: Int?) throws(KTask.Error) {
            if let cap, cap < 0 { throw .invalidHelperCap(cap) }
            capOverride.store(cap ?? -1, ordering: .relaxed)
        }

        /// Sets the cap on busy helpers on any one node, for jobs placed on nodes (nil: back to the default,
        /// `KTASK_NODE_MAX_THREADS` or the node's usable CPUs).
        public func setMaxBusyHelpersPerNode(_ cap: Int?) throws(KTask.Error) {
            if let cap, cap < 0 { throw .invalidHelperCap(cap) }
            nodeCapOverride.store(cap ?? -1, ordering: .relaxed)
        }

        /// The cap in force for jobs on a machine with this CPU budget and energy state.
        package func cap(cpuBudget: Int, energyRestricted: Bool, log: JobLog? = nil) throws(KTask.Error) -> HelperCap {
            let override = capOverride.load(ordering: .relaxed)
            return try HelperCap.resolve(apiCap: override >= 0 ? override : nil, cpuBudget: cpuBudget,
                                         energyRestricted: energyRestricted, log: log ?? JobLog(logger: logger))
        }

        /// The per-node cap in force for a node with `usableCPUs` CPUs the process may use.
        func nodeCap(usableCPUs: Int, log: JobLog? = nil) throws(KTask.Error) -> HelperCap {
            let override = nodeCapOverride.load(ordering: .relaxed)
            return try HelperCap.resolveNode(apiCap: override >= 0 ? override : nil, usableCPUs: usableCPUs, log: log ?? JobLog(logger: logger))
        }

        /// A snapshot of the pool's threads.
        public struct State: Sendable, Equatable {
            /// Threads alive (busy or parked).
            public let liveThreads: Int
            /// Threads parked, waiting for work.
            public let idleThreads: Int
            /// Threads reserved by or working for a job.
            public let busyHelpers: Int
        }

        // MARK: What a helper costs

        /// What a helper has cost this pool's jobs lately, in nanoseconds: from the caller's reservation to a
        /// helper's first claim (or to the caller's last claim, where no helper came in time), plus the
        /// caller's wait for its helpers at the end, a moving average over jobs. Read by ``CallerFirst`` to tell whether a job's rest is worth a helper.
        private let helperCostNanoseconds = Atomic<Int64>(HelperCost.initialNanoseconds)
        /// When the last sample was taken (CLOCK_MONOTONIC nanoseconds).
        private let helperCostSampledAt = Atomic<Int64>(0)

        /// A helper's recent cost at `now`, as the times ``CallerFirst`` decides with. An average above the
        /// initial one halves its excess every second without a sample: a burst of load once measured does
        /// not keep small jobs alone after it is gone, even where no job is near the break-even.
        func helperCost(now: Int64) -> HelperCost {
            let average = helperCostNanoseconds.load(ordering: .relaxed)
            guard average > HelperCost.initialNanoseconds else { return HelperCost(nanoseconds: average) }
            let halvings = (now - helperCostSampledAt.load(ordering: .relaxed)) / HelperCost.excessHalfLifeNanoseconds
            return HelperCost(nanoseconds: HelperCost.initialNanoseconds + ((average - HelperCost.initialNanoseconds) >> min(62, max(0, halvings))))
        }

        /// Adds one job's measured helper cost to the average (one in 8; racing jobs may drop a sample).
        func noteHelperCost(nanoseconds sample: Int64) {
            let now = monotonicNanoseconds()
            let clamped = min(max(sample, HelperCost.minimumNanoseconds), HelperCost.maximumNanoseconds)
            let average = helperCost(now: now).nanoseconds
            helperCostNanoseconds.store(average + (clamped - average) / 8, ordering: .relaxed)
            helperCostSampledAt.store(now, ordering: .relaxed)
        }

        /// A job ran its rest inline with at least half the break-even time of work left: the average comes
        /// down by 1/16. Only parallel jobs measure a helper, so without this an average once inflated (a
        /// burst of load, a slow start) would keep every such job inline for good; this way such jobs try
        /// helpers again after a few, and a helper that is still slow to come puts the average back.
        func noteNearMiss() {
            let average = helperCostNanoseconds.load(ordering: .relaxed)
            helperCostNanoseconds.store(max(HelperCost.minimumNanoseconds, average - average / 16), ordering: .relaxed)
        }

        /// The pool's threads now: live, parked and busy (a snapshot; it may change at once).
        public var state: State {
            lock.withLock { State(liveThreads: threads.count, idleThreads: idle.count, busyHelpers: busy) }
        }

        // MARK: Handing out threads

        /// Threads set aside for one job: parked ones to wake and how many to start.
        struct Reservation {
            var parked: [HelperThread]
            var toStart: Int
            var node: Int?
            /// What refused the helpers the pool had but machine-wide permits did not grant (slots, tokens).
            var refusedBy: KTask.ThreadLimit? = nil
            var count: Int { parked.count + toStart }

            /// The reservation as reservations of one thread each, to dispatch one at a time.
            func singles() -> [Reservation] {
                parked.map { Reservation(parked: [$0], toStart: 0, node: node) }
                    + Array(repeating: Reservation(parked: [], toStart: 1, node: node), count: toStart)
            }
        }

        /// Reserves up to `wanted` threads without waiting, so that busy helpers never exceed `cap`, nor
        /// `nodeCap` on `node`.
        func reserve(upTo wanted: Int, cap: Int, node: Int? = nil, nodeCap: Int = Int.max) -> Reservation {
            guard wanted > 0 else { return Reservation(parked: [], toStart: 0, node: node) }
            var (reservation, withPermits) = lock.withLock {
                var granted = max(0, min(wanted, cap - busy))
                if let node {
                    granted = max(0, min(granted, nodeCap - busyByNode[node, default: 0]))
                    busyByNode[node, default: 0] += granted
                }
                busy += granted
                let reused = min(granted, idle.count)
                // Moved out one by one into an array of its own: `Array(idle.suffix(n))` shares `idle`'s buffer
                // when n is all of it, and the next reserve then changes that buffer in place once this job
                // let go of it — ordered by the release in swift_release, which ThreadSanitizer cannot see.
                var parked: [HelperThread] = []
                parked.reserveCapacity(reused)
                for _ in 0..<reused { parked.append(idle.removeLast()) }
                // Threads still polling after a job kept their permits (``HelperThread``): the job takes them
                // over, and they come first, so that what is given back below is never one of theirs.
                parked.sort { $0.holdsPermit && !$1.holdsPermit }
                for thread in parked { thread.reserved = true }
                let withPermits = parked.count { $0.holdsPermit }
                for thread in parked { thread.holdsPermit = false }
                return (Reservation(parked: parked, toStart: granted - reused, node: node), withPermits)
            }
            // Machine-wide slots and jobserver tokens, outside the lock (system calls), for the threads that
            // hold none; what is not granted goes back at once, threads to start first.
            if let permits, reservation.count > withPermits {
                let grant = permits.take(upTo: reservation.count - withPermits)
                if let warning = grant.warning { JobLog(logger: logger).warning(warning) }
                let got = withPermits + grant.count
                reservation.refusedBy = grant.refusedBy
                if got < reservation.count {
                    var surplus = Reservation(parked: [], toStart: 0, node: node)
                    let unstarted = min(reservation.count - got, reservation.toStart)
                    (reservation.toStart, surplus.toStart) = (reservation.toStart - unstarted, unstarted)
                    let parked = reservation.count - got
                    surplus.parked = Array(reservation.parked.suffix(parked))
                    reservation.parked.removeLast(parked)
                    cancel(surplus, holdsPermits: false)
                }
            }
            return reservation
        }

        /// Gives every reserved thread `work`, with arguments firstArgument, firstArgument + 1, ...; returns
        /// how many were given it (a thread the system refuses to create is given back to the caps).
        func dispatch(_ reservation: Reservation, work: PoolWork, firstArgument: Int = 1, nice: Int32?,
                      cpus: CPUList? = nil, idleCgroup: Bool = true, log: JobLog? = nil) -> Int {
            func assignment(_ index: Int) -> PoolAssignment {
                PoolAssignment(work: work, argument: firstArgument + index, nice: nice, node: reservation.node, cpus: cpus,
                               idleCgroup: idleCgroup)
            }
            if !reservation.parked.isEmpty {
                lock.withLock {
                    for (index, thread) in reservation.parked.enumerated() { thread.assignLocked(assignment(index)) }
                }
            }
            var started = reservation.parked.count
            for _ in 0..<reservation.toStart {
                let thread = lock.withLock {
                    let thread = HelperThread(id: nextThreadID, pool: self, assignment: assignment(started))
                    nextThreadID += 1
                    threads.append(thread)
                    return thread
                }
                if thread.start() {
                    started += 1
                } else {
                    lock.withLock {
                        releaseBusyLocked(node: reservation.node)
                        threads.removeAll { $0 === thread }
                    }
                    permits?.give()
                    if !warnedThreadStart.exchange(true, ordering: .relaxed) {
                        (log ?? JobLog(logger: logger)).warning(
                            "could not start a helper thread; jobs run with the threads there are (logged once per pool)",
                            metadata: ["pool": "\(name)"])
                    }
                }
            }
            return started
        }

        /// Runs `body` once on one of this pool's threads at `nice`; false if no thread could be started.
        func runOnce(nice: Int32?, _ body: @escaping @Sendable () -> Void) -> Bool {
            let work = PoolWork.once(body)
            if dispatch(reserve(upTo: 1, cap: Int.max), work: work, nice: nice) == 1 { return true }
            work.discardOnce()
            return false
        }

        /// Gives back threads reserved but never dispatched: they count as free again.
        func cancel(_ reservation: Reservation, holdsPermits: Bool = true) {
            guard reservation.count > 0 else { return }
            lock.withLock {
                for _ in 0..<reservation.count { releaseBusyLocked(node: reservation.node) }
                for thread in reservation.parked {
                    thread.reserved = false
                    idle.append(thread)
                }
            }
            if holdsPermits { permits?.give(reservation.count) }
        }

        /// Takes back the assignments of `work` that no thread has picked up yet, so that a job that ran
        /// out of chunks need not wait for a thread still waking up only to find nothing left. Returns how
        /// many it took back.
        func revoke(_ work: PoolWork) -> Int {
            let revoked = lock.withLock {
                var revoked = 0
                for thread in threads {
                    guard let assignment = thread.assignment, assignment.work.isSame(as: work) else { continue }
                    thread.takeBackLocked()
                    releaseBusyLocked(node: assignment.node)
                    // Its permit stays with it until it parks, as after a job (``HelperThread``).
                    thread.holdsPermit = permits != nil
                    idle.append(thread)
                    revoked += 1
                }
                return revoked
            }
            return revoked
        }

        /// A busy helper is free again. Its permits (system calls) are given back by the caller once the
        /// lock is released: ``HelperPermits/give(_:)``.
        private func releaseBusyLocked(node: Int?) {
            busy -= 1
            if let node { busyByNode[node, default: 1] -= 1 }
        }

        /// Called by a thread, with the lock held, when its work is done: it is free and idle again (the
        /// thread gives its permits back after unlocking).
        /// The thread keeps its machine-wide slot and jobserver token while it polls for the next job (≤ 50
        /// µs): a job that follows at once takes it over without a system call; it gives them back before it
        /// parks (``HelperThread``).
        func threadFinishedLocked(_ thread: HelperThread, node: Int?) {
            releaseBusyLocked(node: node)
            thread.holdsPermit = permits != nil
            idle.append(thread)
        }

        /// Called by a thread, with the lock held, when its idle timeout passed: it exits.
        func retireLocked(_ thread: HelperThread) {
            idle.removeAll { $0 === thread }
            threads.removeAll { $0 === thread }
        }
    }
}

/// The cap on busy helper threads, and where it came from.
package struct HelperCap: Sendable, Equatable, CustomStringConvertible {
    /// Where a cap's value was set.
    package enum Source: String, Sendable {
        /// CPU budget − 1: with the calling thread, one thread per CPU the process may use.
        case cpuBudget = "CPU budget - 1"
        /// The machine saves energy (battery, low-power profile or governor): no helpers.
        case energy = "energy saving"
        /// `KTASK_MAX_THREADS` (threads per job, the caller included, so the helper cap is one less).
        case environment = "KTASK_MAX_THREADS"
        /// Set through ``KTask/Pool/setMaxBusyHelpers(_:)`` or the pool's initialiser.
        case api = "API"
        /// A node's usable CPUs (the per-node default).
        case nodeCPUs = "node's usable CPUs"
        /// `KTASK_NODE_MAX_THREADS`: busy helpers on any one node.
        case nodeEnvironment = "KTASK_NODE_MAX_THREADS"
    }

    package let maxBusyHelpers: Int
    package let source: Source

    package init(maxBusyHelpers: Int, source: Source) {
        self.maxBusyHelpers = maxBusyHelpers
        self.source = source
    }

    package var description: String { "\(maxBusyHelpers) busy helpers (\(source.rawValue))" }

    /// The environment variable that caps threads: like OMP_NUM_THREADS, it counts the caller.
    static let environmentVariable = "KTASK_MAX_THREADS"
    /// The environment variable that caps busy helpers on any one node, for jobs placed on nodes.
    static let nodeEnvironmentVariable = "KTASK_NODE_MAX_THREADS"

    /// The pool cap in force: one set by API, else `KTASK_MAX_THREADS` (from ``Settings``: read once, a
    /// malformed one ignored after one warning for the process, to `log`), else none while the machine saves
    /// energy, else the CPU budget − 1.
    static func resolve(apiCap: Int?, cpuBudget: Int, energyRestricted: Bool, log: JobLog = JobLog(logger: nil)) throws(KTask.Error) -> HelperCap {
        Settings.reportProblems(to: log)
        if let apiCap { return HelperCap(maxBusyHelpers: apiCap, source: .api) }
        if let cap = Settings.current.maxThreads.value { return cap }
        if energyRestricted { return HelperCap(maxBusyHelpers: 0, source: .energy) }
        return HelperCap(maxBusyHelpers: max(0, cpuBudget - 1), source: .cpuBudget)
    }

    /// The per-node cap in force: one set by API, else `KTASK_NODE_MAX_THREADS` (from ``Settings``), else the
    /// node's usable CPUs.
    static func resolveNode(apiCap: Int?, usableCPUs: Int, log: JobLog = JobLog(logger: nil)) throws(KTask.Error) -> HelperCap {
        Settings.reportProblems(to: log)
        if let apiCap { return HelperCap(maxBusyHelpers: apiCap, source: .api) }
        if let cap = Settings.current.nodeMaxThreads.value { return cap }
        return HelperCap(maxBusyHelpers: usableCPUs, source: .nodeCPUs)
    }

    /// Parses a `KTASK_NODE_MAX_THREADS` value: a whole number of busy helpers per node ≥ 1, or 0 for no
    /// limit from this variable (nil).
    package static func parse(nodeEnvironmentValue value: String) throws(KTask.Error) -> HelperCap? {
        guard let helpers = Int(value.trimmingCharacters(in: " \t\n")), helpers >= 0 else {
            throw .invalidEnvironmentVariable(name: nodeEnvironmentVariable, value: value,
                                              allowed: "a whole number of helper threads per node >= 1, or 0 for no limit")
        }
        return helpers == 0 ? nil : HelperCap(maxBusyHelpers: helpers, source: .nodeEnvironment)
    }

    /// Parses a `KTASK_MAX_THREADS` value: a whole number of threads ≥ 1 (the caller counts as one), or 0
    /// for no limit from this variable (nil).
    package static func parse(environmentValue value: String) throws(KTask.Error) -> HelperCap? {
        guard let threads = Int(value.trimmingCharacters(in: " \t\n")), threads >= 0 else {
            throw .invalidEnvironmentVariable(
                name: environmentVariable, value: value,
                allowed: "a whole number of threads >= 1 (the calling thread counts as one), or 0 for no limit")
        }
        return threads == 0 ? nil : HelperCap(maxBusyHelpers: threads - 1, source: .environment)
    }
}

/// Work a pool thread runs, erased to a context the pool never looks into and two C functions
/// (rayon's `JobRef`): the pool knows threads, caps and thread attributes, not jobs.
///
/// `run(context, argument)` does the thread's share (the argument tells the shares apart, e.g. a
/// job's participant number). `finished(context, argument)`, if any, is called after the thread is
/// free in the pool again, so that a job's caller hearing it is done finds the thread free for its next
/// job; it is the thread's last touch of the work. The work's owner keeps the context alive until then.
struct PoolWork: @unchecked Sendable {
    typealias Function = @convention(c) (UnsafeMutableRawPointer, Int) -> Void

    let context: UnsafeMutableRawPointer
    let run: Function
    let finished: Function?

    /// Whether both are the same work (the same context).
    func isSame(as other: PoolWork) -> Bool { context == other.context }

    /// Work that runs `body` once and owns it: the box is released when `body` returns, so nothing
    /// else needs to keep it alive. For an async job's caller share.
    static func once(_ body: @escaping @Sendable () -> Void) -> PoolWork {
        PoolWork(context: Unmanaged.passRetained(Once(body)).toOpaque(),
                 run: { context, _ in Unmanaged<Once>.fromOpaque(context).takeRetainedValue().body() },
                 finished: nil)
    }

    /// Releases a ``once(_:)`` work that no thread will run.
    func discardOnce() { Unmanaged<Once>.fromOpaque(context).release() }

    private final class Once {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
}

/// What a parked pool thread is woken to do, and how.
struct PoolAssignment {
    let work: PoolWork
    /// Passed to the work's functions (a job's participant number).
    let argument: Int
    /// The nice value to run the work at; nil keeps the thread's own.
    let nice: Int32?
    /// The node whose per-node cap this thread counts against; nil for none.
    let node: Int?
    /// The CPUs to run on; nil: the process's own affinity.
    let cpus: CPUList?
    /// Whether to run in the pool's idle cgroup (where the pool isolates helpers): only for helpers below
    /// their caller's priority.
    var idleCgroup = true
}
