import CKTaskShims

#if canImport(Glibc)
import Glibc
#endif

/// How helper threads are kept out of the way of work outside this process.
///
/// Nice values only order threads inside one scheduling group. Other sessions (autogroups) and other
/// services or containers (cgroups) share the CPU with this process by group weight, whatever the
/// helpers' nice. So where the process may, ktask puts its helpers in a child cgroup of its own that
/// the scheduler treats as idle (`cpu.idle` = 1; else the lowest `cpu.shares`/`cpu.weight`): they then
/// take only CPU time no other group wants, and the CPU quota of the process's cgroup still applies.
package struct HelperIsolation: Sendable, Equatable, CustomStringConvertible {
    package enum Kind: String, Sendable {
        /// Helpers sit in a child cgroup with `cpu.idle` = 1.
        case idleCgroup = "idle cgroup"
        /// Helpers sit in a child cgroup of the lowest weight (no `cpu.idle` on this kernel).
        case lowWeightCgroup = "lowest-weight cgroup"
        /// Only the helpers' nice value: other sessions and services see them at full group weight.
        case niceOnly = "nice only"
    }

    package let kind: Kind
    /// The cgroup folder, or why none could be used.
    package let detail: String
    /// Where helper threads are written (`tasks` in v1); nil for nice only.
    let tasksFile: String?
    /// Where a boosted helper goes back to, next to the caller (the process's own cgroup's `tasks`).
    let parentTasksFile: String?

    package var description: String {
        switch kind {
        case .niceOnly where detail == Self.v2Reason:
            "nice only (\(detail)): helpers run at nice 19 inside this process's cgroup, so a sibling cgroup of "
                + "equal cpu.weight keeps its share of the CPU against the whole job (scripts/cgroup-v2-check.sh measures "
                + "it), but other work in this cgroup sees helpers only 19 nice levels down; where that is not enough, "
                + "run the job in a cgroup of low cpu.weight or with cpu.idle 1 (e.g. systemd-run -p CPUWeight=idle, "
                + "or CPUWeight=idle in its unit), or delegate it a threaded subtree"
        case .niceOnly: "nice only (\(detail)): other sessions and services see helpers at full weight"
        default: "\(kind.rawValue) \(detail)"
        }
    }

    /// What this process will use, read without writing anything (what `ktask info` shows): the child
    /// cgroup is only named here, not created.
    package static var planned: HelperIsolation { plannedShared }

    /// The isolation in force, set up on first use: the first helper thread creates the child cgroup.
    package static var current: HelperIsolation { prepared }

    private static let plannedShared: HelperIsolation = plan(root: .live)
    private static let prepared: HelperIsolation = plannedShared.prepare()

    static let childName = "ktask-helpers"
    static let v2Reason = "cgroup v2 would need a threaded subtree for helper threads"

    /// Decides the kind without writing: no cgroup is created and no file written. `noHelperCgroup`
    /// (`KTASK_NO_HELPER_CGROUP`, from ``Settings``) is a parameter for tests.
    static func plan(root: SystemRoot, noHelperCgroup: Setting<Bool> = Settings.current.noHelperCgroup) -> HelperIsolation {
        func niceOnly(_ why: String) -> HelperIsolation {
            HelperIsolation(kind: .niceOnly, detail: why, tasksFile: nil, parentTasksFile: nil)
        }
        if noHelperCgroup.value { return niceOnly("\(noHelperCgroup.name)=\(noHelperCgroup.raw ?? "")") }
        guard let (folder, isV2) = CgroupLimits.cpuCgroupFolder(root: root) else { return niceOnly("no cgroup cpu controller mounted") }
        // v2 places threads (not processes) only inside a threaded subtree, which would change how the
        // whole process is accounted: not done.
        if isV2 { return niceOnly(v2Reason) }
        let child = "\(folder)/\(childName)"
        // Usable if this process may move threads into it (another process may have made it), or create it.
        let exists = access(root.resolve(child), F_OK) == 0
        func writable(_ file: String) -> Bool { access(root.resolve("\(child)/\(file)"), W_OK) == 0 }
        guard exists ? writable("tasks") && (writable("cpu.idle") || writable("cpu.shares"))
                     : access(root.resolve(folder), W_OK) == 0
        else { return niceOnly("cannot \(exists ? "use" : "create") \(child) (no write access)") }
        let kind: Kind = access(root.resolve("\(folder)/cpu.idle"), F_OK) == 0 ? .idleCgroup : .lowWeightCgroup
        return HelperIsolation(kind: kind, detail: child, tasksFile: root.resolve("\(child)/tasks"),
                               parentTasksFile: root.resolve("\(folder)/tasks"))
    }

    /// Creates the child cgroup (or reuses the one another process of this cgroup made) and arranges for
    /// it to be removed when the last process using it ends: at exit, and on a signal whose default action
    /// ends the process (Ctrl-C, SIGTERM, SIGHUP, a crash: the C fatal-signal handler, `signals.c`), this
    /// process moves its own threads back to its cgroup and removes the child, which the kernel refuses
    /// while another process's threads are in it (that process removes it when it ends). Only SIGKILL (or
    /// a host handler calling `_exit`) skips that: the empty child then stays until the next ktask process
    /// of the cgroup ends, or `rmdir <cgroup>/ktask-helpers` removes it.
    func prepare() -> HelperIsolation {
        guard let tasksFile, parentTasksFile != nil else { return self }
        let child = String(tasksFile.dropLast("/tasks".count))
        func niceOnly(_ why: String) -> HelperIsolation {
            HelperIsolation(kind: .niceOnly, detail: why, tasksFile: nil, parentTasksFile: nil)
        }
        guard mkdir(child, 0o755) == 0 || errno == EEXIST else { return niceOnly("cannot create \(detail) (errno \(errno))") }
        let kind: Kind
        if writeFile("\(child)/cpu.idle", "1") { kind = .idleCgroup }
        else if writeFile("\(child)/cpu.shares", "2") { kind = .lowWeightCgroup }
        else { return niceOnly("cannot set cpu.idle or cpu.shares in \(detail)") }
        guard let parentTasksFile, CKTask_helper_cgroup_setup(child, parentTasksFile) == 0 else {
            return niceOnly("cgroup path too long to be removed at exit: \(detail)")
        }
        return HelperIsolation(kind: kind, detail: detail, tasksFile: tasksFile, parentTasksFile: parentTasksFile)
    }

    /// Moves a thread into the helpers' cgroup; false where that is not possible.
    @discardableResult
    func admit(tid: Int32) -> Bool {
        guard let tasksFile else { return false }
        // Recorded before it is moved: a fatal signal between the two would otherwise leave a thread in the
        // child that the exit path does not know of, and the child's removal would fail (EBUSY). Moving back a
        // thread that never went in is harmless.
        recordAdmitted(tid)
        let child = String(tasksFile.dropLast("/tasks".count))
        // Another ktask process of this cgroup removes the child at its exit while none of this process's
        // threads are in it, possibly again between this thread's mkdir and its move: made again, a few times.
        for _ in 0..<4 {
            if writeFile(tasksFile, "\(tid)") { return true }
            guard errno == ENOENT, mkdir(child, 0o755) == 0 || errno == EEXIST else { return false }
            _ = kind == .idleCgroup ? writeFile("\(child)/cpu.idle", "1") : writeFile("\(child)/cpu.shares", "2")
        }
        return false
    }

    /// Remembers a thread in the child, for the move back when the process ends (in C: a signal handler reads it).
    private func recordAdmitted(_ tid: Int32) { CKTask_helper_cgroup_admitted(tid) }

    /// Moves a thread back into the process's own cgroup (a boosted helper must compete as the caller does).
    @discardableResult
    func release(tid: Int32) -> Bool {
        guard let parentTasksFile else { return false }
        return writeFile(parentTasksFile, "\(tid)")
    }
}

/// Writes a short value to a cgroup or sysfs file; false on any failure.
func writeFile(_ path: String, _ value: String) -> Bool {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    let bytes = Array(value.utf8)
    return bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count
}
