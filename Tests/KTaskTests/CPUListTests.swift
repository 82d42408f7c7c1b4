import Testing
@testable import KTask

@Suite("CPU lists and usable CPUs")
struct CPUListTests {
    @Test("the kernel's list format parses, NUL and newline endings included")
    func parsing() {
        #expect(CPUList(parsing: "0-3,8,10-11\n")?.cpus == [0, 1, 2, 3, 8, 10, 11])
        #expect(CPUList(parsing: "5\0\0")?.cpus == [5])
        #expect(CPUList(parsing: "\n")?.cpus == [])
        #expect(CPUList(parsing: "3-1") == nil)
        #expect(CPUList(parsing: "a,b") == nil)
        #expect(CPUList(parsing: "1,,2") == nil)
        #expect(CPUList([3, 1, 2, 2, 7]).description == "1-3,7")
    }

    @Test("cpumap hex masks parse, most significant word first")
    func masks() {
        #expect(CPUList(parsingMask: "0000ffff\n")?.description == "0-15")
        #expect(CPUList(parsingMask: "00000001,00000000")?.cpus == [32])
        #expect(CPUList(parsingMask: "00000000,00000000")?.isEmpty == true)
        #expect(CPUList(parsingMask: "xyz") == nil)
    }

    @Test("on this machine, usable CPUs are online ∩ the affinity mask read back from the kernel")
    func usableMatchesAffinity() throws {
        let budget = CPUBudget.read()
        let affinity = try #require(budget.affinity)
        #expect(!budget.usable.isEmpty)
        #expect(Set(budget.usable.cpus).isSubset(of: affinity.cpus))
        #expect(Set(budget.usable.cpus).isSubset(of: budget.topology.online.cpus))
        // Read here from the kernel's own lists, not through CPUBudget: online CPUs, and this thread's allowed
        // CPUs (the affinity mask, already inside the cgroup's cpuset).
        let online = try #require(readSmallFile("/sys/devices/system/cpu/online").flatMap(CPUList.init(parsing:)))
        let status = try #require(readSmallFile("/proc/thread-self/status"))
        let allowedLine = try #require(status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") })
        let allowed = try #require(allowedLine.split(whereSeparator: { $0 == " " || $0 == "\t" }).last.flatMap { CPUList(parsing: String($0)) })
        let expected = online.intersection(allowed)
        #expect(budget.usable == expected)
        // The budget is that count, or fewer where a cgroup CPU quota allows fewer (⌈quota⌉).
        let quota = budget.cgroup.quotaCPUs.flatMap { Int(exactly: $0.rounded(.up)) } ?? Int.max
        #expect(budget.budget == max(1, min(expected.count, quota)), "\(budget.budget) of \(expected), quota \(String(describing: budget.cgroup.quotaCPUs))")
        #expect(SystemLimits.current().budget == budget.budget)
    }

    @Test("a job never uses more threads than the affinity mask allows")
    func affinityLimitsThreads() async {
        await #expect(processExitsWith: .success) {
            guard Affinity.pinCurrentThread(to: CPUList([0])) else { exit(2) }
            let report = try? runJob(0..<1_000_000) { _ in }
            exit(report?.threadsUsed == 1 && SystemLimits.current().budget == 1 ? 0 : 1)
        }
    }
}

import CKTaskShims
#if canImport(Glibc)
import Glibc
#endif
