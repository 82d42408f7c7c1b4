import Foundation
import Synchronization
import Testing
@testable import KTask

/// Each node's CPUs on a fixture machine as the engine takes them (``SystemLimits``): its usable CPUs, or
/// for a memory-only node the CPUs that serve it.
func fixtureNodes(_ name: String) -> [NodeCPUs] {
    let budget = CPUBudget.read(root: fixtureRoot(name))
    return budget.topology.nodes.map { NodeCPUs(id: $0.id, cpus: budget.servingCPUs(of: $0).cpus, memoryOnly: $0.cpus.isEmpty,
                                             distances: $0.distances) }
}

@Suite("Placement plans on real multi-node machines")
struct LanePlanTests {
    let arm = fixtureNodes("128arm-2pa2n8cluster4co")

    @Test("the caller's node only: helpers pinned to the node of the caller's CPU, at most its CPUs")
    func callerNode() throws {
        let plan = try LanePlan.single(placement: .callerNodeOnly, threads: 64, callerCPU: 40, nodes: arm)
        #expect(plan.lanes == [LanePlan.Lane(node: 1, cpus: CPUList(32...63), helpers: 31, part: 0)])
        let small = try LanePlan.single(placement: .callerNode, threads: 4, callerCPU: 100, nodes: arm)
        #expect(small.lanes == [LanePlan.Lane(node: 3, cpus: CPUList(96...127), helpers: 3, part: 0)])
    }

    @Test("the default spills past the caller's node as the kernel's ktask did: its node first, then the nearest by distance")
    func spillsToNearestNodes() throws {
        // 16 nodes of 8 CPUs; from node 0, nodes 1-3 are at distance 17, nodes 4-15 at 20; node 16 has no CPU.
        let ia64 = fixtureNodes("128ia64-17n4s2c")
        let sixteen = try LanePlan.single(placement: .callerNode, threads: 16, callerCPU: 3, nodes: ia64)
        #expect(sixteen.lanes.map(\.node) == [0, 1, 2, 3])
        #expect(sixteen.lanes.map(\.helpers) == [7, 3, 3, 2], "node 0's 8 CPUs (the caller's one of them), then its nearest")
        #expect(sixteen.lanes[1].cpus == CPUList(8...15))
        let strict = try LanePlan.single(placement: .callerNodeOnly, threads: 16, callerCPU: 3, nodes: ia64)
        #expect(strict.lanes.map(\.helpers) == [7])
        let all = try LanePlan.single(placement: .callerNode, threads: 128, callerCPU: 3, nodes: ia64)
        #expect(all.helpers == 127 && all.lanes.count == 16 && !all.lanes.contains { $0.node == 16 })
        // A per-node cap of 2: every node keeps to it, and the job still gets its threads elsewhere.
        let capped = try LanePlan.single(placement: .callerNode, threads: 16, callerCPU: 3, nodes: ia64) { _ in 2 }
        #expect(capped.helpers == 15 && capped.lanes.allSatisfy { $0.helpers <= 2 })
        #expect(Array(capped.lanes.prefix(4).map(\.node)) == [0, 1, 2, 3], "the nearest nodes first")
        // Fewer helpers to be had (the pool's cap): the farthest lanes give them up, the caller's node stays full.
        var trimmed = sixteen
        let cut = trimmed.trim(toHelpers: 9)
        #expect(cut)
        #expect(trimmed.lanes.map(\.helpers) == [7, 2, 0, 0])
    }

    @Test("given nodes: helpers spread by free CPUs, the caller's own CPU counted")
    func givenNodes() throws {
        let plan = try LanePlan.single(placement: .nodes([0, 2]), threads: 9, callerCPU: 5, nodes: arm)
        #expect(plan.lanes.map(\.node) == [0, 2])
        #expect(plan.lanes.map(\.helpers) == [4, 4])
        #expect(plan.lanes[1].cpus == CPUList(64...95))
        let all = try LanePlan.single(placement: .nodes([0, 2]), threads: 128, callerCPU: 5, nodes: arm)
        #expect(all.lanes.map(\.helpers) == [31, 32])
    }

    @Test("anywhere, and a single usable node, are not pinned")
    func unpinned() throws {
        let anywhere = try LanePlan.single(placement: .anywhere, threads: 8, callerCPU: 0, nodes: arm)
        #expect(anywhere.lanes == [LanePlan.Lane(node: nil, cpus: nil, helpers: 7, part: 0)])
        // 32amd64's cgroup leaves CPUs on nodes 0 and 1 only; nvidia's leaves node 0 alone.
        let nvidia = try LanePlan.single(placement: .callerNode, threads: 8, callerCPU: 3, nodes: fixtureNodes("nvidiagpunumanodes"))
        #expect(nvidia.lanes.first?.cpus == nil)
    }

    @Test("one range per node: each node's helpers start on its range; the limit is spread")
    func perNode() throws {
        let nodes = fixtureNodes("128ia64-17n4s2c")
        let parts = (0..<4).map { (node: $0, usefulThreads: 100) }
        let plan = try LanePlan.perNode(parts, threadLimit: 32, callerCPU: 9, nodes: nodes)
        #expect(plan.callerPart == 1)
        #expect(plan.lanes.map(\.part) == [0, 1, 2, 3])
        #expect(plan.lanes.map(\.helpers) == [8, 7, 8, 8])
        #expect(plan.lanes[2].cpus == CPUList(16...23))
        let limited = try LanePlan.perNode(parts, threadLimit: 5, callerCPU: 9, nodes: nodes)
        #expect(limited.helpers == 4)
        let fewItems = try LanePlan.perNode([(node: 0, usefulThreads: 2), (node: 1, usefulThreads: 1)], threadLimit: 32,
                                            callerCPU: 0, nodes: nodes)
        #expect(fewItems.lanes.map(\.helpers) == [1, 1])
    }

    @Test("a job placed on a memory-only node (HBM, NVM, CXL) runs on the CPUs that serve it")
    func memoryOnlyPlacement() throws {
        let tiers = fixtureNodes("fakeheteromemtiers")
        let onHBM = try LanePlan.single(placement: .nodes([8]), threads: 4, callerCPU: 4, nodes: tiers)
        #expect(onHBM.lanes.map(\.cpus) == [CPUList([0, 1])] && onHBM.helpers == 2)
        let initiators = fixtureNodes("fakememinitiators-1np2c+1npp+gi")
        let perNode = try LanePlan.perNode([(node: 10, usefulThreads: 8), (node: 5, usefulThreads: 8)], threadLimit: 8,
                                           callerCPU: 0, nodes: initiators)
        #expect(perNode.lanes.map(\.cpus) == [CPUList([2, 3, 6, 7]), CPUList([0, 1])])
        #expect(perNode.callerPart == 1, "the caller's CPU 0 serves node 5")
        // The caller's node is one with CPUs of its own, not a memory node its CPUs serve.
        let home = try LanePlan.single(placement: .callerNode, threads: 4, callerCPU: 2, nodes: tiers)
        #expect(home.lanes.first?.node == 1)
        #expect(home.lanes.allSatisfy { lane in !tiers.contains { $0.id == lane.node && $0.memoryOnly } }, "a job spills to nodes with CPUs only")
        let ia64 = try LanePlan.single(placement: .nodes([16]), threads: 4, callerCPU: 0, nodes: fixtureNodes("128ia64-17n4s2c"))
        #expect(ia64.lanes.first?.cpus?.count == 128, "node 16 is served by every node at distance 14")
    }

    @Test("unknown nodes and nodes without usable CPUs are typed errors")
    func badNodes() {
        // nvidia: node 8's CPUs are outside the effective cpuset.
        #expect(throws: KTask.Error.nodeWithoutUsableCPUs(8)) {
            try LanePlan.perNode([(node: 8, usefulThreads: 4)], threadLimit: 8, callerCPU: 0, nodes: fixtureNodes("nvidiagpunumanodes"))
        }
        #expect(throws: KTask.Error.unknownNode(7, available: [0, 1, 2, 3])) {
            try LanePlan.single(placement: .nodes([7]), threads: 4, callerCPU: 0, nodes: arm)
        }
    }
}

@Suite("Placement on this machine", .serialized)
struct LivePlacementTests {
    /// The calling thread's allowed CPUs as the kernel reports them.
    static func allowedCPUs(tid: Int) -> String? {
        guard let status = try? String(contentsOfFile: "/proc/self/task/\(tid)/status", encoding: .utf8) else { return nil }
        return status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }?
            .split(separator: "\t").last.map(String.init)
    }

    @Test("a per-node job covers each node's range exactly once")
    func perNodeCoverage() throws {
        let node = try #require(SystemLimits.current().nodes.first { !$0.cpus.isEmpty }).id
        let chunks = Locked<[Range<Int>]>([])
        let report = try KTask.run(perNode: [KTask.NodeRange(node: node, range: 100..<50_000)], options: KTask.Options(minChunk: 100)) { chunk in
            chunks.withLock { $0.append(chunk) }
        }
        #expect(tilingProblems(chunks.current, range: 100..<50_000, align: 1, minChunk: 100).isEmpty)
        #expect(report.claimsPerThread.reduce(0, +) == chunks.current.count)
    }

    @Test("helpers of a job placed on a node run with that node's CPUs as their affinity")
    func helpersPinned() throws {
        let node = try #require(SystemLimits.current().nodes.first { !$0.cpus.isEmpty })
        let pool = try KTask.Pool(name: "kt-pin", maxBusyHelpers: 1, isolateHelpers: false)
        let callerTID = ThreadSnapshot.currentTID
        let helperMasks = Locked<Set<String>>([])
        // At the caller's priority: on a busy machine (other suites building beside) a nice-19 helper may not
        // run before the caller is done, and this test is about where helpers run, not when.
        let report = try KTask.run(0..<16, options: KTask.Options(maxThreads: 2, helperPriority: .inheritCaller, placement: .nodes([node.id]), pool: pool)) { _ in
            let tid = ThreadSnapshot.currentTID
            if tid != callerTID, let mask = Self.allowedCPUs(tid: tid) { helperMasks.withLock { _ = $0.insert(mask) } }
            usleep(2_000)
        }
        try #require(!helperMasks.current.isEmpty, "no helper joined")
        #expect(helperMasks.current == [node.cpus.description])
        #expect(report.helpersPerNode == [node.id: 1], "the report names the node its helper was pinned to")
    }

    @Test("a per-node cap of 0 keeps node-placed jobs to the caller; unplaced jobs still get helpers")
    func perNodeCap() throws {
        let node = try #require(SystemLimits.current().nodes.first { !$0.cpus.isEmpty }).id
        let pool = try KTask.Pool(name: "kt-ncap", maxBusyHelpers: 1, isolateHelpers: false)
        try pool.setMaxBusyHelpersPerNode(0)
        // At the caller's priority: on a busy machine a nice-19 helper may come too late to join (the caps are the point).
        let placed = try KTask.run(0..<16, options: KTask.Options(maxThreads: 2, helperPriority: .inheritCaller, placement: .nodes([node]),
                                                                  pool: pool)) { _ in usleep(1_000) }
        #expect(placed.threadsUsed == 1)
        let anywhere = try KTask.run(0..<16, options: KTask.Options(maxThreads: 2, helperPriority: .inheritCaller, placement: .anywhere,
                                                                    pool: pool)) { _ in usleep(1_000) }
        #expect(anywhere.threadsUsed == 2)
        #expect(placed.helpersPerNode.isEmpty && anywhere.helpersPerNode.isEmpty, "no helper pinned: none per node")
        #expect(throws: KTask.Error.invalidHelperCap(-1)) { try pool.setMaxBusyHelpersPerNode(-1) }
    }

    @Test("unknown, repeated and empty node lists are typed errors")
    func badNodeInput() {
        #expect(throws: KTask.Error.unknownNode(4095, available: SystemLimits.current().nodes.map(\.id))) {
            try KTask.run(perNode: [KTask.NodeRange(node: 4095, range: 0..<1000)]) { _ in }
        }
        #expect(throws: KTask.Error.duplicateNode(0)) {
            try KTask.run(perNode: [KTask.NodeRange(node: 0, range: 0..<10), KTask.NodeRange(node: 0, range: 10..<20)]) { _ in }
        }
        #expect(throws: KTask.Error.noNodes) { try KTask.run(0..<10, options: KTask.Options(placement: .nodes([]))) { _ in } }
        #expect(throws: KTask.Error.negativeRangeStart(-1)) { try KTask.run(perNode: [KTask.NodeRange(node: 0, range: -1..<5)]) { _ in } }
    }

    @Test("memory bound to a node has its pages there, read back with move_pages")
    func memoryOnNode() throws {
        let node = try #require(SystemLimits.current().nodes.first { !$0.cpus.isEmpty }).id
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let bytes = 64 * pageSize
        let base = try #require(mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        defer { munmap(base, bytes) }
        try KTask.NodeMemory.bind(UnsafeMutableRawBufferPointer(start: base, count: bytes), to: [node])
        let untouched = try KTask.NodeMemory.nodes(ofPagesIn: UnsafeRawBufferPointer(start: base, count: bytes), pageSize: pageSize)
        #expect(untouched.allSatisfy { $0 == nil })
        memset(base, 1, bytes)
        let nodes = try KTask.NodeMemory.nodes(ofPagesIn: UnsafeRawBufferPointer(start: base, count: bytes), pageSize: pageSize)
        #expect(nodes == Array(repeating: node, count: 64))
        #expect(throws: KTask.Error.self) {
            try KTask.NodeMemory.bind(UnsafeMutableRawBufferPointer(start: base, count: bytes), to: [4000])
        }
    }
}
