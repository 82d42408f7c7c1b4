#if canImport(Glibc)
import Glibc
#endif

/// The filesystem root that sysfs and procfs are read under: "/" for the live machine, or a snapshot
/// folder (as hwloc's `HWLOC_FSROOT`) for tests and for `ktask info --root`.
package struct SystemRoot: Sendable, Equatable {
    /// The root folder, without a trailing slash ("" for the live "/").
    package let path: String

    /// The live machine.
    package static let live = SystemRoot(path: "/")

    package init(path: String) {
        var trimmed = path
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.path = trimmed
    }

    /// Whether this is the running machine's own root (so system calls describe it too).
    package var isLive: Bool { path.isEmpty }

    /// The full path of `absolute` (e.g. "/sys/devices/system/cpu/online") under this root.
    func resolve(_ absolute: String) -> String { path + absolute }

    /// The text of a small file, or nil if it is missing or unreadable.
    package func read(_ absolute: String) -> String? { readSmallFile(resolve(absolute)) }

    /// A file that holds one integer (sysfs counters, cgroup limits), or nil if it is missing or holds
    /// something else ("max", say).
    func integer(_ absolute: String) -> Int? {
        read(absolute).flatMap { Int($0.trimmingCharacters(in: " \n")) }
    }

    /// The entries of a directory (without "." and ".."), or nil if it cannot be listed.
    package func list(_ absolute: String) -> [String]? {
        guard let directory = opendir(resolve(absolute)) else { return nil }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Numbers N of the entries named `prefix`N in a directory (e.g. cpu0, cpu1 → [0, 1]), sorted.
    /// Only canonical decimal numbers count ("cpu12", not "cpu012", "cpu+1" or "cpu-1"), so no two
    /// entries give the same number and none a negative one.
    func numberedEntries(_ absolute: String, prefix: String) -> [Int]? {
        list(absolute)?.compactMap { name in
            guard name.hasPrefix(prefix) else { return nil }
            let digits = name.dropFirst(prefix.count)
            guard !digits.isEmpty, digits.count <= 9, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                  digits == "0" || digits.first != "0" else { return nil }
            return Int(digits)
        }.sorted()
    }
}
