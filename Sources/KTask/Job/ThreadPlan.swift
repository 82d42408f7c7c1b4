import Synchronization
import CKTaskShims

#if canImport(Glibc)
import Glibc
#endif

/// What a job covers: one range, or one range per node.
enum JobInput: Sendable {
    case range(Range<Int>)
    case perNode([KTask.NodeRange])
}

/// How many threads a job gets and where they run: the one place where every limit meets.
///
/// threads = min(useful threads for the size (``ChunkPlan/usefulThreads(size:minChunk:align:limit:)``),
/// `maxThreads`, the CPU budget (``SystemLimits``), the tuning profile's cap for the job's class);
/// then the helpers a lane may reserve are bounded by the pool's cap on busy helpers (API, else
/// `KTASK_MAX_THREADS` − 1, else 0 while the machine saves energy, else budget − 1) and, for a lane
/// pinned to a node, by the per-node cap (API, else `KTASK_NODE_MAX_THREADS`, else the node's usable CPUs).
struct ThreadPlan {
    /// The job's parts: its range, or its non-empty per-node ranges.
    let parts: [Range<Int>]
    let lanes: LanePlan
    /// The pool's cap on busy helpers in force for this job, and where it came from.
    let poolCap: HelperCap
    /// The per-node cap for each lane pinned to a node, by node id.
    let nodeCaps: [Int: Int]
    /// What bounded the planned thread count.
    let limit: KTask.ThreadLimit
    /// Where the job logs (made once per parallel job; the inline paths make none).
    let log: JobLog

    /// What a job turns out to be once validated and sized.
    enum Shape {
        /// Nothing to do.
        case noWork
        /// One call on the calling thread: one chunk or less, or one thread, and why.
        case inline(Range<Int>, KTask.ThreadLimit)
        /// Validated; the caller starts on it before it is sized (``CallerFirst``), with the limits read for
        /// validation, if any, to size the rest with (``sized(_:options:limits:)``).
        case callerFirst(Range<Int>, SystemLimits?)
        case parallel(ThreadPlan)
    }

    /// The plan in one line for a debug log: what a user asks when a job gets fewer threads than expected.
    func account(reserved helpers: Int, limit: KTask.ThreadLimit, options: KTask.Options) -> String {
        let items = parts.reduce(0) { $0 + $1.count }
        let nodes = lanes.lanes.map { $0.node.map(String.init) ?? "any" }
        return "\(items) items: \(helpers + 1) thread(s), limited by \(limit.rawValue); pool cap \(poolCap.description)"
            + (nodeCaps.isEmpty ? "" : ", node caps \(nodeCaps.sorted { $0.key < $1.key })")
            + "; lanes on nodes \(nodes); helpers at \(options.helperPriority)"
    }

    /// Validates the job's input against the machine (the same way whatever its size) and sizes it.
    @inline(__always)
    static func make(_ input: JobInput, options: KTask.Options) throws(KTask.Error) -> Shape {
        switch input {
        case .range(let range):
            guard range.lowerBound >= 0 else { throw .negativeRangeStart(range.lowerBound) }
            var limits: SystemLimits?
            if case .nodes(let ids) = options.placement {
                limits = SystemLimits.current(nodeCPUs: .always)
                _ = try LanePlan.resolve(ids, nodes: limits!.nodes)
            }
            guard !range.isEmpty else { return .noWork }
            // A job that fits in one chunk needs no other thread and no system call.
            if options.maxThreads == 1 { return .inline(range, .maxThreads) }
            if range.count <= max(options.minChunk, options.align) { return .inline(range, .tooLittleWork) }
            // Adaptive mode measures its own way, from the first claims of every thread. A range of few
            // chunks per thread is coarse work: the caller's first chunk alone could be a large share of the
            // job (16 items of 100 ms on 16 CPUs would take twice as long), so its helpers start at once.
            let chunks = ChunkPlan.usefulThreads(size: range.count, minChunk: options.minChunk, align: options.align, limit: Int.max)
            if options.adaptiveThreads == nil,
               chunks >= CallerFirst.minChunksPerThread * min(options.maxThreads ?? Int.max, CallerFirst.onlineCPUs) {
                // A tuning profile that cannot be read is refused before any chunk runs, as on every path.
                if let workClass = options.workClass { _ = try KTask.TuningProfile.threadCap(for: workClass) }
                return .callerFirst(range, limits)
            }
            return try sized(range, options: options, limits: limits)
        case .perNode(let ranges):
            var seen = Set<Int>()
            for part in ranges {
                guard part.range.lowerBound >= 0 else { throw .negativeRangeStart(part.range.lowerBound) }
                guard seen.insert(part.node).inserted else { throw .duplicateNode(part.node) }
            }
            let system = SystemLimits.current(nodeCPUs: .always)
            _ = try LanePlan.resolve(ranges.map(\.node), nodes: system.nodes)
            let work = ranges.filter { !$0.range.isEmpty }
            guard !work.isEmpty else { return .noWork }
            let useful = work.map { part in
                (node: part.node, usefulThreads: ChunkPlan.usefulThreads(size: part.range.count, minChunk: options.minChunk,
                                                                           align: options.align, limit: Int.max))
            }
            let (limit, reason) = try threadLimit(options, system)
            let lanes = try LanePlan.perNode(useful, threadLimit: limit, callerCPU: Int(CKTask_sched_getcpu()), nodes: system.nodes)
            let wanted = useful.reduce(0) { $0 + $1.usefulThreads }
            let bound: KTask.ThreadLimit = lanes.helpers + 1 >= wanted ? .tooLittleWork : lanes.helpers + 1 >= limit ? reason : .nodeCap
            return .parallel(try ThreadPlan(parts: work.map(\.range), lanes: lanes, system: system, options: options, limit: bound))
        }
    }

    /// Sizes a validated single-range job of more than one chunk: the thread count, its limit and the lanes.
    static func sized(_ range: Range<Int>, options: KTask.Options, limits: SystemLimits?) throws(KTask.Error) -> Shape {
        let system = limits ?? SystemLimits.current(nodeCPUs: options.placement == .anywhere ? .never : .ifSeveralNodes)
        let (limit, reason) = try threadLimit(options, system)
        let useful = ChunkPlan.usefulThreads(size: range.count, minChunk: options.minChunk, align: options.align, limit: Int.max)
        let threads = min(useful, limit)
        let bound: KTask.ThreadLimit = useful < limit ? .tooLittleWork : reason
        if threads == 1 { return .inline(range, bound) }
        let lanes = try LanePlan.single(placement: options.placement, threads: threads,
                                        callerCPU: Int(CKTask_sched_getcpu()), nodes: system.nodes)
        // A node placement may leave fewer helpers than threads − 1 (the nodes' CPUs).
        let placed: KTask.ThreadLimit = lanes.helpers < threads - 1 ? .nodeCap : bound
        return .parallel(try ThreadPlan(parts: [range], lanes: lanes, system: system, options: options, limit: placed))
    }

    private init(parts: [Range<Int>], lanes: LanePlan, system: SystemLimits, options: KTask.Options, limit: KTask.ThreadLimit) throws(KTask.Error) {
        self.parts = parts
        self.lanes = lanes
        self.limit = limit
        let pool = options.pool
        log = JobLog(options)
        poolCap = try pool.cap(cpuBudget: system.budget, energyRestricted: system.energyRestricted, log: log)
        var nodeCaps: [Int: Int] = [:]
        for lane in lanes.lanes where lane.helpers > 0 {
            guard let node = lane.node else { continue }
            let usable = system.nodes.first { $0.id == node }?.cpus.count ?? 1
            nodeCaps[node] = try pool.nodeCap(usableCPUs: usable, log: log).maxBusyHelpers
        }
        self.nodeCaps = nodeCaps
    }

    /// The most threads a job may use: its own `maxThreads`, the CPU budget, and the tuning profile's
    /// cap for its class of work; and which of them binds.
    static func threadLimit(_ options: KTask.Options, _ system: SystemLimits) throws(KTask.Error) -> (Int, KTask.ThreadLimit) {
        var limit = (system.budget, KTask.ThreadLimit.cpuBudget)
        if let maxThreads = options.maxThreads, maxThreads < limit.0 { limit = (maxThreads, .maxThreads) }
        if let workClass = options.workClass, let cap = try KTask.TuningProfile.threadCap(for: workClass), cap < limit.0 {
            limit = (cap, .tuningProfile)
        }
        return limit
    }

    /// Why the job got `got` helpers (of the plan's); `refusedBy`: what refused the helpers the pool had
    /// (machine-wide slots, jobserver tokens).
    func limit(reserving got: Int, refusedBy: KTask.ThreadLimit? = nil) -> KTask.ThreadLimit {
        guard got < lanes.helpers else { return limit }
        if poolCap.maxBusyHelpers < lanes.helpers {
            switch poolCap.source {
            case .energy: return .energySaving
            case .environment: return .environment
            case .api: return .poolCap
            case .cpuBudget, .nodeCPUs, .nodeEnvironment: return .cpuBudget
            }
        }
        if lanes.lanes.contains(where: { lane in lane.node.flatMap { nodeCaps[$0] }.map { $0 < lane.helpers } ?? false }) {
            return .nodeCap
        }
        return refusedBy ?? .helpersBusy
    }

    /// One lane's helpers, set aside in the pool.
    struct LaneReservation {
        let lane: LanePlan.Lane
        let reservation: KTask.Pool.Reservation
    }

    /// Reserves each lane's helpers without waiting, within the pool's and the nodes' caps; and what refused
    /// helpers the pool had (machine-wide slots, jobserver tokens), if anything did.
    func reserve(in pool: KTask.Pool) -> (lanes: [LaneReservation], refusedBy: KTask.ThreadLimit?) {
        var reserved: [LaneReservation] = []
        var refusedBy: KTask.ThreadLimit?
        for lane in lanes.lanes where lane.helpers > 0 {
            let nodeCap = lane.node.flatMap { nodeCaps[$0] } ?? Int.max
            let reservation = pool.reserve(upTo: lane.helpers, cap: poolCap.maxBusyHelpers, node: lane.node, nodeCap: nodeCap)
            refusedBy = refusedBy ?? reservation.refusedBy
            if reservation.count > 0 { reserved.append(LaneReservation(lane: lane, reservation: reservation)) }
        }
        return (reserved, refusedBy)
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
    package static let environmentVariable = "KTASK_MAX_THREADS"
    /// The environment variable that caps busy helpers on any one node, for jobs placed on nodes.
    package static let nodeEnvironmentVariable = "KTASK_NODE_MAX_THREADS"

    /// The variables as this process started with them: read once, like libgomp reads OMP_NUM_THREADS.
    /// A malformed value is ignored, with one warning for the process (the `ktask` tool refuses it).
    private static let environmentCap = readEnvironment(environmentVariable, parse(environmentValue:))
    private static let nodeEnvironmentCap = readEnvironment(nodeEnvironmentVariable, parse(nodeEnvironmentValue:))
    /// Set once the malformed variables were reported: one warning per process, to the first job's logger.
    private static let warnedEnvironment = Atomic<Bool>(false)

    private static func readEnvironment(_ name: String, _ parse: (String) throws(KTask.Error) -> HelperCap?) -> Result<HelperCap?, KTask.Error> {
        guard let raw = getenv(name) else { return .success(nil) }
        return Result { () throws(KTask.Error) in try parse(String(cString: raw)) }
    }

    /// The variables' caps; a malformed one is nil, after one warning for the process (to `log`).
    static func environment(_ log: JobLog) -> (cap: HelperCap?, nodeCap: HelperCap?) {
        func valid(_ result: Result<HelperCap?, KTask.Error>) -> HelperCap? {
            switch result {
            case .success(let cap): return cap
            case .failure(let error):
                if !warnedEnvironment.exchange(true, ordering: .relaxed) { log.warning("\(error.description); the variable is ignored") }
                return nil
            }
        }
        return (valid(environmentCap), valid(nodeEnvironmentCap))
    }

    /// Throws for a malformed `KTASK_MAX_THREADS` or `KTASK_NODE_MAX_THREADS` (the `ktask` tool refuses them
    /// before it runs; the library ignores them).
    package static func validateEnvironment() throws(KTask.Error) {
        if let raw = getenv(environmentVariable) { _ = try parse(environmentValue: String(cString: raw)) }
        if let raw = getenv(nodeEnvironmentVariable) { _ = try parse(nodeEnvironmentValue: String(cString: raw)) }
    }

    /// The pool cap in force: one set by API, else `KTASK_MAX_THREADS`, else none while the machine
    /// saves energy, else the CPU budget − 1.
    package static func resolve(apiCap: Int?, cpuBudget: Int, energyRestricted: Bool, log: JobLog = JobLog(logger: nil)) throws(KTask.Error) -> HelperCap {
        if let apiCap { return HelperCap(maxBusyHelpers: apiCap, source: .api) }
        if let cap = environment(log).cap { return cap }
        if energyRestricted { return HelperCap(maxBusyHelpers: 0, source: .energy) }
        return HelperCap(maxBusyHelpers: max(0, cpuBudget - 1), source: .cpuBudget)
    }

    /// The per-node cap in force: one set by API, else `KTASK_NODE_MAX_THREADS`, else the node's usable CPUs.
    package static func resolveNode(apiCap: Int?, usableCPUs: Int, log: JobLog = JobLog(logger: nil)) throws(KTask.Error) -> HelperCap {
        if let apiCap { return HelperCap(maxBusyHelpers: apiCap, source: .api) }
        if let cap = environment(log).nodeCap { return cap }
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

/// How one job's threads are spread: for each lane (a node, or anywhere), how many helpers, pinned to
/// which CPUs, starting on which part of the job. Pure: computed from the topology and limits.
struct LanePlan: Equatable {
    struct Lane: Equatable {
        /// The node the lane's helpers count against (per-node caps); nil for an unpinned lane.
        let node: Int?
        /// The CPUs its helpers are pinned to; nil: not pinned.
        let cpus: CPUList?
        /// Helpers wanted on this lane.
        let helpers: Int
        /// The part of the job (its range, for a per-node job) the lane's helpers start on.
        let part: Int
    }

    let lanes: [Lane]
    /// The part the calling thread starts on.
    let callerPart: Int

    var helpers: Int { lanes.reduce(0) { $0 + $1.helpers } }

    /// Spreads a single-range job. `threads` is already bounded by maxThreads, the budget and the
    /// useful thread count; a node placement bounds it further by the nodes' usable CPUs.
    static func single(placement: KTask.Placement, threads: Int, callerCPU: Int, nodes: [NodeCPUs]) throws(KTask.Error) -> LanePlan {
        // The caller's node is a node with CPUs of its own (a memory-only node's serving CPUs are another's).
        let usableNodes = nodes.filter { !$0.cpus.isEmpty && !$0.memoryOnly }
        switch placement {
        case .anywhere:
            return LanePlan(lanes: [Lane(node: nil, cpus: nil, helpers: threads - 1, part: 0)], callerPart: 0)
        case .callerNode:
            guard usableNodes.count > 1, let home = usableNodes.first(where: { $0.cpus.contains(callerCPU) }) else {
                return try single(placement: .anywhere, threads: threads, callerCPU: callerCPU, nodes: nodes)
            }
            let helpers = min(threads, home.cpus.count) - 1
            return LanePlan(lanes: [Lane(node: home.id, cpus: home.cpus, helpers: helpers, part: 0)], callerPart: 0)
        case .nodes(let ids):
            let chosen = try resolve(ids, nodes: nodes)
            var capacity = chosen.map { node in node.cpus.count - (node.cpus.contains(callerCPU) ? 1 : 0) }
            let helpers = spread(threads - 1, over: &capacity)
            let lanes = chosen.indices.map { Lane(node: chosen[$0].id, cpus: chosen[$0].cpus, helpers: helpers[$0], part: 0) }
            return LanePlan(lanes: lanes.filter { $0.helpers > 0 }, callerPart: 0)
        }
    }

    /// Spreads a job with one range per node: each node gets up to its usable CPUs (and the useful
    /// threads for its range), the caller counting on its own node; `threadLimit` bounds the total.
    static func perNode(_ parts: [(node: Int, usefulThreads: Int)], threadLimit: Int, callerCPU: Int,
                        nodes: [NodeCPUs]) throws(KTask.Error) -> LanePlan {
        let chosen = try resolve(parts.map(\.node), nodes: nodes)
        let callerPart = chosen.firstIndex { $0.cpus.contains(callerCPU) } ?? 0
        var capacity = parts.indices.map { index in
            min(chosen[index].cpus.count, parts[index].usefulThreads) - (index == callerPart ? 1 : 0)
        }
        capacity = capacity.map { max(0, $0) }
        let helpers = spread(threadLimit - 1, over: &capacity)
        let lanes = parts.indices.map { Lane(node: chosen[$0].id, cpus: chosen[$0].cpus, helpers: helpers[$0], part: $0) }
        return LanePlan(lanes: lanes, callerPart: callerPart)
    }

    /// The nodes named, each with usable CPUs; a typed error for an unknown or CPU-less one.
    static func resolve(_ ids: [Int], nodes: [NodeCPUs]) throws(KTask.Error) -> [NodeCPUs] {
        guard !ids.isEmpty else { throw .noNodes }
        var result: [NodeCPUs] = []
        for id in ids {
            guard let node = nodes.first(where: { $0.id == id }) else {
                throw .unknownNode(id, available: nodes.map(\.id))
            }
            guard !node.cpus.isEmpty else { throw .nodeWithoutUsableCPUs(id) }
            result.append(node)
        }
        return result
    }

    /// Hands out `count` helpers one at a time to the lane with the most room left (ties: the first),
    /// so that they follow each node's share of CPUs.
    static func spread(_ count: Int, over capacity: inout [Int]) -> [Int] {
        var given = [Int](repeating: 0, count: capacity.count)
        for _ in 0..<max(0, count) {
            guard let index = capacity.indices.max(by: { capacity[$0] < capacity[$1] || (capacity[$0] == capacity[$1] && $0 > $1) }),
                  capacity[index] > 0
            else { break }
            given[index] += 1
            capacity[index] -= 1
        }
        return given
    }
}
