import ArgumentParser
import Foundation
import KTask

/// `ktask info`: the CPUs this process may use and why, the helper cap, the pool's state.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show the CPUs ktask may use and why, the cap on helper threads, and the pool's state.")

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    func run() throws {
        let cpus = UsableCPUs.current()
        let pool = KTaskPool.shared
        let cap = try pool.cap(usableCPUs: cpus.cpus.count)
        let info = MachineInfo(cpus: cpus, cap: cap, pool: pool.state)
        switch format {
        case .table: print(info.table, terminator: "")
        case .json: print(try info.json())
        }
    }
}

/// What `ktask info` reports.
struct MachineInfo {
    let cpus: UsableCPUs
    let cap: HelperCap
    let pool: KTaskPool.State

    var table: String {
        var lines: [String] = []
        lines.append("usable CPUs: \(cpus.cpus) (\(cpus.cpus.count)) = online ∩ affinity")
        lines.append("  online:   \(cpus.online.map { "\($0)" } ?? "unknown") (/sys/devices/system/cpu/online)")
        lines.append("  affinity: \(cpus.affinity.map { "\($0)" } ?? "unknown") (sched_getaffinity)")
        lines.append("helper cap: \(cap.maxBusyHelpers) busy helper(s) across all jobs (\(cap.source.rawValue))")
        lines.append("threads per job: up to \(min(cpus.cpus.count, cap.maxBusyHelpers + 1)) (the caller and its helpers)")
        lines.append("helper priority: nice 19 (default)")
        lines.append("pool: \(pool.liveThreads) thread(s) live, \(pool.idleThreads) parked, \(pool.busyHelpers) busy")
        return lines.joined(separator: "\n") + "\n"
    }

    struct JSON: Encodable {
        struct Cap: Encodable { let max_busy_helpers: Int; let source: String }
        struct Pool: Encodable { let live_threads: Int; let idle_threads: Int; let busy_helpers: Int }
        let usable_cpus: [Int]
        let cpu_count: Int
        let online: [Int]?
        let affinity: [Int]?
        let helper_cap: Cap
        let pool: Pool
    }

    func json() throws -> String {
        let value = JSON(
            usable_cpus: cpus.cpus.cpus, cpu_count: cpus.cpus.count, online: cpus.online?.cpus,
            affinity: cpus.affinity?.cpus,
            helper_cap: .init(max_busy_helpers: cap.maxBusyHelpers, source: cap.source.rawValue),
            pool: .init(live_threads: pool.liveThreads, idle_threads: pool.idleThreads, busy_helpers: pool.busyHelpers))
        return try encodeJSON(value)
    }
}
