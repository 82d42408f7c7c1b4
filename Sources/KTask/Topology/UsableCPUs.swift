import CKTaskShims

#if canImport(Glibc)
import Glibc
#endif

/// The CPUs this process may run on, and why.
///
/// Usable = online ∩ affinity mask. The kernel already removes offline CPUs from what
/// sched_getaffinity(2) returns, so the per-job path needs only that one syscall; the online list is
/// read for reporting (`ktask info`).
public struct UsableCPUs: Sendable, Equatable {
    /// CPUs the kernel has online (`/sys/devices/system/cpu/online`), nil where it could not be read.
    public let online: CPUList?
    /// The process's affinity mask (`sched_getaffinity`), nil where it could not be read.
    public let affinity: CPUList?
    /// The CPUs a job may use: online ∩ affinity, never empty.
    public let cpus: CPUList

    /// Reads the live machine.
    public static func current() -> UsableCPUs {
        let online = readOnlineCPUs()
        let affinity = readAffinityMask()
        var usable = affinity ?? online ?? CPUList([0])
        if let online, let affinity { usable = affinity.intersection(online) }
        if usable.isEmpty { usable = affinity ?? CPUList([0]) }
        return UsableCPUs(online: online, affinity: affinity, cpus: usable)
    }

    /// How many CPUs a job may use now: the cheap per-job read (one syscall).
    static func currentCount() -> Int {
        let count = CKTask_affinity_cpus(nil, 0)
        return count > 0 ? Int(count) : 1
    }

    static func readAffinityMask() -> CPUList? {
        var capacity = 256
        while true {
            var buffer = [Int32](repeating: 0, count: capacity)
            let count = Int(CKTask_affinity_cpus(&buffer, Int32(capacity)))
            if count < 0 { return nil }
            if count <= capacity { return CPUList(buffer[..<count].map(Int.init)) }
            capacity = count
        }
    }

    static func readOnlineCPUs() -> CPUList? {
        guard let text = readSmallFile("/sys/devices/system/cpu/online") else { return nil }
        return CPUList(parsing: text)
    }
}

/// Reads a small text file (sysfs, procfs) whole; nil if it cannot be opened or read.
func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { return nil }
        if n == 0 { break }
        bytes.append(contentsOf: buffer[..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
}
