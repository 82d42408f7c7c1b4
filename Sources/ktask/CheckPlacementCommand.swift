import ArgumentParser
import Foundation
import KTask

/// `ktask check-placement --node N[,M...]`: populates memory placed on the nodes (one range per node, each
/// bound there) with `KTask.populate` and checks, by reading the kernel back, that every chunk ran on the
/// nodes' CPUs (sched_getcpu), each node's threads starting on its pages, and that every page of each range landed
/// on its node (move_pages). For checking a multi-node machine or VM; exits 1 when any is off.
struct CheckPlacementCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-placement",
        abstract: "Check that a job placed on nodes runs on their CPUs and puts its pages there.",
        discussion: """
            Populates memory bound to the nodes given (one range per node, as KTask.run(perNode:); the calling \
            thread moved to their CPUs too; chunks of at least 2 MiB) with the library's populate, then reads back \
            where each chunk ran (sched_getcpu), each thread's affinity mask, which node's pages each thread \
            pinned to a node started on (a node's threads start on its own pages, as the engine's lanes do; one \
            that wakes after they are done starts elsewhere), and where each page is (move_pages). Exit status 1 if any is off its node. \
            scripts/numa-vm-check.sh and scripts/big-vm-check.sh run it inside qemu guests.
            JSON (--format json): {"schema", "node", "node_cpus", "process_affinity", "cpus_seen", \
            "thread_masks_seen", "threads_used", "pages", "pages_on_node", "ok", "ranges": [{"node", "cpus", \
            "pages", "pages_on_node", "threads_started_here", "threads_started_elsewhere", "ok"}]}; node and node_cpus are the first node's and \
            pages_on_node counts each page on its own range's node.
            """)

    @Option(help: ArgumentHelp("The node, or nodes (comma-separated, one range each), to place the job on.", valueName: "n[,n...]"),
            transform: parseNodeIDs)
    var node: [Int]

    @Option(help: ArgumentHelp("Bytes of memory to fault in, across the nodes (K, M, G suffixes).", valueName: "size"),
            transform: SizeArgument.parse)
    var size: SizeArgument = SizeArgument(argument: "64M")!

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    /// One node's range: its pages, and the threads pinned to its CPUs by where their first chunk was.
    struct RangeResult: Encodable {
        let node: Int, cpus: [Int], pages: Int, pages_on_node: Int, threads_started_here: Int, threads_started_elsewhere: Int, ok: Bool
    }

    func run() throws {
        let budget = CPUBudget.read()
        // The CPUs a job placed on each node runs on: its own, or a memory-only node's serving CPUs.
        let nodeCPUs = try node.map { id in
            guard let numaNode = budget.topology.nodes.first(where: { $0.id == id }) else {
                throw KTask.Error.unknownNode(id, available: budget.topology.nodes.map(\.id))
            }
            let cpus = budget.servingCPUs(of: numaNode).cpus
            guard !cpus.isEmpty else { throw KTask.Error.nodeWithoutUsableCPUs(id) }
            return cpus
        }
        let allNodeCPUs = CPUList(nodeCPUs.flatMap(\.cpus))
        let processMask = Affinity.process() ?? allNodeCPUs
        // The library's populate placed on the nodes (the caller works from their CPUs too), each chunk's
        // CPU and thread mask recorded: where a chunk ran can be luck, where its thread may run is not.
        let memory = try KTask.Memory(bytes: size.value, pages: .base)
        let record = KTask.ChunkPlacementRecord()
        let report = try KTask.populate(memory.buffer, pageMode: .base, onNodes: node, write: true, bindMemory: true,
                                        options: KTask.Options(), recording: record)
        let pageNodes = try KTask.NodeMemory.nodes(ofPagesIn: UnsafeRawBufferPointer(memory.buffer), pageSize: memory.pageMode.pageSize)
        let cpusSeen = record.cpus, masksSeen = record.masks
        // Every chunk on the nodes' usable CPUs, and no thread even allowed outside them or outside the
        // process's affinity mask (taskset); each node's pages on it, its first chunk on its CPUs.
        let allowed = Set(allNodeCPUs.cpus).intersection(processMask.cpus)
        let ranges = record.ranges.isEmpty ? [KTask.NodeRange(node: node[0], range: 0..<pageNodes.count)] : record.ranges
        let firstChunks = record.firstChunks
        let rangeResults = ranges.map { part in
            let cpus = nodeCPUs[node.firstIndex(of: part.node)!]
            let onNode = pageNodes[part.range].filter { $0 == part.node }.count
            // Threads pinned within this node's CPUs (its helpers; not the caller, which may run on any of them).
            // One that wakes after its node's pages are done starts on another's, as it should: the node is
            // right if any of its threads started on its pages (none did: its lanes were sent elsewhere).
            let pinnedHere = firstChunks.filter { !$0.mask.isEmpty && $0.mask.allSatisfy(cpus.contains) }
            let here = pinnedHere.filter { $0.node == part.node }.count
            let elsewhere = node.count > 1 ? pinnedHere.count - here : 0
            return RangeResult(node: part.node, cpus: cpus.cpus, pages: part.range.count, pages_on_node: onNode,
                               threads_started_here: here, threads_started_elsewhere: elsewhere,
                               ok: onNode == part.range.count && (here > 0 || elsewhere == 0 || part.range.isEmpty))
        }
        let cpusOK = cpusSeen.allSatisfy(allowed.contains), masksOK = masksSeen.allSatisfy { $0.allSatisfy(allowed.contains) }
        let onNode = rangeResults.reduce(0) { $0 + $1.pages_on_node }
        let ok = cpusOK && masksOK && rangeResults.allSatisfy(\.ok)
        struct Result: Encodable {
            var schema = jsonSchemaVersion
            let node: Int, node_cpus: [Int], process_affinity: [Int], cpus_seen: [Int], thread_masks_seen: [[Int]], threads_used: Int,
                pages: Int, pages_on_node: Int, ok: Bool, ranges: [RangeResult]
        }
        switch format {
        case .json:
            print(try encodeJSON(Result(node: node[0], node_cpus: nodeCPUs[0].cpus, process_affinity: processMask.cpus, cpus_seen: cpusSeen,
                                        thread_masks_seen: masksSeen, threads_used: report.threadsUsed, pages: pageNodes.count,
                                        pages_on_node: onNode, ok: ok, ranges: rangeResults)))
        case .table:
            let nodes = node.map(String.init).joined(separator: ",")
            var table = TextTable(notes: ["a job placed on node(s) \(nodes) over \(Units.bytes(memory.count)) bound there, read back from the kernel"],
                                  columns: ["check", "expected", "seen", "result"])
            table.add(["CPUs chunks ran on", "\(CPUList(allowed.sorted()))", "\(CPUList(cpusSeen))", cpusOK ? "ok" : "OFF NODE"])
            table.add(["threads' affinity masks", "within \(CPUList(allowed.sorted()))",
                       masksSeen.map { "\(CPUList($0))" }.joined(separator: "; "), masksOK ? "ok" : "OFF NODE"])
            for part in rangeResults {
                table.add(["pages on node \(part.node)", "\(part.pages)", "\(part.pages_on_node)", part.pages_on_node == part.pages ? "ok" : "OFF NODE"])
                if node.count > 1 {
                    table.add(["node \(part.node)'s threads' first chunk", "some in its pages",
                               "\(part.threads_started_here) of \(part.threads_started_here + part.threads_started_elsewhere)",
                               part.ok ? "ok" : "NONE HERE"])
                }
            }
            table.footnotes.append("\(report.threadsUsed) thread(s) used; " + (ok ? "placement ok" : "placement off"))
            print(table.render(), terminator: "")
        }
        if !ok { throw ExitCode(1) }
    }
}

/// `--node 1` or `--node 0,1,2,3`: distinct node ids.
func parseNodeIDs(_ argument: String) throws -> [Int] {
    let parts = argument.split(separator: ",", omittingEmptySubsequences: false)
    let ids = parts.compactMap { Int($0) }
    guard !parts.isEmpty, ids.count == parts.count, ids.allSatisfy({ $0 >= 0 }), Set(ids).count == ids.count else {
        throw ValidationError("allowed: a node id, or distinct node ids such as 0,1")
    }
    return ids
}
