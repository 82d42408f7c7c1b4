import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A process-wide pool of helper pthreads, and the cap on how many of them may be busy at once.
///
/// Threads are started on demand, park (using no CPU) when idle, and retire after `idleTimeout`
/// without work. Every job that names a pool shares its cap: a job takes the free helpers there are
/// and never waits for one; its calling thread does the rest. Helper threads are named
/// `NAME/N` (`ktask/N` for the shared pool) so that `top -H` and `ps -L` show them.
public final class KTaskPool: @unchecked Sendable {
    /// The pool every job uses unless it names another. Cap: what ``setMaxBusyHelpers(_:)`` set, else
    /// `KTASK_MAX_THREADS` − 1, else 0 while the machine saves energy, else the CPU budget − 1.
    public static let shared = KTaskPool(validatedName: "ktask", maxBusyHelpers: nil, idleTimeout: .seconds(10))

    /// Stand-in callers for async jobs: each runs the caller's share at the caller's priority. Not capped:
    /// there is one per async job in flight, as there would be one blocked caller per sync job.
    static let asyncCallers = KTaskPool(validatedName: "ktask-a", maxBusyHelpers: Int.max, idleTimeout: .seconds(10),
                                        isolatesHelpers: false)

    static let logger = Logger(label: "ktask.pool")

    let name: String
    let idleTimeoutNanoseconds: Int64
    /// Whether its threads go into the helpers' idle cgroup (``HelperIsolation``); not for stand-ins
    /// that run a caller's own share.
    let isolatesHelpers: Bool
    /// Guards every mutable field below and each thread's assignment.
    let lock = PThreadMutex()
    private var idle: [HelperThread] = []
    private var busy = 0
    /// Busy helpers per node, for jobs placed on nodes.
    private var busyByNode: [Int: Int] = [:]
    private var live = 0
    private var nextThreadID = 1
    /// The cap set by API (−1: none, use the environment or the CPU count).
    private let capOverride: Atomic<Int>
    /// The per-node cap set by API (−1: none, use `KTASK_NODE_MAX_THREADS` or the node's usable CPUs).
    private let nodeCapOverride = Atomic<Int>(-1)

    /// Creates a separate pool, with its own threads and cap.
    /// - Parameters:
    ///   - name: thread-name prefix (threads are named `name/N`; Linux keeps 15 bytes of a name).
    ///   - maxBusyHelpers: the cap on busy helpers; nil: `KTASK_MAX_THREADS` − 1, else 0 while the machine
    ///     saves energy, else the CPU budget − 1.
    ///   - idleTimeout: how long a helper stays parked without work before it exits.
    ///   - isolateHelpers: put helper threads in the idle child cgroup where the process may
    ///     (``HelperIsolation``), so that they take only CPU time no other group wants.
    public convenience init(name: String = "ktask", maxBusyHelpers: Int? = nil, idleTimeout: Duration = .seconds(10),
                            isolateHelpers: Bool = true) throws(KTaskError) {
        if let maxBusyHelpers, maxBusyHelpers < 0 { throw .invalidHelperCap(maxBusyHelpers) }
        guard idleTimeout > .zero else { throw .invalidIdleTimeout(idleTimeout) }
        self.init(validatedName: name, maxBusyHelpers: maxBusyHelpers, idleTimeout: idleTimeout, isolatesHelpers: isolateHelpers)
    }

    private init(validatedName name: String, maxBusyHelpers: Int?, idleTimeout: Duration, isolatesHelpers: Bool = true) {
        self.name = name
        self.isolatesHelpers = isolatesHelpers
        let (seconds, attoseconds) = idleTimeout.components
        self.idleTimeoutNanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        self.capOverride = Atomic(maxBusyHelpers ?? -1)
    }

    /// Sets the cap on busy helpers for every job that uses this pool (nil: back to the default).
    /// Jobs already running keep the helpers they have.
    public func setMaxBusyHelpers(_ cap: Int?) throws(KTaskError) {
        if let cap, cap < 0 { throw .invalidHelperCap(cap) }
        capOverride.store(cap ?? -1, ordering: .relaxed)
    }

    /// The cap in force for jobs on a machine with this CPU budget and energy state.
    public func cap(cpuBudget: Int, energyRestricted: Bool) throws(KTaskError) -> HelperCap {
        let override = capOverride.load(ordering: .relaxed)
        return try HelperCap.resolve(apiCap: override >= 0 ? override : nil, cpuBudget: cpuBudget,
                                     energyRestricted: energyRestricted)
    }

    /// Sets the cap on busy helpers on any one node, for jobs placed on nodes (nil: back to the default,
    /// `KTASK_NODE_MAX_THREADS` or the node's usable CPUs).
    public func setMaxBusyHelpersPerNode(_ cap: Int?) throws(KTaskError) {
        if let cap, cap < 0 { throw .invalidHelperCap(cap) }
        nodeCapOverride.store(cap ?? -1, ordering: .relaxed)
    }

    /// The per-node cap in force for a node with `usableCPUs` CPUs the process may use.
    public func nodeCap(usableCPUs: Int) throws(KTaskError) -> HelperCap {
        let override = nodeCapOverride.load(ordering: .relaxed)
        if override >= 0 { return HelperCap(maxBusyHelpers: override, source: .api) }
        if let raw = getenv(HelperCap.nodeEnvironmentVariable) {
            return try HelperCap.parse(nodeEnvironmentValue: String(cString: raw))
        }
        return HelperCap(maxBusyHelpers: usableCPUs, source: .nodeCPUs)
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

    public var state: State {
        lock.withLock { State(liveThreads: live, idleThreads: idle.count, busyHelpers: busy) }
    }

    // MARK: Handing out helpers

    /// Helpers set aside for one job: parked threads to wake and how many to start.
    struct Reservation {
        var parked: [HelperThread]
        var toStart: Range<Int>
        var node: Int?
        var count: Int { parked.count + toStart.count }

        /// The reservation as reservations of one helper each, to dispatch one at a time.
        func singles() -> [Reservation] {
            parked.map { Reservation(parked: [$0], toStart: 0..<0, node: node) }
                + toStart.map { Reservation(parked: [], toStart: $0..<$0 + 1, node: node) }
        }
    }

    /// Reserves up to `wanted` helpers without waiting, so that busy helpers never exceed `cap`, nor
    /// `nodeCap` on `node`.
    func reserve(upTo wanted: Int, cap: Int, node: Int? = nil, nodeCap: Int = Int.max) -> Reservation {
        guard wanted > 0 else { return Reservation(parked: [], toStart: 0..<0, node: node) }
        return lock.withLock {
            var granted = max(0, min(wanted, cap - busy))
            if let node {
                granted = max(0, min(granted, nodeCap - busyByNode[node, default: 0]))
                busyByNode[node, default: 0] += granted
            }
            busy += granted
            let reused = min(granted, idle.count)
            let parked = Array(idle.suffix(reused))
            idle.removeLast(reused)
            for helper in parked { helper.reserved = true }
            let firstNew = nextThreadID
            nextThreadID += granted - reused
            live += granted - reused
            return Reservation(parked: parked, toStart: firstNew..<nextThreadID, node: node)
        }
    }

    /// Gives every reserved helper `work`, with slots firstSlot, firstSlot + 1, ...; returns the helpers
    /// that were given it (a thread the system refuses to create is given back to the caps).
    func dispatch(_ reservation: Reservation, work: PoolWork, firstSlot: Int = 1, part: Int = 0, nice: Int32?,
                  cpus: CPUList? = nil) -> [HelperThread] {
        var dispatched = reservation.parked
        func assignment(_ index: Int) -> PoolAssignment {
            PoolAssignment(work: work, slot: firstSlot + index, part: part, nice: nice, node: reservation.node, cpus: cpus)
        }
        if !dispatched.isEmpty {
            lock.withLock {
                for (index, helper) in dispatched.enumerated() {
                    helper.assignment = assignment(index)
                    helper.wake.signal()
                }
            }
        }
        for id in reservation.toStart {
            let helper = HelperThread(id: id, pool: self, assignment: assignment(dispatched.count))
            if helper.start() {
                dispatched.append(helper)
            } else {
                lock.withLock {
                    releaseBusyLocked(node: reservation.node)
                    live -= 1
                }
            }
        }
        return dispatched
    }

    /// Gives back helpers reserved but never dispatched: they count as free again.
    func cancel(_ reservation: Reservation) {
        guard reservation.count > 0 else { return }
        lock.withLock {
            for _ in 0..<reservation.count { releaseBusyLocked(node: reservation.node) }
            for helper in reservation.parked {
                helper.reserved = false
                idle.append(helper)
            }
            live -= reservation.toStart.count
        }
    }

    private func releaseBusyLocked(node: Int?) {
        busy -= 1
        if let node { busyByNode[node, default: 1] -= 1 }
    }

    /// Takes back the assignments of `work` that `helpers` have not picked up yet, so that a caller who
    /// ran out of chunks need not wait for a helper still waking up only to find nothing left. Returns,
    /// by position in `helpers`, the thread id of each helper that did pick its assignment up (joined),
    /// else nil.
    ///
    /// A helper that joined may already be done and carry another job's assignment: that one is not
    /// ours to take back (taking it would make the other job wait for a helper that never comes).
    func revokeUnstarted(_ helpers: [HelperThread], of work: PoolWork) -> [Int32?] {
        lock.withLock {
            helpers.map { helper in
                guard let assignment = helper.assignment, assignment.work.isSame(as: work) else { return helper.tid }
                helper.assignment = nil
                helper.reserved = false
                releaseBusyLocked(node: assignment.node)
                idle.append(helper)
                return nil
            }
        }
    }

    /// Called by a helper, with the lock held, when its work is done: it is free and parked again.
    func helperFinishedLocked(_ helper: HelperThread, node: Int?) {
        releaseBusyLocked(node: node)
        idle.append(helper)
    }

    /// Called by a helper, with the lock held, when its idle timeout passed: it exits.
    func retireLocked(_ helper: HelperThread) {
        if let index = idle.firstIndex(where: { $0 === helper }) { idle.remove(at: index) }
        live -= 1
    }
}
