#if canImport(Glibc)
import Glibc
#endif

/// CPU time the hypervisor gave to others while this guest's CPUs wanted to run (`steal` in
/// /proc/stat), summed over all CPUs. On a VM it explains timings that vary for no reason inside it.
package enum StealTime {
    /// Seconds of steal since boot, or nil where /proc/stat has no steal field.
    package static func total() -> Double? {
        guard let text = firstLine(of: "/proc/stat") else { return nil }
        // "cpu  user nice system idle iowait irq softirq steal ..."
        let fields = text.split(separator: " ")
        guard fields.first == "cpu", fields.count > 8, let ticks = Double(fields[8]) else { return nil }
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// Time some runnable task waited for a CPU (`/proc/pressure/cpu`, "some" total), summed since boot: other
/// work competing with the benchmark shows here, on a VM or not.
package enum CPUPressure {
    /// Seconds of "some" CPU pressure since boot, or nil where the kernel has no PSI.
    package static func total() -> Double? {
        guard let text = firstLine(of: "/proc/pressure/cpu") else { return nil }
        guard text.hasPrefix("some"), let field = text.split(separator: " ").first(where: { $0.hasPrefix("total=") }),
              let microseconds = Double(field.dropFirst("total=".count).trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        return microseconds / 1e6
    }
}

/// The first line of a small procfs file (read with stdio: these are read before and after timed runs; "e": close-on-exec, so a program the
/// benchmark starts does not inherit it).
func firstLine(of path: String) -> String? {
    guard let file = fopen(path, "re") else { return nil }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 512)
    guard fgets(&line, Int32(line.count), file) != nil else { return nil }
    return String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
