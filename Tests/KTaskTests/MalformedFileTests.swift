import Foundation
import Testing
@testable import KTask

#if canImport(Glibc)
import Glibc
#endif

/// Each case here crashed, hung or was silently dropped before: a reading with a stated reason now.
@Suite("Malformed sysfs, procfs and cgroup files: a fallback with a note, never a crash, hang or huge allocation")
struct MalformedFileTests {
    @Test("cpu.max that is not two whole positive microsecond counts is ignored with a note", arguments: [
        "inf 100000", "infinity 1", "1e300 1", "100000 1e-300", "0 100000", "-1 100000", "nan 100000", "100000 0",
        "100000 -5", "max", "12",
    ])
    func malformedCpuMax(_ value: String) throws {
        let fake = try FakeRoot.cgroupV2Machine()
        try fake.write("/sys/fs/cgroup/a/b/cpu.max", value + "\n")
        let budget = CPUBudget.read(root: fake.root)
        #expect(budget.cgroup.quotaCPUs == nil)
        #expect(budget.budget == 4)
        #expect(budget.notes.contains { $0.contains("cpu.max is malformed") }, "\(budget.notes)")
    }

    @Test("huge but well-formed quotas saturate instead of trapping",
          arguments: ["100000000000000000 1", "9223372036854775807 1"])
    func hugeCpuMax(_ value: String) throws {
        let fake = try FakeRoot.cgroupV2Machine()
        try fake.write("/sys/fs/cgroup/a/b/cpu.max", value + "\n")
        let budget = CPUBudget.read(root: fake.root)
        #expect(budget.budget == 4)
        #expect(budget.limits.contains { $0.kind == "cpu quota" })
    }

    @Test("v1 cfs quota or period that is not a whole positive count is ignored with a note",
          arguments: [("inf", "100000"), ("1e30", "100000"), ("100000", String(repeating: "9", count: 6000)), ("0", "100000")])
    func malformedCfsQuota(_ quota: String, _ period: String) throws {
        let fake = try FakeRoot.cgroupV1Machine()
        try fake.write("/sys/fs/cgroup/cpu/job/cpu.cfs_quota_us", quota + "\n")
        try fake.write("/sys/fs/cgroup/cpu/job/cpu.cfs_period_us", period + "\n")
        let budget = CPUBudget.read(root: fake.root)
        #expect(budget.cgroup.quotaCPUs == nil && budget.budget == 4)
        #expect(budget.notes.contains { $0.contains("cpu.cfs_quota_us") }, "\(budget.notes)")
        // INT64_MAX is well formed: it saturates.
        try fake.write("/sys/fs/cgroup/cpu/job/cpu.cfs_quota_us", "9223372036854775807\n")
        try fake.write("/sys/fs/cgroup/cpu/job/cpu.cfs_period_us", "100000\n")
        #expect(CPUBudget.read(root: fake.root).budget == 4)
    }

    @Test("MemTotal that overflows or is negative is unknown, not wrong", arguments: ["99999999999999999", "-5"])
    func badMemTotal(_ kilobytes: String) throws {
        let fake = try FakeRoot.cgroupV2Machine()
        try fake.write("/sys/devices/system/node/node0/meminfo", "Node 0 MemTotal:       \(kilobytes) kB\n")
        #expect(NUMATopology.read(root: fake.root).nodes[0].memoryBytes == nil)
    }

    @Test("a FIFO or a device where a file is expected neither blocks nor reads without end")
    func fifoAndDevice() throws {
        let fake = try FakeRoot.cgroupV2Machine()
        try FileManager.default.removeItem(atPath: fake.path + "/sys/devices/system/cpu/online")
        #expect(mkfifo(fake.path + "/sys/devices/system/cpu/online", 0o644) == 0)
        try FileManager.default.createDirectory(atPath: fake.path + "/sys/fs/cgroup/a/b", withIntermediateDirectories: true)
        #expect(mkfifo(fake.path + "/sys/fs/cgroup/a/b/cpu.max", 0o644) == 0)
        try FileManager.default.removeItem(atPath: fake.path + "/sys/devices/system/node/node0/cpulist")
        try FileManager.default.createSymbolicLink(atPath: fake.path + "/sys/devices/system/node/node0/cpulist",
                                                   withDestinationPath: "/dev/zero")
        try FileManager.default.removeItem(atPath: fake.path + "/proc/self/cgroup")
        #expect(mkfifo(fake.path + "/proc/self/cgroup", 0o644) == 0)
        let start = ContinuousClock.now
        let budget = CPUBudget.read(root: fake.root)
        #expect(ContinuousClock.now - start < .seconds(2))
        // No CPU list can be read (online is a FIFO, there are no cpuN folders, node0's list is a device): the
        // documented fallback is CPU 0 alone; no affinity or cgroup narrows it, so one CPU, a budget of 1.
        #expect(budget.topology.onlineSource == "assumed")
        #expect(budget.usable.description == "0" && budget.budget == 1, "\(budget.usable), \(budget.budget)")
        #expect(readSmallFile(fake.path + "/sys/devices/system/node/node0/cpulist") == nil)
    }

    @Test("big CPU lists are cheap: 40 repeats of 0-4194303 once, present 0-999999 minus online quickly")
    func bigLists() throws {
        let repeated = Array(repeating: "0-4194303", count: 40).joined(separator: ",")
        #expect(CPUList(parsing: repeated)?.count == 1 << 22)
        #expect(CPUList(parsing: "0-4194304") == nil, "beyond the limit")
        let fake = try FakeRoot.cgroupV2Machine()
        try fake.write("/sys/devices/system/cpu/present", "0-999999\n")
        let start = ContinuousClock.now
        let topology = NUMATopology.read(root: fake.root)
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(topology.offline.count == 1_000_000 - 4)
    }

    @Test("a cgroup path with '..' or 20,000 levels is not followed: the hierarchy's root is read, with a note")
    func cgroupPaths() throws {
        let fake = try FakeRoot.cgroupV2Machine()
        try fake.write("/proc/self/cgroup", "0::/../../../etc\n")
        try fake.write("/sys/fs/cgroup/cpuset.cpus.effective", "0-1\n")
        let escaped = CPUBudget.read(root: fake.root)
        #expect(escaped.usable.description == "0-1")
        #expect(escaped.notes.contains { $0.contains("'..'") })
        try fake.write("/proc/self/cgroup", "0::/" + Array(repeating: "d", count: 20_000).joined(separator: "/") + "\n")
        let start = ContinuousClock.now
        let deep = CPUBudget.read(root: fake.root)
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(deep.usable.description == "0-1" && deep.notes.contains { $0.contains("deeper than") })
    }

    @Test("node00, node+1, node-1 and cpu-5 give no duplicate or negative ids")
    func oddFolderNames() throws {
        let fake = try FakeRoot.cgroupV2Machine()
        for name in ["node00", "node+1", "node-1", "node1x"] { try fake.write("/sys/devices/system/node/\(name)/cpulist", "2\n") }
        try fake.write("/sys/devices/system/cpu/cpu-5/online", "1\n")
        let topology = NUMATopology.read(root: fake.root)
        #expect(topology.nodes.map(\.id) == [0])
        #expect(fake.root.numberedEntries("/sys/devices/system/cpu", prefix: "cpu")?.contains { $0 < 0 } != true)
    }

    /// Mutates a small machine's files (deterministic seed) and reads it each time.
    @Test("fuzz: 2000 mutated roots read without crash or hang", .timeLimit(.minutes(2)))
    func fuzz() throws {
        var random = SplitMix(state: 0x6b7461736b)
        let files = ["/sys/devices/system/cpu/online", "/sys/devices/system/cpu/present", "/sys/devices/system/node/node0/cpulist",
                     "/sys/devices/system/node/node1/cpulist", "/sys/devices/system/node/node0/meminfo",
                     "/sys/devices/system/node/node0/distance", "/proc/self/cgroup", "/proc/self/mountinfo",
                     "/sys/fs/cgroup/a/b/cpu.max", "/sys/fs/cgroup/a/b/cpuset.cpus.effective", "/sys/fs/cgroup/a/cpuset.mems.effective",
                     "/proc/self/status"]
        let pieces = ["0", "1", "-", ",", "3", "0-3", "4294967296", "-1", "max", "inf", "nan", "1e300", "\n", "\0", " ", "kB",
                      "MemTotal:", "::", "/", "..", "cgroup2", "9223372036854775807", "0-1023", "Mems_allowed_list:", "x"]
        let fake = try FakeRoot()
        for _ in 0..<2000 {
            // The machine afresh, then one to three of its files mutated.
            try fake.write("/sys/devices/system/cpu/online", "0-3\n")
            try fake.write("/sys/devices/system/node/node0/cpulist", "0-1\n")
            try fake.write("/sys/devices/system/node/node1/cpulist", "2-3\n")
            try fake.write("/proc/self/cgroup", "0::/a/b\n")
            try fake.write("/proc/self/mountinfo", "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n")
            for file in files.dropFirst(2).filter({ !$0.hasSuffix("cpulist") && $0.hasPrefix("/sys/fs") || $0.hasSuffix("status")
                || $0.hasSuffix("meminfo") || $0.hasSuffix("distance") || $0.hasSuffix("present") }) {
                try? FileManager.default.removeItem(atPath: fake.path + file)
            }
            for _ in 0...Int(random.next() % 3) {
                let file = files[Int(random.next() % UInt64(files.count))]
                let text = (0..<Int(random.next() % 6)).map { _ in pieces[Int(random.next() % UInt64(pieces.count))] }.joined()
                try fake.write(file, text)
            }
            // A hang is a reading that does not come back in good time (each takes microseconds); a crash
            // ends the test process. (A budget of at least 1 and a non-empty usable list hold by construction.)
            let start = ContinuousClock.now
            _ = CPUBudget.read(root: fake.root)
            #expect(ContinuousClock.now - start < .seconds(2))
        }
    }
}
