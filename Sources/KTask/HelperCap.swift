#if canImport(Glibc)
import Glibc
#endif

/// The process-wide cap on busy helper threads, and where it came from.
public struct HelperCap: Sendable, Equatable, CustomStringConvertible {
    /// Where a cap's value was set.
    public enum Source: String, Sendable {
        /// Usable CPUs − 1: with the calling thread, one thread per usable CPU.
        case usableCPUs = "usable CPUs - 1"
        /// `KTASK_MAX_THREADS` (threads per job, the caller included, so the helper cap is one less).
        case environment = "KTASK_MAX_THREADS"
        /// Set through ``KTaskPool/setMaxBusyHelpers(_:)`` or the pool's initialiser.
        case api = "API"
    }

    public let maxBusyHelpers: Int
    public let source: Source

    public var description: String { "\(maxBusyHelpers) busy helpers (\(source.rawValue))" }

    /// The environment variable that caps threads: like OMP_NUM_THREADS, it counts the caller.
    public static let environmentVariable = "KTASK_MAX_THREADS"

    /// The cap from `KTASK_MAX_THREADS` when set, else usable CPUs − 1.
    static func fromEnvironment(usableCPUs: Int) throws(KTaskError) -> HelperCap {
        guard let raw = getenv(environmentVariable) else {
            return HelperCap(maxBusyHelpers: max(0, usableCPUs - 1), source: .usableCPUs)
        }
        return try parse(environmentValue: String(cString: raw))
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
