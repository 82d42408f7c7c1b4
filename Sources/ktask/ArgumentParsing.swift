import KTask
import Foundation
import ArgumentParser
import KTaskWorkloads

/// A comma-separated list of thread counts, each in 1...4096: "1,2,4".
struct ThreadCounts {
    let counts: [Int]

    static func parse(_ argument: String) throws -> ThreadCounts {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false)
        let counts = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, counts.count == parts.count, counts.allSatisfy({ $0 >= 1 && $0 <= 4096 }) else {
            throw ValidationError("allowed: comma-separated thread counts, each 1 to 4096 (e.g. 1,2,4)")
        }
        return ThreadCounts(counts: counts)
    }
}

/// A size: a whole number ≥ 1 with an optional binary suffix K, M, G or T (e.g. 6G = 6 × 2³⁰).
struct SizeArgument {
    let value: Int
    /// The largest size accepted: 1 PiB, beyond what any machine maps (x86-64 user space is 128 TiB), so that
    /// page and item arithmetic on it can never overflow.
    static let largest = 1 << 50

    init(value: Int) { self.value = value }

    static func parse(_ argument: String) throws -> SizeArgument {
        guard let size = SizeArgument(argument: argument) else {
            throw ValidationError("allowed: a whole number from 1 to 1P, optionally with a K, M, G or T suffix (powers of 1024)")
        }
        return size
    }

    init?(argument: String) {
        let multipliers: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = Substring(argument.uppercased())
        var multiplier = 1
        if let last = digits.last, let factor = multipliers[last] {
            multiplier = factor
            digits = digits.dropLast()
        }
        guard let number = Int(digits), number >= 1 else { return nil }
        let (value, overflow) = number.multipliedReportingOverflow(by: multiplier)
        guard !overflow, value <= Self.largest else { return nil }
        self.value = value
    }
}


/// `--nodes`: "local", "any", or comma-separated node ids.
/// `--placement`: caller (the caller's node, then the nearest), caller-only, any, or nodes:0,1.
func parsePlacement(_ argument: String) throws -> KTask.Placement {
    switch argument {
    case "caller": return .callerNode
    case "caller-only": return .callerNodeOnly
    case "any": return .anywhere
    default:
        let allowed = "allowed: caller, caller-only, any, or nodes: and distinct node ids such as nodes:0,1"
        guard argument.hasPrefix("nodes:") else { throw ValidationError(allowed) }
        let parts = argument.dropFirst("nodes:".count).split(separator: ",", omittingEmptySubsequences: false)
        let ids = parts.compactMap { Int($0) }
        guard !parts.isEmpty, ids.count == parts.count, ids.allSatisfy({ $0 >= 0 }), Set(ids).count == ids.count else {
            throw ValidationError(allowed)
        }
        return .nodes(ids)
    }
}

func parseNodeChoice(_ argument: String) throws -> NodeChoice {
    switch argument {
    case "local": return .local
    case "any": return .any
    default:
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false)
        let ids = parts.compactMap { Int($0) }
        guard !parts.isEmpty, ids.count == parts.count, ids.allSatisfy({ $0 >= 0 }), Set(ids).count == ids.count else {
            throw ValidationError("allowed: local, any, or distinct node ids such as 0,1")
        }
        return .list(ids)
    }
}

extension WorkloadKind {
    /// Every accepted `--workload`, with what it does.
    static let help: ArgumentHelp = """
        The workload: prefault (fault in fresh memory, as a VM start does), init (initialise page descriptors, \
        as boot does), compute (a CPU-bound hash), or rate-limited (a test workload whose throughput is capped \
        at a number of threads).
        """
}

extension KTask.PageMode: ExpressibleByArgument {}

/// `--helper-priority`: `lowest`, `caller`, or a nice value in -20...19.
func parseHelperPriority(_ argument: String) throws -> KTask.HelperPriority {
    switch argument {
    case "lowest": return .lowest
    case "caller": return .inheritCaller
    default:
        guard let nice = Int(argument), (-20...19).contains(nice) else {
            throw ValidationError("allowed: lowest (nice 19), caller (the calling thread's nice), or a nice value from -20 to 19")
        }
        return .nice(nice)
    }
}
