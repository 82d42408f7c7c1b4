/// One limit on the CPUs a process may use, and where it was read.
package struct CPULimit: Sendable, Equatable, CustomStringConvertible {
    /// What kind of limit: "online", "affinity", "cpuset", "cpu quota".
    package let kind: String
    /// The file (or system call) it came from.
    package let source: String
    /// The value as read, e.g. "0-5" or "50000 100000 (0.50 CPU)".
    package let value: String

    package var description: String { "\(kind): \(value) (\(source))" }
}

/// The cgroup limits on this process's CPUs: the cpuset it may run on and the CPU quota, each the
/// tightest along the path from its cgroup up to the hierarchy's root. Reads cgroup v2 (`cpu.max`,
/// `cpuset.cpus.effective`), v1 (`cpu.cfs_quota_us`/`cpu.cfs_period_us`, `cpuset.effective_cpus` or
/// `cpuset.cpus`; `effective_cpus` or `cpus` on a mount with the `noprefix` option) and the legacy cpuset
/// filesystem (`/proc/self/cpuset`, `effective_cpus` or `cpus`).
package struct CgroupLimits: Sendable, Equatable {
    /// CPUs the cgroup cpuset allows (nil: no cpuset found, so no restriction).
    package let cpuset: CPUList?
    /// The tightest quota as CPUs (quota ÷ period), nil where none is set.
    let quotaCPUs: Double?
    /// The NUMA nodes the cpuset lets the process place memory on (its mems); nil: no restriction found.
    var memoryNodes: CPUList?
    /// The file ``memoryNodes`` came from.
    var memoryNodesSource = ""
    /// Each limit found, with its file.
    package let limits: [CPULimit]
    /// What could not be read.
    package let notes: [String]

    /// No cgroup limit at all.
    package static let none = CgroupLimits(cpuset: nil, quotaCPUs: nil, limits: [], notes: [])

    init(cpuset: CPUList?, quotaCPUs: Double?, limits: [CPULimit], notes: [String], memoryNodes: CPUList? = nil,
         memoryNodesSource: String = "") {
        self.cpuset = cpuset
        self.quotaCPUs = quotaCPUs
        self.limits = limits
        self.notes = notes
        self.memoryNodes = memoryNodes
        self.memoryNodesSource = memoryNodesSource
    }

    /// CPUs the quota allows, rounded up (a 0.5-CPU quota still needs one thread).
    package var quotaCPUCount: Int? {
        // Saturates: a quota of more CPUs than any machine has bounds nothing.
        quotaCPUs.map { $0 >= 1e9 ? 1_000_000_000 : max(1, Int(($0 - 1e-9).rounded(.up))) }
    }

    package static func read(root: SystemRoot) -> CgroupLimits {
        var reader = Reader(root: root)
        return reader.read()
    }

    /// The folder of this process's cgroup in the hierarchy that has the cpu controller, and whether
    /// that hierarchy is cgroup v2; nil where none is mounted.
    static func cpuCgroupFolder(root: SystemRoot) -> (folder: String, isV2: Bool)? {
        var reader = Reader(root: root)
        let mounts = reader.readMounts()
        guard let (mount, path) = reader.locate("cpu", mounts: mounts, memberships: reader.readMemberships()) else { return nil }
        guard let folder = reader.folders(mount: mount, path: path).first else { return nil }
        return (folder, mount.kind == .v2)
    }

    /// A mounted cgroup hierarchy.
    struct Mount: Equatable {
        enum Kind: Equatable { case v2, v1(controllers: Set<String>), legacyCpuset }
        let kind: Kind
        let mountPoint: String
        /// The cgroup path the mount shows as its root (not "/" inside some containers).
        let root: String

        func has(_ controller: String) -> Bool {
            switch kind {
            case .v2: true
            case .v1(let controllers): controllers.contains(controller)
            case .legacyCpuset: controller == "cpuset"
            }
        }
    }

    struct Reader {
        let root: SystemRoot
        var limits: [CPULimit] = []
        var notes: [String] = []

        init(root: SystemRoot) { self.root = root }

        mutating func read() -> CgroupLimits {
            let mounts = readMounts()
            let memberships = readMemberships()
            var cpuset: CPUList?
            var quota: Double?

            var memory: (nodes: CPUList, file: String)?
            if let (mount, path) = locate("cpuset", mounts: mounts, memberships: memberships) {
                if let refused = Self.components(mount: mount, path: path).refused { notes.append(refused) }
                cpuset = readCpuset(mount: mount, path: path)
                memory = readMems(mount: mount, path: path)
            }
            if let (mount, path) = locate("cpu", mounts: mounts, memberships: memberships) {
                if let refused = Self.components(mount: mount, path: path).refused, !notes.contains(refused) { notes.append(refused) }
                quota = readQuota(mount: mount, path: path)
            }
            return CgroupLimits(cpuset: cpuset, quotaCPUs: quota, limits: limits, notes: notes,
                                memoryNodes: memory?.nodes, memoryNodesSource: memory?.file ?? "")
        }

        /// The hierarchy that holds `controller` for this process, and the process's path in it.
        /// v1 controllers win over a v2 mount in hybrid layouts, where v2 usually has no controllers.
        func locate(_ controller: String, mounts: [Mount], memberships: [(controllers: Set<String>, path: String)])
            -> (Mount, String)?
        {
            // Of several mounts of one hierarchy (a container's bind mounts of subtrees), the one whose root
            // holds the process's cgroup, the deepest such; else the first (whose note then says why).
            func best(_ candidates: [Mount], _ path: String) -> Mount? {
                candidates.filter { Self.components(mount: $0, path: path).components != nil }
                    .max { $0.root.count < $1.root.count } ?? candidates.first
            }
            if let membership = memberships.first(where: { $0.controllers.contains(controller) }),
               let mount = best(mounts.filter { if case .v1 = $0.kind { $0.has(controller) } else { false } }, membership.path) {
                return (mount, membership.path)
            }
            if let membership = memberships.first(where: { $0.controllers.isEmpty }),
               let mount = best(mounts.filter { $0.kind == .v2 }, membership.path) {
                return (mount, membership.path)
            }
            // No /proc/self/cgroup (old kernels, some snapshots): /proc/self/cpuset names the cpuset path.
            if controller == "cpuset", let path = root.read("/proc/self/cpuset")?.trimmingCharacters(in: " \n\0"),
               !path.isEmpty,
               let mount = mounts.first(where: { $0.kind == .legacyCpuset }) ?? mounts.first(where: { $0.has("cpuset") }) {
                return (mount, path)
            }
            return nil
        }

        /// The deepest cgroup path read: real hierarchies are a few levels deep, and each level costs reads.
        static let maxDepth = 64

        /// The path's components below the mount's root, or why they are not followed: a path with `..`
        /// or `.` components, or deeper than ``maxDepth``, cannot be a real cgroup, and under a snapshot
        /// root it could read outside the snapshot (only the hierarchy's root is read then).
        /// A path outside the mount's root (a sibling whose name merely starts with the root's, as `/a/bc`
        /// beside a mount of `/a/b`) is not this process's cgroup nor above it: nothing of that mount is read.
        static func components(mount: Mount, path: String) -> (components: [String]?, refused: String?) {
            var relative = path
            if mount.root != "/" {
                let root = mount.root.hasSuffix("/") ? String(mount.root.dropLast()) : mount.root
                guard relative == root || relative.hasPrefix(root + "/") else {
                    return (nil, "the cgroup path \(path.prefix(120).debugDescription) is outside \(mount.mountPoint), which shows "
                                 + "\(mount.root.prefix(120).debugDescription): its limits are not read there")
                }
                relative = String(relative.dropFirst(root.count))
            }
            let components = relative.split(separator: "/").prefix(maxDepth + 1).map(String.init)
            if components.count > maxDepth {
                return ([], "the cgroup path in /proc/self/cgroup is deeper than \(maxDepth) levels; only the hierarchy's root is read")
            }
            if components.contains(where: { $0 == ".." || $0 == "." }) {
                return ([], "the cgroup path \(path.prefix(120).debugDescription) has '.' or '..' components; only the hierarchy's root is read")
            }
            return (components, nil)
        }

        /// The folders from the process's cgroup up to the hierarchy's root, the process's own first.
        func folders(mount: Mount, path: String) -> [String] {
            guard var components = Self.components(mount: mount, path: path).components else { return [] }
            var result: [String] = []
            while true {
                result.append(mount.mountPoint + (components.isEmpty ? "" : "/" + components.joined(separator: "/")))
                if components.isEmpty { break }
                components.removeLast()
            }
            return result
        }

        /// Each level's cpuset list, the process's own cgroup first: `what` is "cpus" or "mems" (the effective
        /// list where the hierarchy has one). A malformed or empty file is noted and skipped.
        mutating func readCpusetLists(_ what: String, mount: Mount, path: String) -> [(file: String, list: CPUList)] {
            let files: [String] = switch mount.kind {
            case .v2: ["cpuset.\(what).effective"]
            // A v1 cpuset mounted with `noprefix` names its files as the legacy cpuset filesystem does.
            case .v1(let options) where options.contains("noprefix"): ["effective_\(what)", what]
            case .v1: ["cpuset.effective_\(what)", "cpuset.\(what)"]
            case .legacyCpuset: ["effective_\(what)", what]
            }
            var levels: [(file: String, list: CPUList)] = []
            for folder in folders(mount: mount, path: path) {
                let root = self.root
                guard let (file, text) = files.lazy.compactMap({ name in
                    root.read("\(folder)/\(name)").map { ("\(folder)/\(name)", $0) } }).first else { continue }
                guard let list = CPUList(parsing: text), !list.isEmpty else {
                    notes.append("\(file) is empty or malformed (\(text.prefix(80).debugDescription)); ignored")
                    continue
                }
                levels.append((file, list))
            }
            return levels
        }

        /// The CPUs the cpuset allows: every level's list intersected; each level that narrows it is a limit.
        mutating func readCpuset(mount: Mount, path: String) -> CPUList? {
            var allowed: CPUList?
            for (file, list) in readCpusetLists("cpus", mount: mount, path: path) {
                if allowed == nil || list.count < allowed!.count {
                    limits.append(CPULimit(kind: "cpuset", source: file, value: list.description))
                }
                allowed = allowed.map { $0.intersection(list) } ?? list
            }
            return allowed
        }

        /// The nodes the cpuset lets memory go to, and the file of the level that narrowed them most.
        mutating func readMems(mount: Mount, path: String) -> (nodes: CPUList, file: String)? {
            var allowed: (nodes: CPUList, file: String)?
            for (file, list) in readCpusetLists("mems", mount: mount, path: path) {
                let narrowed = allowed.map { $0.nodes.intersection(list) } ?? list
                if allowed == nil || narrowed.count < allowed!.nodes.count { allowed = (narrowed, file) }
            }
            return allowed
        }

        mutating func readQuota(mount: Mount, path: String) -> Double? {
            var tightest: Double?
            for folder in folders(mount: mount, path: path) {
                var value: (quota: Double, period: Double, file: String, text: String)?
                // The kernel writes whole microseconds: anything else (inf, nan, 1e300, zero or negative
                // periods) is malformed, said in a note and ignored.
                func microseconds(_ text: Substring) -> Int? { Int(text).flatMap { $0 > 0 ? $0 : nil } }
                if mount.kind == .v2, let text = root.read("\(folder)/cpu.max") {
                    let fields = text.split(whereSeparator: { " \n\0".contains($0) })
                    if fields.count == 2, fields[0] != "max", let quota = microseconds(fields[0]), let period = microseconds(fields[1]) {
                        value = (Double(quota), Double(period), "\(folder)/cpu.max", "\(quota) \(period)")
                    } else if fields.first != "max" || fields.count != 2 || microseconds(fields[1]) == nil {
                        notes.append("\(folder)/cpu.max is malformed (\(text.prefix(80).debugDescription)); ignored")
                    }
                } else if case .v1 = mount.kind, let quotaText = root.read("\(folder)/cpu.cfs_quota_us") {
                    let quotaField = Substring(quotaText.trimmingCharacters(in: " \n\0"))
                    if quotaField == "-1" { continue }  // the kernel's "no quota"
                    let periodText = root.read("\(folder)/cpu.cfs_period_us").map { Substring($0.trimmingCharacters(in: " \n\0")) }
                    if let quota = microseconds(quotaField), let period = periodText.flatMap(microseconds) {
                        value = (Double(quota), Double(period), "\(folder)/cpu.cfs_quota_us", "\(quota) \(period)")
                    } else {
                        notes.append("\(folder)/cpu.cfs_quota_us (\(quotaField.prefix(80).debugDescription)) or cpu.cfs_period_us "
                                     + "(\(String(describing: periodText?.prefix(80)).debugDescription)) is malformed; ignored")
                    }
                }
                guard let value, value.quota > 0, value.period > 0 else { continue }
                let cpus = value.quota / value.period
                if tightest == nil || cpus < tightest! {
                    tightest = cpus
                    limits.append(CPULimit(kind: "cpu quota", source: value.file,
                                           value: "\(value.text) (\(formatCPUs(cpus)) CPU)"))
                }
            }
            return tightest
        }

        /// /proc/self/mountinfo, else /proc/mounts: the cgroup and cpuset mounts.
        mutating func readMounts() -> [Mount] {
            if let text = root.read("/proc/self/mountinfo") {
                return text.split(separator: "\n").compactMap { line in
                    let fields = line.split(separator: " ").map(String.init)
                    // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS"
                    guard let dash = fields.firstIndex(of: "-"), dash > 4, dash + 1 < fields.count else { return nil }
                    let superOptions = dash + 3 < fields.count ? fields[dash + 3] : ""
                    return mount(type: fields[dash + 1], point: fields[4], options: superOptions, root: unescape(fields[3]))
                }
            }
            guard let text = root.read("/proc/mounts") else {
                notes.append("neither /proc/self/mountinfo nor /proc/mounts is readable: no cgroup limits read")
                return []
            }
            return text.split(separator: "\n").compactMap { line in
                let fields = line.split(separator: " ").map(String.init)
                guard fields.count >= 4 else { return nil }
                return mount(type: fields[2], point: fields[1], options: fields[3], root: "/")
            }
        }

        func mount(type: String, point: String, options: String, root: String) -> Mount? {
            let point = unescape(point)
            switch type {
            case "cgroup2": return Mount(kind: .v2, mountPoint: point, root: root)
            case "cgroup":
                let controllers = Set(options.split(separator: ",").map(String.init))
                return Mount(kind: .v1(controllers: controllers), mountPoint: point, root: root)
            case "cpuset": return Mount(kind: .legacyCpuset, mountPoint: point, root: root)
            default: return nil
            }
        }

        /// /proc/self/cgroup: "ID:controller,controller:/path" (v2: "0::/path").
        func readMemberships() -> [(controllers: Set<String>, path: String)] {
            guard let text = root.read("/proc/self/cgroup") else { return [] }
            return text.split(separator: "\n").compactMap { line in
                let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                guard parts.count == 3 else { return nil }
                let controllers = Set(parts[1].split(separator: ",").map(String.init))
                return (controllers, String(parts[2]))
            }
        }

        /// Mount tables escape spaces and such as \040.
        func unescape(_ text: String) -> String {
            guard text.contains("\\") else { return text }
            var bytes: [UInt8] = []
            var utf8 = Array(text.utf8)[...]
            while let byte = utf8.first {
                if byte == UInt8(ascii: "\\"), utf8.count >= 4,
                   let value = UInt8(String(decoding: utf8.dropFirst().prefix(3), as: UTF8.self), radix: 8) {
                    bytes.append(value)
                    utf8 = utf8.dropFirst(4)
                } else {
                    bytes.append(byte)
                    utf8 = utf8.dropFirst()
                }
            }
            return String(decoding: bytes, as: UTF8.self)
        }
    }
}

func formatCPUs(_ cpus: Double) -> String {
    guard cpus.isFinite, cpus < 1e12 else { return cpus.isFinite ? String(cpus) : "unbounded" }
    let hundredths = Int((cpus * 100).rounded())
    let fraction = hundredths % 100
    return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
}
