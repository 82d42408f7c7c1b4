#if canImport(Glibc)
import Glibc
#endif

/// The process-wide cap on busy helper threads, and where it came from.
public struct HelperCap: Sendable, Equatable, CustomStringConvertible {
    /// Where a cap's value was set.
    public enum Source: String, Sendable {
        /// CPU budget − 1: with the calling thread, one thread per CPU the process may use.
        case cpuBudget = "CPU budget - 1"
        /// The machine saves energy (battery, low-power profile or governor): no helpers.
        case energy = "energy saving"
        /// `KTASK_MAX_THREADS` (threads per job, the caller included, so the helper cap is one less).
        case environment = "KTASK_MAX_THREADS"
        /// Set through ``KTaskPool/setMaxBusyHelpers(_:)`` or the pool's initialiser.
        case api = "API"
        /// A node's usable CPUs (the per-node default).
        case nodeCPUs = "node's usable CPUs"
        /// `KTASK_NODE_MAX_THREADS`: busy helpers on any one node.
        case nodeEnvironment = "KTASK_NODE_MAX_THREADS"
    }

    public let maxBusyHelpers: Int
    public let source: Source

    public var description: String { "\(maxBusyHelpers) busy helpers (\(source.rawValue))" }

    /// The environment variable that caps threads: like OMP_NUM_THREADS, it counts the caller.
    public static let environmentVariable = "KTASK_MAX_THREADS"

    /// The cap in force: one set by API, else `KTASK_MAX_THREADS`, else none while the machine saves
    /// energy, else the CPU budget − 1.
    public static func resolve(apiCap: Int?, cpuBudget: Int, energyRestricted: Bool) throws(KTaskError) -> HelperCap {
        if let apiCap { return HelperCap(maxBusyHelpers: apiCap, source: .api) }
        if let raw = getenv(environmentVariable) { return try parse(environmentValue: String(cString: raw)) }
        if energyRestricted { return HelperCap(maxBusyHelpers: 0, source: .energy) }
        return HelperCap(maxBusyHelpers: max(0, cpuBudget - 1), source: .cpuBudget)
    }

    /// The environment variable that caps busy helpers on any one node, for jobs placed on nodes.
    public static let nodeEnvironmentVariable = "KTASK_NODE_MAX_THREADS"

    /// Parses a `KTASK_NODE_MAX_THREADS` value: a whole number of helpers ≥ 0 per node.
    public static func parse(nodeEnvironmentValue value: String) throws(KTaskError) -> HelperCap {
        guard let helpers = Int(value.trimmingCharacters(in: " \t\n")), helpers >= 0 else {
            throw .invalidEnvironmentVariable(name: nodeEnvironmentVariable, value: value,
                                              allowed: "a whole number of helper threads per node >= 0")
        }
        return HelperCap(maxBusyHelpers: helpers, source: .nodeEnvironment)
    }

    /// Parses a `KTASK_MAX_THREADS` value: a whole number of threads ≥ 1.
    public static func parse(environmentValue value: String) throws(KTaskError) -> HelperCap {
        let trimmed = value.trimmingCharacters(in: " \t\n")
        guard let threads = Int(trimmed), threads >= 1 else {
            throw .invalidEnvironmentVariable(
                name: environmentVariable, value: value,
                allowed: "a whole number of threads >= 1 (the calling thread counts as one)")
        }
        return HelperCap(maxBusyHelpers: threads - 1, source: .environment)
    }
}
