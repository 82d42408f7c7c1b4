import CKTaskShims

/// What a job covers: one range, or one range per node.
enum JobInput: Sendable {
    case range(Range<Int>)
    case perNode([KTask.NodeRange])
}

/// How many threads a job gets and where they run, decided once per job (never per claim): every limit
/// narrows one count in a fixed order, and the last one that cut it is the answer to "why only N
/// threads?" (``KTask/Report/threadLimit``). The order:
///
/// 1. useful threads for the range (`minChunk`, `align`), and for a job the caller started alone, whether
///    its rest pays for a helper at all (``CallerFirst``, ``KTask/ThreadLimit/helperCost``);
/// 2. `maxThreads`; 3. the CPU budget (``SystemLimits``); 4. the tuning profile's cap for the job's class;
/// 5. energy saving (where no cap was set by API or `KTASK_MAX_THREADS`);
/// 6. the nodes' usable CPUs and the per-node cap, for lanes pinned to nodes;
/// 7. the pool's cap on busy helpers (API, else `KTASK_MAX_THREADS` − 1, else the budget − 1);
/// 8. reserving (``reserve(in:)``): helpers other jobs hold, then a machine-wide slot, then a make token;
///
/// then only what happens after the fact (``finished(adaptive:startFailures:threadsUsed:dispatched:)``):
/// adaptive mode stopping early, a thread the system would not start, the caller done before a helper came.
/// A new limit is one step here and one ``KTask/ThreadLimit`` case.
struct Admission {
    /// The job's parts: its range, or its non-empty per-node ranges.
    let parts: [Range<Int>]
    /// The helpers of each lane (a node, or anywhere): narrowed by steps 6-8.
    private(set) var lanes: LanePlan
    /// The last limit that cut the thread count.
    private(set) var limit: KTask.ThreadLimit
    /// What outside this process refused helpers the pool had (a slot, a token), even where a later cause
    /// is the ``limit``: ``KTask/Report/helpersRefusedBy``.
    private(set) var refusedBy: KTask.ThreadLimit?
    /// The pool's cap on busy helpers in force for this job, and where it came from.
    let poolCap: HelperCap
    /// The per-node cap for each lane pinned to a node, by node id.
    let nodeCaps: [Int: Int]
    /// Where the job logs (made once per parallel job; the inline paths make none).
    let log: JobLog

    /// Helpers reserved (step 8); nil before the reservation.
    private(set) var reservedHelpers: Int?

    /// Threads admitted, the caller included: as reserved once reserved, else as planned.
    var threads: Int { 1 + (reservedHelpers ?? lanes.helpers) }

    /// What a job turns out to be once validated and sized.
    enum Shape {
        /// Nothing to do.
        case noWork
        /// One call on the calling thread: one chunk or less, or one thread, and why.
        case inline(Range<Int>, KTask.ThreadLimit)
        /// Validated; the caller starts on it before it is sized (``CallerFirst``), with the limits read for
        /// validation, if any, to size the rest with (``sized(_:options:limits:)``).
        case callerFirst(Range<Int>, SystemLimits?)
        // Indirect: the inline paths copy a Shape of two words, not an admission's (~8 ns a job).
        indirect case parallel(Admission)
    }

    /// Steps 1-5: a thread count and the last limit that cut it.
    struct Count {
        private(set) var threads: Int
        private(set) var limit: KTask.ThreadLimit

        /// Step 1: the useful threads for the range.
        init(useful: Int) {
            threads = max(1, useful)
            limit = .tooLittleWork
        }

        /// Cuts the count to `cap` threads (at least 1) if that is fewer; `reason` is then the limit.
        mutating func narrow(to cap: Int?, _ reason: KTask.ThreadLimit) {
            guard let cap, cap < threads else { return }
            threads = max(1, cap)
            limit = reason
        }

        /// Steps 2-5 for a job on a machine with these limits and a pool cap from this source.
        mutating func narrow(options: KTask.Options, system: SystemLimits, poolCap: HelperCap) throws(KTask.Error) {
            narrow(to: options.maxThreads, .maxThreads)
            narrow(to: system.budget, .cpuBudget)
            if let workClass = options.workClass { narrow(to: try KTask.TuningProfile.threadCap(for: workClass), .tuningProfile) }
            if poolCap.source == .energy { narrow(to: 1, .energySaving) }
        }
    }

    /// The plan in one line for a debug log: what a user asks when a job gets fewer threads than expected.
    func account(options: KTask.Options) -> String {
        let items = parts.reduce(0) { $0 + $1.count }
        let nodes = lanes.lanes.map { $0.node.map(String.init) ?? "any" }
        return "\(items) items: \(threads) thread(s), limited by \(limit.rawValue); pool cap \(poolCap.description)"
            + (nodeCaps.isEmpty ? "" : ", node caps \(nodeCaps.sorted { $0.key < $1.key })")
            + (refusedBy.map { "; helpers refused by \($0.rawValue)" } ?? "")
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
            // In the admission's order: one chunk (useful threads) before maxThreads.
            if range.count <= max(options.minChunk, options.align) { return .inline(range, .tooLittleWork) }
            if options.maxThreads == 1 { return .inline(range, .maxThreads) }
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
            let log = JobLog(options)
            let poolCap = try options.pool.cap(cpuBudget: system.budget, energyRestricted: system.energyRestricted, log: log)
            var count = Count(useful: useful.reduce(0) { $0 + $1.usefulThreads })
            try count.narrow(options: options, system: system, poolCap: poolCap)
            let lanes = try LanePlan.perNode(useful, threadLimit: count.threads, callerCPU: Int(CKTask_sched_getcpu()), nodes: system.nodes)
            return .parallel(try Admission(parts: work.map(\.range), count: count, lanes: lanes, system: system, poolCap: poolCap,
                                           options: options, log: log))
        }
    }

    /// Sizes a validated single-range job of more than one chunk: the thread count, its limit and the lanes.
    static func sized(_ range: Range<Int>, options: KTask.Options, limits: SystemLimits?) throws(KTask.Error) -> Shape {
        let system = limits ?? SystemLimits.current(nodeCPUs: options.placement == .anywhere ? .never : .ifSeveralNodes)
        let log = JobLog(options)
        let poolCap = try options.pool.cap(cpuBudget: system.budget, energyRestricted: system.energyRestricted, log: log)
        var count = Count(useful: ChunkPlan.usefulThreads(size: range.count, minChunk: options.minChunk, align: options.align, limit: Int.max))
        try count.narrow(options: options, system: system, poolCap: poolCap)
        if count.threads == 1 { return .inline(range, count.limit) }
        // A job that spills past the caller's node fills each node up to its per-node cap.
        let lanes = try LanePlan.single(placement: options.placement, threads: count.threads,
                                        callerCPU: Int(CKTask_sched_getcpu()), nodes: system.nodes) { node in
            (try? options.pool.nodeCap(usableCPUs: node.cpus.count, log: log).maxBusyHelpers) ?? node.cpus.count
        }
        let admission = try Admission(parts: [range], count: count, lanes: lanes, system: system, poolCap: poolCap, options: options, log: log)
        return admission.lanes.helpers == 0 ? .inline(range, admission.limit) : .parallel(admission)
    }

    /// Steps 6 and 7: the lanes as placed (within the nodes' usable CPUs), then each pinned lane within its
    /// node's cap, then all of them within the pool's cap.
    private init(parts: [Range<Int>], count: Count, lanes placed: LanePlan, system: SystemLimits, poolCap: HelperCap,
                 options: KTask.Options, log: JobLog) throws(KTask.Error) {
        self.parts = parts
        self.poolCap = poolCap
        self.log = log
        var limit = count.limit
        var lanes = placed
        if lanes.helpers < count.threads - 1 { limit = .nodeCap }
        var nodeCaps: [Int: Int] = [:]
        for lane in lanes.lanes where lane.helpers > 0 {
            guard let node = lane.node else { continue }
            let usable = system.nodes.first { $0.id == node }?.cpus.count ?? 1
            nodeCaps[node] = try options.pool.nodeCap(usableCPUs: usable, log: log).maxBusyHelpers
        }
        if lanes.cap(node: { nodeCaps[$0] }) { limit = .nodeCap }
        if lanes.trim(toHelpers: poolCap.maxBusyHelpers) {
            switch poolCap.source {
            case .api: limit = .poolCap
            case .environment: limit = .environment
            case .energy: limit = .energySaving
            case .cpuBudget, .nodeCPUs, .nodeEnvironment: limit = .cpuBudget
            }
        }
        self.lanes = lanes
        self.nodeCaps = nodeCaps
        self.limit = limit
    }

    /// One lane's helpers, set aside in the pool.
    struct LaneReservation {
        let lane: LanePlan.Lane
        let reservation: KTask.Pool.Reservation
    }

    /// Step 8: reserves each lane's helpers without waiting, within the pool's and the nodes' caps less the
    /// helpers other jobs hold, each with a machine-wide slot and a make token where those are in use.
    /// What came up short is the limit: the last of helpers busy, slots, tokens that cut.
    mutating func reserve(in pool: KTask.Pool) -> [LaneReservation] {
        var reserved: [LaneReservation] = []
        for lane in lanes.lanes where lane.helpers > 0 {
            let nodeCap = lane.node.flatMap { nodeCaps[$0] } ?? Int.max
            let reservation = pool.reserve(upTo: lane.helpers, cap: poolCap.maxBusyHelpers, node: lane.node, nodeCap: nodeCap)
            refusedBy = refusedBy ?? reservation.refusedBy
            if reservation.count < lane.helpers { limit = reservation.refusedBy ?? .helpersBusy }
            if reservation.count > 0 { reserved.append(LaneReservation(lane: lane, reservation: reservation)) }
        }
        reservedHelpers = reserved.reduce(0) { $0 + $1.reservation.count }
        return reserved
    }

    /// The helpers reserved on each node they are pinned to (the report's ``KTask/Report/helpersPerNode``).
    /// nil where none is pinned.
    static func helpersPerNode(_ reserved: [LaneReservation]) -> [Int: Int]? {
        guard reserved.contains(where: { $0.lane.node != nil }) else { return nil }
        return reserved.reduce(into: [:]) { perNode, entry in
            if let node = entry.lane.node { perNode[node, default: 0] += entry.reservation.count }
        }
    }

    /// After the fact: adaptive mode settled below the helpers reserved, a helper's thread would not start,
    /// or the caller ran out of work before a dispatched helper joined.
    mutating func finished(adaptive: AdaptiveDriver?, startFailures: Int, threadsUsed: Int, dispatched: Int) {
        if adaptive?.stoppedEarly == true { limit = .adaptive }
        else if startFailures > 0 { limit = .threadStart }
        else if threadsUsed < 1 + dispatched { limit = .helpersNotNeeded }
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

    private(set) var lanes: [Lane]
    /// The part the calling thread starts on.
    let callerPart: Int
    /// Lanes in order of preference (the caller's node, then farther ones): a cut takes from the last first.
    var nearestFirst = false

    var helpers: Int { lanes.reduce(0) { $0 + $1.helpers } }

    /// Cuts each lane pinned to a node to that node's cap (`capOf`, nil: none); whether any was cut.
    mutating func cap(node capOf: (Int) -> Int?) -> Bool {
        var cut = false
        for index in lanes.indices {
            guard let node = lanes[index].node, let cap = capOf(node), cap < lanes[index].helpers else { continue }
            lanes[index] = Lane(node: node, cpus: lanes[index].cpus, helpers: max(0, cap), part: lanes[index].part)
            cut = true
        }
        return cut
    }

    /// Cuts the helpers to `total` in all, one at a time from the lane with the most (ties: the last), so
    /// that the lanes keep their shares; for lanes ``nearestFirst``, from the farthest, so that the caller's
    /// node stays full. Whether any was cut.
    mutating func trim(toHelpers total: Int) -> Bool {
        var excess = helpers - max(0, total)
        guard excess > 0 else { return false }
        if nearestFirst {
            for index in lanes.indices.reversed() where excess > 0 {
                let cut = min(excess, lanes[index].helpers)
                lanes[index] = Lane(node: lanes[index].node, cpus: lanes[index].cpus, helpers: lanes[index].helpers - cut, part: lanes[index].part)
                excess -= cut
            }
            return true
        }
        while excess > 0, let index = lanes.indices.max(by: { lanes[$0].helpers <= lanes[$1].helpers }), lanes[index].helpers > 0 {
            let lane = lanes[index]
            lanes[index] = Lane(node: lane.node, cpus: lane.cpus, helpers: lane.helpers - 1, part: lane.part)
            excess -= 1
        }
        return true
    }

    /// Spreads a single-range job. `threads` is already bounded by maxThreads, the budget and the
    /// useful thread count; a node placement bounds it further by the nodes' usable CPUs.
    /// `nodeCap`: the most helpers a node takes (its per-node cap, at most its CPUs), where a job spills.
    static func single(placement: KTask.Placement, threads: Int, callerCPU: Int, nodes: [NodeCPUs],
                       nodeCap: (NodeCPUs) -> Int = { $0.cpus.count }) throws(KTask.Error) -> LanePlan {
        // The caller's node is a node with CPUs of its own (a memory-only node's serving CPUs are another's).
        let usableNodes = nodes.filter { !$0.cpus.isEmpty && !$0.memoryOnly }
        switch placement {
        case .anywhere:
            return LanePlan(lanes: [Lane(node: nil, cpus: nil, helpers: threads - 1, part: 0)], callerPart: 0)
        case .callerNode, .callerNodeOnly:
            guard usableNodes.count > 1, let home = usableNodes.first(where: { $0.cpus.contains(callerCPU) }) else {
                return try single(placement: .anywhere, threads: threads, callerCPU: callerCPU, nodes: nodes)
            }
            guard placement == .callerNode else {
                let helpers = min(threads, home.cpus.count) - 1
                return LanePlan(lanes: [Lane(node: home.id, cpus: home.cpus, helpers: helpers, part: 0)], callerPart: 0)
            }
            // The caller's node up to its cap (the caller takes one of its CPUs), the rest elsewhere.
            let helpers = max(0, min(threads - 1, home.cpus.count - 1, nodeCap(home)))
            var lanes = [Lane(node: home.id, cpus: home.cpus, helpers: helpers, part: 0)]
            var left = threads - 1 - helpers
            // The rest spills to the other nodes, nearest first (the kernel's ktask queued work past a node's
            // cap to any node); nodes at one distance share by their CPUs. Unknown distances count as far.
            let others = usableNodes.filter { $0.id != home.id }
            let tiers = Dictionary(grouping: others) { home.distances[$0.id] ?? Int.max }.sorted { $0.key < $1.key }
            for (_, tier) in tiers where left > 0 {
                let ordered = tier.sorted { $0.id < $1.id }
                var capacity = ordered.map { max(0, min($0.cpus.count, nodeCap($0))) }
                let given = spread(left, over: &capacity)
                for (node, count) in zip(ordered, given) where count > 0 {
                    lanes.append(Lane(node: node.id, cpus: node.cpus, helpers: count, part: 0))
                    left -= count
                }
            }
            return LanePlan(lanes: lanes.filter { $0.helpers > 0 || $0.node == home.id }, callerPart: 0, nearestFirst: true)
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

/// Step 0 of the admission: the options themselves, the same way whatever the job's size.
extension KTask.Options {
    /// Throws the ``KTask/Error`` for the first field that is out of range.
    public func validate() throws(KTask.Error) {
        guard minChunk >= 1 else { throw .invalidMinChunk(minChunk) }
        guard align >= 1 else { throw .invalidAlign(align) }
        if let maxChunk, maxChunk < minChunk {
            throw .invalidParameter(name: "maxChunk", value: String(maxChunk), allowed: "at least minChunk (\(minChunk))")
        }
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
