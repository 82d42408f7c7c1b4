/// How much more memory this process can fault in before the kernel must reclaim hard or kill: the
/// machine's `MemAvailable`, and the tightest cgroup memory limit on the way up (v2 `memory.max`, v1
/// `memory.limit_in_bytes`) less what the cgroup uses that it cannot drop (usage minus inactive page
/// cache, the "working set" container runtimes use). Read before a populate that would otherwise end in
/// the OOM killer, so that it can fail with a sentence instead.
package struct MemoryHeadroom: Equatable, Sendable {
    package let bytes: Int
    /// Where the binding figure came from: "MemAvailable" or the cgroup file.
    package let source: String

    /// Throws unless `needed` more bytes fit in the headroom (no figure readable: no check).
    package static func check(needed: Int, root: SystemRoot = .live) throws(KTask.Error) {
        guard needed > 0, let headroom = read(root: root), needed > headroom.bytes else { return }
        throw .notEnoughMemory(needed: needed, available: headroom.bytes, source: headroom.source)
    }

    package static func read(root: SystemRoot = .live) -> MemoryHeadroom? {
        var tightest = root.read("/proc/meminfo").flatMap { meminfoBytes($0, field: "MemAvailable") }
            .map { MemoryHeadroom(bytes: $0, source: "/proc/meminfo MemAvailable") }
        var reader = CgroupLimits.Reader(root: root)
        let mounts = reader.readMounts()
        if let (mount, path) = reader.locate("memory", mounts: mounts, memberships: reader.readMemberships()) {
            for folder in reader.folders(mount: mount, path: path) {
                guard let cgroup = cgroupHeadroom(root: root, folder: folder, v2: mount.kind == .v2) else { continue }
                if tightest == nil || cgroup.bytes < tightest!.bytes { tightest = cgroup }
            }
        }
        return tightest
    }

    /// One cgroup level's limit minus its working set; nil where it sets no limit.
    static func cgroupHeadroom(root: SystemRoot, folder: String, v2: Bool) -> MemoryHeadroom? {
        let (limitFile, usageFile, inactiveKey) = v2 ? ("memory.max", "memory.current", "inactive_file")
            : ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        guard let limit = root.integer("\(folder)/\(limitFile)"), limit < Int.max / 2,  // v1 writes ~2^63 for "no limit", v2 "max"
              let usage = root.integer("\(folder)/\(usageFile)") else { return nil }
        let inactive = root.read("\(folder)/memory.stat").flatMap { stat in
            stat.split(separator: "\n").first { $0.hasPrefix(inactiveKey + " ") }
                .flatMap { Int($0.split(separator: " ").last ?? "") }
        } ?? 0
        return MemoryHeadroom(bytes: max(0, limit - max(0, usage - inactive)), source: "\(folder)/\(limitFile)")
    }
}
