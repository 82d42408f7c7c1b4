import ArgumentParser
import Foundation
import KTask

/// `ktask info`: the machine as ktask sees it, every limit with the file it came from.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show the CPUs ktask may use and why: nodes, limits, CPU budget, helper cap, energy state, pool.",
        discussion: """
            Reads sysfs and procfs under --root (or KTASK_SYSFS_ROOT), / by default; a snapshot's affinity comes \
            from its proc/self/status, else all CPUs. Shows the nodes with their usable CPUs and memory, offline \
            CPUs, every limit with the file it came from, the CPU budget, the helper cap and its source, the \
            energy state and why, the helpers' idle cgroup, the starvation guard in force, the tuning profile, \
            the machine-wide slots and their holders (pid, uid, user), make's jobserver, the pool's threads, every \
            environment variable ktask reads (its value or unset, environment or default, and what ktask made of \
            it), and every fallback taken.

            JSON (--format json): root, nodes (id, cpus, memory_bytes, memory_allowed, kind, serving_cpus, \
            serving_reason), allowed_memory_nodes (nodes, source), usable_cpus, offline_cpus, cpu_budget, \
            limits (kind, source, value), energy (restricted, reason), helper_cap (max_busy_helpers, source), \
            pool (live_threads, idle_threads, busy_helpers), helper_isolation (kind, detail), starvation_guard, \
            tuning_profile (path, classes: name -> max threads), machine_slots (folder, slots, held, holders, \
            holder_processes, access, trust, reason, jobserver), settings (name, value: null when unset, source: \
            environment or default, meaning, note), notes.
            """)

    @Option(help: ArgumentHelp("Read /sys and /proc under this folder (a machine snapshot).", valueName: "dir"))
    var root: String?

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    func run() throws {
        let rootPath = root ?? Settings.current.sysfsRoot.value ?? "/"
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: rootPath, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("--root \(rootPath) is not a folder; give a folder holding sys/ and proc/")
        }
        let systemRoot = SystemRoot(path: rootPath)
        let budget = CPUBudget.read(root: systemRoot)
        let energy = EnergyState.read(root: systemRoot)
        let pool = KTask.Pool.shared
        let cap = try pool.cap(cpuBudget: budget.budget, energyRestricted: energy.restricted)
        let info = MachineInfo(budget: budget, energy: energy, cap: cap, pool: pool.state, profile: try KTask.TuningProfile.inForce(),
                               isolation: systemRoot.isLive ? HelperIsolation.planned : nil,
                               starvationGuard: systemRoot.isLive ? KTask.StarvationGuard.inForce : nil,
                               slots: systemRoot.isLive ? SlotsStatus.read() : nil, settings: Settings.current.all)
        switch format {
        case .table: print(info.table, terminator: "")
        case .json: print(try info.json())
        }
    }
}

/// What `ktask info` reports.
struct MachineInfo {
    let budget: CPUBudget
    let energy: EnergyState
    let cap: HelperCap
    let pool: KTask.Pool.State
    /// The tuning profile jobs read (`ktask tune`), and where it is; nil: none.
    let profile: (path: String, profile: KTask.TuningProfile)?
    /// How helpers are kept out of other groups' way and from starving: this process only (nil for a snapshot).
    let isolation: HelperIsolation?
    let starvationGuard: KTask.StarvationGuard?
    /// The machine-wide slots (nil for a snapshot).
    var slots: SlotsStatus?
    /// Every environment variable ktask reads, as this process has it.
    var settings: [SettingSummary] = []

    var table: String {
        var lines: [String] = []
        lines.append("root: \(budget.root.isLive ? "/ (this machine)" : budget.root.path)")
        lines.append("NUMA nodes: \(budget.topology.nodes.count)")
        for (node, cpus) in budget.usableByNode {
            let memory = node.memoryBytes.map { String(format: "%.1f GiB", Double($0) / Double(1 << 30)) } ?? "unknown"
            let kind = budget.topology.memoryKind(of: node).map { " (\($0))" } ?? ""
            let allowed = budget.memoryAllowed(on: node.id) ? "" : ", memory not allowed"
            var line = "  node \(node.id): usable CPUs \(cpus.isEmpty ? "none" : "\(cpus) (\(cpus.count))"), memory \(memory)\(kind)\(allowed)"
            if node.cpus.isEmpty {
                let serving = budget.servingCPUs(of: node)
                line += ", served by CPUs \(serving.cpus.isEmpty ? "none" : serving.cpus.description) (\(serving.reason))"
            }
            lines.append(line)
        }
        if let allowed = budget.allowedMemoryNodes {
            lines.append("memory allowed on nodes: \(allowed) (\(budget.allowedMemorySource))")
        }
        lines.append("offline CPUs: \(budget.topology.offline.isEmpty ? "none" : budget.topology.offline.description)")
        lines.append("limits:")
        for limit in budget.limits { lines.append("  \(limit)") }
        lines.append("usable CPUs: \(budget.usable) (\(budget.usable.count)) = online ∩ affinity ∩ cpuset")
        let quota = budget.cgroup.quotaCPUCount.map { ", ⌈quota⌉ = \($0)" } ?? ", no quota"
        lines.append("CPU budget: \(budget.budget) thread(s) (\(budget.usable.count) usable CPUs\(quota))")
        lines.append("helper cap: \(cap.maxBusyHelpers) busy helper(s) across all jobs (\(cap.source.rawValue))")
        lines.append("energy: \(energy.restricted ? "saving, no helpers by default" : "not restricted"): \(energy.reason)")
        lines.append("helper priority: nice 19 (default)")
        if let isolation {
            let lifetime = isolation.kind == .niceOnly ? ""
                : access(isolation.detail, F_OK) == 0 ? " (exists; removed when the last process using it exits)"
                : " (created when a helper first runs; removed when the last process using it exits)"
            lines.append("helper isolation: \(isolation)\(lifetime)")
        }
        if let starvationGuard { lines.append("starvation guard: \(starvationGuard.rawValue) (for helpers at nice 19 under this caller)") }
        if let profile {
            let classes = profile.profile.classes.sorted { $0.key < $1.key }
                .map { "\($0.key) \($0.value.maxThreads) (measured on \($0.value.cpuBudget) CPUs)" }
            lines.append("tuning profile: \(profile.path): " + (classes.isEmpty ? "no classes" : classes.joined(separator: ", ")))
        } else {
            lines.append("tuning profile: none (\(KTask.TuningProfile.defaultPath ?? "no path"); `ktask tune` makes one)")
        }
        lines.append("pool: \(pool.liveThreads) thread(s) live, \(pool.idleThreads) parked, \(pool.busyHelpers) busy")
        if let slots { lines += slots.lines }
        lines.append("settings (read once per process):")
        for setting in settings {
            let value = setting.raw.map { "=\"\($0)\"" } ?? " unset"
            lines.append("  \(setting.name)\(value) (\(setting.source)): \(setting.meaning)" + (setting.note.map { "; note: \($0)" } ?? ""))
        }
        for note in budget.notes { lines.append("note: \(note)") }
        return lines.joined(separator: "\n") + "\n"
    }

    struct JSON: Encodable {
        struct Node: Encodable {
            let id: Int; let cpus: [Int]; let memory_bytes: Nullable<Int>; let memory_allowed: Bool; let kind: Nullable<String>
            let serving_cpus: [Int]; let serving_reason: String
        }
        struct MemoryNodes: Encodable { let nodes: Nullable<[Int]>; let source: String }
        struct Limit: Encodable { let kind: String; let source: String; let value: String }
        struct Energy: Encodable { let restricted: Bool; let reason: String }
        struct Cap: Encodable { let max_busy_helpers: Int; let source: String }
        struct Pool: Encodable { let live_threads: Int; let idle_threads: Int; let busy_helpers: Int }
        struct Isolation: Encodable { let kind: String; let detail: String }
        struct Profile: Encodable { let path: String; let classes: [String: Int] }
        var schema = jsonSchemaVersion
        let root: String
        let nodes: [Node]
        let allowed_memory_nodes: MemoryNodes
        let usable_cpus: [Int]
        let offline_cpus: [Int]
        let cpu_budget: Int
        let limits: [Limit]
        let energy: Energy
        let helper_cap: Cap
        let pool: Pool
        let helper_isolation: Nullable<Isolation>
        let starvation_guard: Nullable<String>
        let tuning_profile: Nullable<Profile>
        struct Holder: Encodable { let pid: Int; let uid: Nullable<Int>; let user: Nullable<String>; let slots: [Int] }
        struct Slots: Encodable {
            let folder: Nullable<String>; let slots: Int; let held: Int; let holders: [Int]; let holder_processes: [Holder]
            let access: Nullable<String>; let trust: String; let reason: String; let jobserver: String
        }
        let machine_slots: Nullable<Slots>
        struct Setting: Encodable { let name: String; let value: Nullable<String>; let source: String; let meaning: String; let note: Nullable<String> }
        let settings: [Setting]
        let notes: [String]
    }

    func json() throws -> String {
        let value = JSON(
            root: budget.root.isLive ? "/" : budget.root.path,
            nodes: budget.usableByNode.map { node, cpus in
                let serving = budget.servingCPUs(of: node)
                return .init(id: node.id, cpus: cpus.cpus, memory_bytes: Nullable(node.memoryBytes),
                             memory_allowed: budget.memoryAllowed(on: node.id), kind: Nullable(budget.topology.memoryKind(of: node)),
                             serving_cpus: serving.cpus.cpus, serving_reason: serving.reason)
            },
            allowed_memory_nodes: .init(nodes: Nullable(budget.allowedMemoryNodes?.cpus), source: budget.allowedMemorySource),
            usable_cpus: budget.usable.cpus, offline_cpus: budget.topology.offline.cpus, cpu_budget: budget.budget,
            limits: budget.limits.map { .init(kind: $0.kind, source: $0.source, value: $0.value) },
            energy: .init(restricted: energy.restricted, reason: energy.reason),
            helper_cap: .init(max_busy_helpers: cap.maxBusyHelpers, source: cap.source.rawValue),
            pool: .init(live_threads: pool.liveThreads, idle_threads: pool.idleThreads, busy_helpers: pool.busyHelpers),
            helper_isolation: Nullable(isolation.map { .init(kind: $0.kind.rawValue, detail: $0.detail) }),
            starvation_guard: Nullable(starvationGuard?.rawValue),
            tuning_profile: Nullable(profile.map { .init(path: $0.path, classes: $0.profile.classes.mapValues(\.maxThreads)) }),
            machine_slots: Nullable(slots.map { slots in
                .init(folder: Nullable(slots.folder), slots: slots.slots, held: slots.held, holders: slots.holders.map(\.pid),
                      holder_processes: slots.holders.map { .init(pid: $0.pid, uid: Nullable($0.uid), user: Nullable($0.uid.flatMap(userName)),
                                                                  slots: $0.slots) },
                      access: Nullable(slots.access), trust: MachineSlots.trustModel, reason: slots.reason, jobserver: slots.jobserver)
            }),
            settings: settings.map { .init(name: $0.name, value: Nullable($0.raw), source: $0.source, meaning: $0.meaning, note: Nullable($0.note)) },
            notes: budget.notes)
        return try encodeJSON(value)
    }
}

/// The machine-wide slots as `ktask info` shows them.
struct SlotsStatus {
    let folder: String?
    let slots: Int
    let held: Int
    /// Who holds slots now, with their uids (from /proc/locks, which every user may read).
    let holders: [MachineSlots.Holder]
    /// Who may take the slots (from the folder's owner and mode); nil when off.
    let access: String?
    let reason: String
    /// Why folders tried first (root's shared one) were not used.
    var skipped: [String] = []
    let jobserver: String

    static func read() -> SlotsStatus {
        let jobserver = Jobserver.status
        guard let machine = MachineSlots.shared else {
            return SlotsStatus(folder: nil, slots: 0, held: 0, holders: [], access: nil, reason: MachineSlots.offReason ?? "off",
                               jobserver: jobserver)
        }
        let holders = machine.holders()
        return SlotsStatus(folder: machine.folder, slots: machine.count, held: Set(holders.flatMap(\.slots)).count, holders: holders,
                           access: machine.access, reason: machine.offReason ?? "on", skipped: machine.skipped, jobserver: jobserver)
    }

    /// The table's lines: where and how many, who holds them (pid, uid, user), who may take them, the trust model.
    var lines: [String] {
        var lines: [String] = []
        if let folder, let access {
            let held = holders.map { holder in
                "pid \(holder.pid) (uid \(holder.uid.map { "\($0)" + (userName($0).map { " \($0)" } ?? "") } ?? "unknown"))"
            }
            lines.append("machine-wide slots: \(slots) in \(folder) (slot.0 …, online CPUs − 1, shared by every ktask process that may "
                         + "open them), \(self.held) held" + (held.isEmpty ? "" : " by " + held.joined(separator: ", ")))
            lines.append("  who may take them: \(access)")
            for reason in skipped { lines.append("  not used: \(reason)") }
        } else {
            lines.append("machine-wide slots: \(reason)")
        }
        lines.append("  trust: \(MachineSlots.trustModel)")
        lines.append("make jobserver: \(jobserver)")
        return lines
    }
}

/// A uid's user name (getpwuid), or nil.
func userName(_ uid: Int) -> String? {
    guard let entry = getpwuid(uid_t(uid)), let name = entry.pointee.pw_name else { return nil }
    return String(cString: name)
}
