import Foundation
import Testing
@testable import KTask

/// A throw-away filesystem root: files written under it, removed at the end.
final class FakeRoot {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("ktask-root-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ absolute: String, _ contents: String) throws {
        let full = path + absolute
        let folder = (full as NSString).deletingLastPathComponent
        var isFolder: ObjCBool = false
        if !FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        // Plain POSIX calls: the fuzz test writes thousands of these.
        let fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: full]) }
        defer { close(fd) }
        let bytes = Array(contents.utf8)
        guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: full])
        }
    }

    var root: SystemRoot { SystemRoot(path: path) }

    /// A 4-CPU, one-node machine with cgroup v2 at /sys/fs/cgroup and the process in /a/b.
    static func cgroupV2Machine() throws -> FakeRoot {
        try machine(cgroup: "0::/a/b", mountinfo: "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate")
    }

    /// A 4-CPU, one-node machine with cgroup v1's cpu controller at /sys/fs/cgroup/cpu and the process in /job.
    static func cgroupV1Machine() throws -> FakeRoot {
        try machine(cgroup: "4:cpu,cpuacct:/job", mountinfo: "30 23 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,cpuacct")
    }

    private static func machine(cgroup: String, mountinfo: String) throws -> FakeRoot {
        let fake = try FakeRoot()
        try fake.write("/sys/devices/system/cpu/online", "0-3\n")
        try fake.write("/sys/devices/system/node/node0/cpulist", "0-3\n")
        try fake.write("/proc/self/cgroup", cgroup + "\n")
        try fake.write("/proc/self/mountinfo", mountinfo + "\n")
        return fake
    }
}

@Suite("Limits read from fake roots: quotas, affinity, malformed files")
struct FakeRootLimitTests {
    @Test("cgroup v2: the tightest cpu.max on the way to the root counts")
    func parentQuotaTighter() throws {
        let fake = try FakeRoot.cgroupV2Machine()
        try fake.write("/sys/fs/cgroup/a/b/cpu.max", "max 100000\n")
        try fake.write("/sys/fs/cgroup/a/cpu.max", "150000 100000\n")
        try fake.write("/sys/fs/cgroup/cpu.max", "max 100000\n")
        let budget = CPUBudget.read(root: fake.root)
        #expect(budget.cgroup.quotaCPUs == 1.5)
        #expect(budget.budget == 2)
        #expect(budget.limits.contains { $0.kind == "cpu quota" && $0.source == "/sys/fs/cgroup/a/cpu.max" })
    }

    @Test("cgroup v2: a 0.5-CPU quota gives a budget of 1")
    func halfCPU() throws {
        let fake = try FakeRoot.cgroupV2Machine()
        try fake.write("/sys/fs/cgroup/a/b/cpu.max", "50000 100000\n")
        try fake.write("/sys/fs/cgroup/a/b/cpuset.cpus.effective", "1-3\n")
        let budget = CPUBudget.read(root: fake.root)
        #expect(budget.budget == 1)
        #expect(budget.usable.description == "1-3")
    }

    @Test("cgroup v1: cfs quota and period, found through /proc/mounts, the cpu controller named with cpuacct")
    func cgroupV1Quota() throws {
        let fake = try FakeRoot()
        try fake.write("/sys/devices/system/cpu/online", "0-7\n")
        try fake.write("/proc/self/cgroup", "3:cpuset:/job\n2:cpu,cpuacct:/svc/x\n")
        try fake.write("/proc/mounts", """
            cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0
            cgroup /sys/fs/cgroup/cpuset cgroup rw,cpuset 0 0

            """)
        try fake.write("/sys/fs/cgroup/cpu,cpuacct/svc/x/cpu.cfs_quota_us", "-1\n")
        try fake.write("/sys/fs/cgroup/cpu,cpuacct/svc/cpu.cfs_quota_us", "300000\n")
        try fake.write("/sys/fs/cgroup/cpu,cpuacct/svc/cpu.cfs_period_us", "100000\n")
        try fake.write("/sys/fs/cgroup/cpuset/job/cpuset.cpus", "0-5\n")
        try fake.write("/sys/fs/cgroup/cpuset/cpuset.cpus", "0-7\n")
        let budget = CPUBudget.read(root: fake.root)
        #expect(budget.cgroup.quotaCPUs == 3)
        #expect(budget.usable.description == "0-5")
        #expect(budget.budget == 3)
    }

    @Test("legacy cpuset filesystem through /proc/self/cpuset")
    func legacyCpuset() throws {
        let fake = try FakeRoot()
        try fake.write("/sys/devices/system/cpu/online", "0-7\n")
        try fake.write("/proc/self/cpuset", "/batch/job1\n")
        try fake.write("/proc/mounts", "none /dev/cpuset cpuset rw 0 0\n")
        try fake.write("/dev/cpuset/batch/job1/cpus", "2-3\n")
        #expect(CPUBudget.read(root: fake.root).usable.description == "2-3")
    }

    @Test("a container's cgroup path is taken relative to its mount's root")
    func mountRoot() throws {
        let fake = try FakeRoot()
        try fake.write("/sys/devices/system/cpu/online", "0-7\n")
        try fake.write("/proc/self/cgroup", "0::/docker/abc\n")
        try fake.write("/proc/self/mountinfo", "30 23 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n")
        try fake.write("/sys/fs/cgroup/cpu.max", "200000 100000\n")
        #expect(CPUBudget.read(root: fake.root).budget == 2)
    }

    @Test("a cgroup whose name only starts with the mount's root is not under it: none of its quotas is read")
    func mountRootIsAPathPrefixNotAStringPrefix() throws {
        let fake = try FakeRoot()
        try fake.write("/sys/devices/system/cpu/online", "0-7\n")
        // The process is in /docker/abcdef; the mount shows /docker/abc, a different cgroup.
        try fake.write("/proc/self/cgroup", "0::/docker/abcdef/x\n")
        try fake.write("/proc/self/mountinfo", "30 23 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n")
        // Read by string prefix, "def/x" under the mount would be taken for the process's cgroup.
        try fake.write("/sys/fs/cgroup/def/x/cpu.max", "100000 100000\n")
        try fake.write("/sys/fs/cgroup/cpu.max", "200000 100000\n")
        let budget = CPUBudget.read(root: fake.root)
        #expect(budget.cgroup.quotaCPUs == nil, "no quota of an unrelated cgroup")
        #expect(budget.cgroup.notes.contains { $0.contains("outside /sys/fs/cgroup") }, "\(budget.cgroup.notes)")
        #expect(CgroupLimits.cpuCgroupFolder(root: fake.root)?.folder == nil, "helpers' cgroup not made in an unrelated cgroup")
    }

    @Test("of two mounts of the hierarchy, the one whose root holds the process's cgroup is read")
    func mountHoldingTheCgroupWins() throws {
        let fake = try FakeRoot()
        try fake.write("/sys/devices/system/cpu/online", "0-7\n")
        try fake.write("/proc/self/cgroup", "0::/svc/job\n")
        // An unrelated subtree's bind mount first, then the whole hierarchy.
        try fake.write("/proc/self/mountinfo", """
            30 23 0:26 /other /mnt/other rw - cgroup2 cgroup2 rw
            31 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw

            """)
        try fake.write("/sys/fs/cgroup/svc/job/cpu.max", "300000 100000\n")
        #expect(CPUBudget.read(root: fake.root).cgroup.quotaCPUs == 3)
    }

    @Test("affinity under a snapshot root comes from its proc/self/status")
    func affinityFromStatus() throws {
        let fake = try FakeRoot.cgroupV2Machine()
        try fake.write("/proc/self/status", "Name:\tx\nCpus_allowed:\tc\nCpus_allowed_list:\t2-3\n")
        let budget = CPUBudget.read(root: fake.root)
        #expect(budget.affinity?.description == "2-3")
        #expect(budget.usable.description == "2-3")
    }

    @Test("malformed and missing files fall back with a stated reason")
    func malformedFiles() throws {
        let fake = try FakeRoot()
        try fake.write("/sys/devices/system/cpu/online", "zero-three\n")
        try fake.write("/sys/devices/system/cpu/cpu0/topology/core_id", "0\n")
        try fake.write("/sys/devices/system/cpu/cpu1/online", "1\n")
        try fake.write("/sys/devices/system/cpu/cpu2/online", "0\n")
        try fake.write("/proc/self/cgroup", "0::/a\n")
        try fake.write("/proc/self/mountinfo", "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
        try fake.write("/sys/fs/cgroup/a/cpu.max", "lots\n")
        try fake.write("/sys/fs/cgroup/a/cpuset.cpus.effective", "\0\0")
        let budget = CPUBudget.read(root: fake.root)
        #expect(budget.topology.online.description == "0-1")
        #expect(budget.topology.offline.description == "2")
        #expect(budget.budget == 2)
        #expect(budget.notes.contains { $0.contains("cpu/online is malformed") })
        #expect(budget.notes.contains { $0.contains("cpu.max is malformed") })
        #expect(budget.notes.contains { $0.contains("cpuset.cpus.effective is empty or malformed") })
        #expect(budget.topology.nodes.map(\.id) == [0])
        #expect(budget.notes.contains { $0.contains("no NUMA nodes") })
    }

    @Test("an empty root still gives one usable CPU and says why")
    func emptyRoot() throws {
        let fake = try FakeRoot()
        let budget = CPUBudget.read(root: fake.root)
        #expect(budget.usable.count == 1 && budget.budget == 1)
        #expect(!budget.notes.isEmpty)
    }
}

@Suite("Energy: when ktask holds back its helpers")
struct EnergyTests {
    func energy(_ files: [String: String]) throws -> EnergyState {
        let fake = try FakeRoot()
        for (path, contents) in files { try fake.write(path, contents) }
        return EnergyState.read(root: fake.root)
    }

    let policy = "/sys/devices/system/cpu/cpufreq/policy0"

    @Test("on battery: a battery discharging and no mains online")
    func battery() throws {
        let onBattery = try energy(["/sys/class/power_supply/BAT0/type": "Battery\n", "/sys/class/power_supply/BAT0/status": "Discharging\n",
                                    "/sys/class/power_supply/AC/type": "Mains\n", "/sys/class/power_supply/AC/online": "0\n"])
        #expect(onBattery.restricted && onBattery.reason.contains("on battery"))
        let charging = try energy(["/sys/class/power_supply/BAT0/type": "Battery\n", "/sys/class/power_supply/BAT0/status": "Charging\n",
                                   "/sys/class/power_supply/AC/type": "Mains\n", "/sys/class/power_supply/AC/online": "1\n"])
        #expect(!charging.restricted)
    }

    @Test("low-power platform profile")
    func platformProfile() throws {
        #expect(try energy(["/sys/firmware/acpi/platform_profile": "low-power\n"]).restricted)
        #expect(try !energy(["/sys/firmware/acpi/platform_profile": "balanced\n"]).restricted)
    }

    @Test("energy-performance preference power")
    func preferencePower() throws {
        let state = try energy(["\(policy)/scaling_driver": "intel_pstate\n", "\(policy)/scaling_governor": "powersave\n",
                                "\(policy)/energy_performance_preference": "power\n"])
        #expect(state.restricted && state.reason.contains("energy-performance preference"))
    }

    @Test("powersave is restrictive under acpi-cpufreq, not under intel_pstate or amd-pstate-epp (active)")
    func powersaveDependsOnDriver() throws {
        #expect(try energy(["\(policy)/scaling_driver": "acpi-cpufreq\n", "\(policy)/scaling_governor": "powersave\n"]).restricted)
        #expect(try energy(["\(policy)/scaling_driver": "intel_cpufreq\n", "\(policy)/scaling_governor": "powersave\n"]).restricted)
        #expect(try !energy(["\(policy)/scaling_driver": "intel_pstate\n", "\(policy)/scaling_governor": "powersave\n",
                             "\(policy)/energy_performance_preference": "balance_performance\n"]).restricted)
        #expect(try !energy(["\(policy)/scaling_driver": "amd-pstate-epp\n", "\(policy)/scaling_governor": "powersave\n"]).restricted)
    }

    @Test("the conservative governor")
    func conservative() throws {
        #expect(try energy(["\(policy)/scaling_driver": "acpi-cpufreq\n", "\(policy)/scaling_governor": "conservative\n"]).restricted)
        #expect(try !energy(["\(policy)/scaling_driver": "acpi-cpufreq\n", "\(policy)/scaling_governor": "ondemand\n"]).restricted)
    }

    @Test("saving energy means no helpers by default; an explicit cap overrides it")
    func capUnderEnergySaving() throws {
        let saving = try HelperCap.resolve(apiCap: nil, cpuBudget: 8, energyRestricted: true)
        #expect(saving == HelperCap(maxBusyHelpers: 0, source: .energy))
        #expect(try HelperCap.resolve(apiCap: 3, cpuBudget: 8, energyRestricted: true).maxBusyHelpers == 3)
        #expect(try HelperCap.resolve(apiCap: nil, cpuBudget: 8, energyRestricted: false) == HelperCap(maxBusyHelpers: 7, source: .cpuBudget))
    }

    @Test("ktask info on the hybrid laptop names the driver, governor and preference it found")
    func laptopFixture() {
        let state = EnergyState.read(root: fixtureRoot("20em64t-hybrid-1p6c2t+2ca4co1t"))
        #expect(state.reason.contains("powersave") && state.reason.contains("balance_performance"))
    }
}

#if canImport(Glibc)
import Glibc
#endif
