import Synchronization

#if canImport(Glibc)
import Glibc
#endif

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
