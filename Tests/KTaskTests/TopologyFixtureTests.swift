import Foundation
import Testing
@testable import KTask

/// What the fixtures' README says each real machine has, as ktask must read it.
struct MachineFacts: Sendable, CustomStringConvertible {
    let fixture: String
    /// Node id → that node's usable CPUs (every node listed, CPU-less ones with "").
    let usableByNode: [Int: String]
    let online: String
    let offline: String
    let usable: String
    let budget: Int
    var description: String { fixture }
}

let fixtureMachines: [MachineFacts] = [
    MachineFacts(fixture: "20em64t-hybrid-1p6c2t+2ca4co1t", usableByNode: [0: "0-19"],
                 online: "0-19", offline: "", usable: "0-19", budget: 20),
    MachineFacts(fixture: "32intel64-2p8co2t+8ve", usableByNode: [0: "0-7,16-23", 1: "8-15,24-31"],
                 online: "0-31", offline: "", usable: "0-31", budget: 32),
    MachineFacts(fixture: "128arm-2pa2n8cluster4co", usableByNode: [0: "0-31", 1: "32-63", 2: "64-95", 3: "96-127"],
                 online: "0-127", offline: "", usable: "0-127", budget: 128),
    MachineFacts(fixture: "32amd64-4s2n4c-cgroup2",
                 usableByNode: [0: "0-3", 1: "4-5", 2: "", 3: "", 4: "", 5: "", 6: "", 7: ""],
                 online: "0-31", offline: "", usable: "0-5", budget: 6),
    MachineFacts(fixture: "128ia64-17n4s2c",
                 usableByNode: Dictionary(uniqueKeysWithValues: (0..<16).map { ($0, "\($0 * 8)-\($0 * 8 + 7)") } + [(16, "")]),
                 online: "0-127", offline: "", usable: "0-127", budget: 128),
    MachineFacts(fixture: "offline-cpu0-node0", usableByNode: [1: "5,7,9,11,13,15,17,19"],
                 online: "4-20", offline: "0-3,21-23", usable: "4-20", budget: 17),
    MachineFacts(fixture: "nvidiagpunumanodes",
                 usableByNode: [0: "0-15", 8: "", 250: "", 251: "", 252: "", 253: "", 254: "", 255: ""],
                 online: "0-15,88-103", offline: "", usable: "0-15", budget: 16),
    MachineFacts(fixture: "16em64t-4s2c2t-offlines", usableByNode: [0: "0-1,3-4,6-12,15"],
                 online: "0-1,3-4,6-12,15", offline: "2,5,13-14", usable: "0-1,3-4,6-12,15", budget: 12),
]

/// The fixtures folder, found from this source file (Tests/KTaskTests → Tests/Fixtures/topologies).
func fixtureRoot(_ name: String) -> SystemRoot {
    let testsFolder = String(#filePath).split(separator: "/").dropLast(2).joined(separator: "/")
    return SystemRoot(path: "/\(testsFolder)/Fixtures/topologies/\(name)")
}

@Suite("Real machine snapshots read as their README says")
struct TopologyFixtureTests {
    @Test("nodes, online, offline and usable CPUs, budget", arguments: fixtureMachines)
    func machineFacts(_ facts: MachineFacts) throws {
        let budget = CPUBudget.read(root: fixtureRoot(facts.fixture))
        let byNode = Dictionary(uniqueKeysWithValues: budget.usableByNode.map { ($0.node.id, $0.cpus.description) })
        #expect(byNode == facts.usableByNode)
        #expect(budget.topology.online.description == facts.online)
        #expect(budget.topology.offline.description == facts.offline)
        #expect(budget.usable.description == facts.usable)
        #expect(budget.budget == facts.budget)
        // No fixture has proc/self/status: the affinity mask must not be this machine's.
        #expect(budget.affinity == nil)
        #expect(budget.notes.contains { $0.contains("Cpus_allowed_list") })
    }

    @Test("memory-only nodes: 128ia64 node 16 has ~1 GiB and no CPU; nvidia's GPU nodes 15 GiB each")
    func memoryOnlyNodes() throws {
        let ia64 = NUMATopology.read(root: fixtureRoot("128ia64-17n4s2c"))
        let node16 = try #require(ia64.nodes.first { $0.id == 16 })
        #expect(node16.cpus.isEmpty)
        let memory = try #require(node16.memoryBytes)
        #expect(memory > 900 << 20 && memory < 1100 << 20)
        #expect(node16.distances[0] == 14)
        let nvidia = NUMATopology.read(root: fixtureRoot("nvidiagpunumanodes"))
        #expect(nvidia.nodes.map(\.id) == [0, 8, 250, 251, 252, 253, 254, 255])
        let gpu = try #require(nvidia.nodes.first { $0.id == 250 })
        #expect(gpu.memoryBytes == 15 << 30)
        #expect(gpu.distances[0] == 80 && gpu.distances[250] == 10)
    }

    @Test("distances follow the sparse node ids")
    func distances() {
        let arm = NUMATopology.read(root: fixtureRoot("128arm-2pa2n8cluster4co"))
        #expect(arm.nodes[0].distances == [0: 10, 1: 16, 2: 32, 3: 33])
        let nvidia = NUMATopology.read(root: fixtureRoot("nvidiagpunumanodes"))
        #expect(nvidia.nodes.first { $0.id == 8 }?.distances[0] == 40)
    }

    @Test("the effective cpuset wins over the configured one (nvidiagpunumanodes)")
    func effectiveCpuset() {
        let limits = CgroupLimits.read(root: fixtureRoot("nvidiagpunumanodes"))
        #expect(limits.cpuset?.description == "0-87")
        #expect(limits.limits.first?.source == "/sys/fs/cgroup/cpuset/jjh/cpuset.effective_cpus")
    }

    @Test("cgroup v2 found through /proc/self/cpuset and a non-standard mount (32amd64)")
    func cgroupV2WithoutProcSelfCgroup() {
        let limits = CgroupLimits.read(root: fixtureRoot("32amd64-4s2n4c-cgroup2"))
        #expect(limits.cpuset?.description == "0-5")
        #expect(limits.limits.map(\.source) == ["/cgroup/unified/uid_2008/job_15389/step_0/cpuset.cpus.effective"])
    }

    @Test("a CPU in no node stays usable (offline-cpu0-node0: even CPUs 4-20)")
    func cpusWithoutNode() {
        let budget = CPUBudget.read(root: fixtureRoot("offline-cpu0-node0"))
        #expect(budget.topology.node(ofCPU: 4) == nil)
        #expect(budget.usable.contains(4) && budget.usable.contains(20))
    }

    @Test("the hybrid laptop (intel_pstate, powersave, balance_performance) does not save energy")
    func hybridLaptopEnergy() {
        let energy = EnergyState.read(root: fixtureRoot("20em64t-hybrid-1p6c2t+2ca4co1t"))
        #expect(!energy.restricted)
        #expect(energy.reason.contains("intel_pstate"))
    }
}

/// Every fixture read as hwloc's `lstopo` shows it (its expected output beside the snapshot, parsed
/// here): the usable CPUs are lstopo's PUs; each NUMA node lstopo shows is one whose memory the process
/// may use, and the CPUs a job placed on it runs on are the PUs of the object lstopo hangs it from.
@Suite("Every fixture read as hwloc reads it")
struct HwlocAgreementTests {
    /// Where ktask differs from hwloc on purpose, and why.
    static let differences: [String: String] = [
        "nvidiagpunumanodes": "ktask takes cgroup v1 cpuset.effective_cpus and cpuset.effective_mems (CPUs 0-87, memory "
            + "node 0: what the kernel enforces) where hwloc takes cpuset.cpus and cpuset.mems (which add CPUs 88-103 and "
            + "node 8; lstopo hides the GPU memory nodes 250-255 by default)",
    ]
    /// Memory-only nodes that hwloc hangs from an object without CPUs, which ktask serves from the
    /// nearest CPUs by distance instead (a job placed there must run somewhere): node → those CPUs.
    static let servedByDistance: [String: [Int: String]] = [
        "128ia64-17n4s2c": [16: "0-127"],  // distance 14 to every CPU node; lstopo: a Group of its own, no PU
    ]

    static var fixtures: [String] {
        let folder = fixtureRoot("").path
        return ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
            .filter { FileManager.default.fileExists(atPath: "\(folder)/\($0)/sys") }.sorted()
    }

    @Test("usable CPUs, and each node's serving CPUs, as lstopo shows them", arguments: fixtures)
    func agreesWithHwloc(_ fixture: String) throws {
        let root = fixtureRoot(fixture)
        let expected = try #require(HwlocExpected(folder: root.path), "no hwloc-expected output in \(fixture)")
        let budget = CPUBudget.read(root: root)
        if let reason = Self.differences[fixture] {
            // The documented difference is all there is: ktask's CPUs are the part of hwloc's the kernel
            // enforces, and each node hwloc shows has them.
            #expect(Set(budget.usable.cpus).isSubset(of: expected.pus), "\(reason)")
            for (id, cpus) in expected.nodes {
                let node = try #require(budget.topology.nodes.first { $0.id == id })
                #expect(Set(budget.servingCPUs(of: node).cpus.cpus) == cpus.intersection(budget.usable.cpus), "node \(id)")
            }
            return
        }
        #expect(Set(budget.usable.cpus) == expected.pus)
        let shown = Set(budget.topology.nodes.filter { budget.memoryAllowed(on: $0.id) }.map(\.id))
        #expect(shown == Set(expected.nodes.keys), "nodes whose memory is allowed")
        for (id, cpus) in expected.nodes.sorted(by: { $0.key < $1.key }) {
            let node = try #require(budget.topology.nodes.first { $0.id == id }, "node \(id)")
            let serving = budget.servingCPUs(of: node)
            if let byDistance = Self.servedByDistance[fixture]?[id] {
                #expect(cpus.isEmpty && serving.cpus.description == byDistance && serving.reason.hasPrefix("nearest by distance"))
                continue
            }
            #expect(Set(serving.cpus.cpus) == cpus, "node \(id): \(serving.reason)")
        }
    }
}

@Suite("Memory nodes a process may use", .serialized)
struct AllowedMemoryTests {
    @Test("Mems_allowed_list in a snapshot's status leaves a node out: ktask info's reading and bind's error agree")
    func memsAllowedListExcludesANode() throws {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("ktask-mems-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: copy) }
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: fixtureRoot("32intel64-2p8co2t+8ve").path, toPath: copy)
        try FileManager.default.createDirectory(atPath: copy + "/proc/self", withIntermediateDirectories: true)
        try "Name:\tktask\nCpus_allowed_list:\t0-31\nMems_allowed_list:\t1\n".write(toFile: copy + "/proc/self/status",
                                                                                    atomically: true, encoding: .utf8)
        let budget = CPUBudget.read(root: SystemRoot(path: copy))
        #expect(budget.allowedMemoryNodes == CPUList([1]))
        #expect(budget.allowedMemorySource == "/proc/self/status Mems_allowed_list")
        #expect(!budget.memoryAllowed(on: 0) && budget.memoryAllowed(on: 1))
        #expect(throws: KTask.Error.memoryNodeNotAllowed(0, allowed: [1])) {
            try KTask.NodeMemory.check([0], available: [0, 1], allowed: budget.allowedMemoryNodes)
        }
        #expect(throws: KTask.Error.unknownNode(5, available: [0, 1])) {
            try KTask.NodeMemory.check([5], available: [0, 1], allowed: nil)
        }
        #expect(KTask.Error.memoryNodeNotAllowed(0, allowed: [1]).description.contains("allowed nodes: 1"))
    }

    @Test("the fixtures' cpuset mems: legacy 16amd64 (1-4), v1 4fake (0,2)")
    func cpusetMems() {
        let legacy = CPUBudget.read(root: fixtureRoot("16amd64-8n2c-cpusets"))
        #expect(legacy.allowedMemoryNodes?.description == "1-4" && legacy.allowedMemorySource.hasSuffix("/mems"))
        let fake = CPUBudget.read(root: fixtureRoot("4fake-4gr1nu1pu"))
        #expect(fake.allowedMemoryNodes?.description == "0,2")
    }

    @Test("a live cgroup v1 cpuset's mems are read back, and bind refuses a node outside the machine",
          .enabled(if: geteuid() == 0 && FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cpuset/cgroup.procs"),
                   "needs root and the cgroup v1 cpuset controller: skipped"))
    func liveCpusetMems() async {
        await #expect(processExitsWith: .success) {
            let group = "/sys/fs/cgroup/cpuset/ktask-mems-\(getpid())"
            guard mkdir(group, 0o755) == 0 else { exit(10) }
            let cpus = (try? String(contentsOfFile: "/sys/fs/cgroup/cpuset/cpuset.cpus", encoding: .utf8)) ?? "0"
            let nodes = SystemLimits.current().nodeIDs
            guard writeFile("\(group)/cpuset.cpus", cpus), writeFile("\(group)/cpuset.mems", "\(nodes[0])"),
                  writeFile("\(group)/cgroup.procs", "\(getpid())") else { exit(11) }
            let cgroup = CgroupLimits.read(root: .live)
            let readBack = cgroup.memoryNodes == CPUList([nodes[0]]) && cgroup.memoryNodesSource.hasPrefix(group)
            var refused = false
            do { try KTask.NodeMemory.check([nodes.max()! + 1], available: nodes, allowed: cgroup.memoryNodes) }
            catch KTask.Error.unknownNode { refused = true } catch {}
            // exit() runs no defer: leave the group and remove it first.
            _ = writeFile("/sys/fs/cgroup/cpuset/cgroup.procs", "\(getpid())")
            rmdir(group)
            exit(readBack && refused ? 0 : 1)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
