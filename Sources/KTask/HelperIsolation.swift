import CKTaskShims
import Synchronization

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
        case .niceOnly: "nice only (\(detail)): other sessions and services see helpers at full weight"
        default: "\(kind.rawValue) \(detail)"
        }
    }

    /// Set up once per process, on first use.
    package static var current: HelperIsolation { shared }

    private static let shared: HelperIsolation = setUp(root: .live)

    static let childName = "ktask-helpers"

    static func setUp(root: SystemRoot) -> HelperIsolation {
        if getenv("KTASK_NO_HELPER_CGROUP") != nil {
            return HelperIsolation(kind: .niceOnly, detail: "KTASK_NO_HELPER_CGROUP is set", tasksFile: nil, parentTasksFile: nil)
        }
        guard let (folder, isV2) = CgroupLimits.cpuCgroupFolder(root: root) else {
            return HelperIsolation(kind: .niceOnly, detail: "no cgroup cpu controller mounted", tasksFile: nil, parentTasksFile: nil)
        }
        if isV2 {
            // v2 places threads (not processes) only inside a threaded subtree, which would change how the
            // whole process is accounted: not done.
            return HelperIsolation(kind: .niceOnly, detail: "cgroup v2 would need a threaded subtree for helper threads",
                                   tasksFile: nil, parentTasksFile: nil)
        }
        let child = "\(folder)/\(childName)"
        let created = mkdir(root.resolve(child), 0o755)
        guard created == 0 || errno == EEXIST else {
            return HelperIsolation(kind: .niceOnly, detail: "cannot create \(child) (errno \(errno))", tasksFile: nil, parentTasksFile: nil)
        }
        let kind: Kind
        if writeFile(root.resolve("\(child)/cpu.idle"), "1") {
            kind = .idleCgroup
        } else if writeFile(root.resolve("\(child)/cpu.shares"), "2") {
            kind = .lowWeightCgroup
        } else {
            return HelperIsolation(kind: .niceOnly, detail: "cannot set cpu.idle or cpu.shares in \(child)", tasksFile: nil, parentTasksFile: nil)
        }
        return HelperIsolation(kind: kind, detail: child, tasksFile: root.resolve("\(child)/tasks"),
                               parentTasksFile: root.resolve("\(folder)/tasks"))
    }

    /// Moves a thread into the helpers' cgroup; false where that is not possible.
    @discardableResult
    func admit(tid: Int32) -> Bool {
        guard let tasksFile else { return false }
        return writeFile(tasksFile, "\(tid)")
    }

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
