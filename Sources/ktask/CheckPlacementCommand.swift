import ArgumentParser
import Foundation
import KTask

/// `ktask check-placement --node N`: populates memory placed on node N (bound there) with `KTask.populate`
/// and checks, by reading the kernel back, that every chunk ran on N's CPUs (sched_getcpu) and that every
/// page landed on N (move_pages). For checking a multi-node machine or VM; exits 1 when either is off.
struct CheckPlacementCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-placement",
        abstract: "Check that a job placed on a node runs on its CPUs and puts its pages there.",
        discussion: """
            Populates memory bound to node N with the library's populate placed on N (the calling thread moved \
            there too; chunks of at least 2 MiB), then reads back where each chunk ran (sched_getcpu), each thread's affinity mask, and where each page is \
            (move_pages). Exit status 1 if any is off the node. scripts/numa-vm-check.sh runs it inside a \
            2-node qemu guest.

            JSON (--format json): {"schema", "node", "node_cpus", "process_affinity", "cpus_seen", \
            "thread_masks_seen", "threads_used", "pages", "pages_on_node", "ok"}.
            """)

    @Option(help: "The node to place the job on.")
    var node: Int

    @Option(help: ArgumentHelp("Bytes of memory to fault in on the node (K, M, G suffixes).", valueName: "size"),
            transform: SizeArgument.parse)
    var size: SizeArgument = SizeArgument(argument: "64M")!

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    func run() throws {
        let budget = CPUBudget.read()
        guard let numaNode = budget.topology.nodes.first(where: { $0.id == node }) else {
            throw KTask.Error.unknownNode(node, available: budget.topology.nodes.map(\.id))
        }
        // The CPUs a job placed on the node runs on: its own, or a memory-only node's serving CPUs.
        let nodeCPUs = budget.servingCPUs(of: numaNode).cpus
        guard !nodeCPUs.isEmpty else { throw KTask.Error.nodeWithoutUsableCPUs(node) }
        let processMask = Affinity.process() ?? nodeCPUs
        // The library's populate placed on the node (the caller works from the node's CPUs too), each chunk's
        // CPU and thread mask recorded: where a chunk ran can be luck, where its thread may run is not.
        let memory = try KTask.Memory(bytes: size.value, pages: .base)
        let record = KTask.ChunkPlacementRecord()
        let report = try KTask.populate(memory.buffer, pageMode: .base, onNodes: [node], write: true, bindMemory: true,
                                        options: KTask.Options(), recording: record)
        let pageNodes = try KTask.NodeMemory.nodes(ofPagesIn: UnsafeRawBufferPointer(memory.buffer), pageSize: memory.pageMode.pageSize)
        let cpusSeen = record.cpus, masksSeen = record.masks
        let onNode = pageNodes.filter { $0 == node }.count
        // Every chunk on the node's usable CPUs, and no thread even allowed outside them or outside the
        // process's affinity mask (taskset).
        let allowed = Set(nodeCPUs.cpus).intersection(processMask.cpus)
        let ok = cpusSeen.allSatisfy(allowed.contains) && masksSeen.allSatisfy { $0.allSatisfy(allowed.contains) }
            && onNode == pageNodes.count
        struct Result: Encodable {
            var schema = jsonSchemaVersion
            let node: Int, node_cpus: [Int], process_affinity: [Int], cpus_seen: [Int], thread_masks_seen: [[Int]], threads_used: Int,
                pages: Int, pages_on_node: Int, ok: Bool
        }
        switch format {
        case .json:
            print(try encodeJSON(Result(node: node, node_cpus: nodeCPUs.cpus, process_affinity: processMask.cpus, cpus_seen: cpusSeen,
                                        thread_masks_seen: masksSeen, threads_used: report.threadsUsed, pages: pageNodes.count,
                                        pages_on_node: onNode, ok: ok)))
        case .table:
            var table = TextTable(notes: ["a job placed on node \(node) over \(Units.bytes(memory.count)) bound there, read back from the kernel"],
                                  columns: ["check", "expected", "seen", "result"])
            let cpusOK = cpusSeen.allSatisfy(allowed.contains), masksOK = masksSeen.allSatisfy { $0.allSatisfy(allowed.contains) }
            table.add(["CPUs chunks ran on", "\(CPUList(allowed.sorted()))", "\(CPUList(cpusSeen))", cpusOK ? "ok" : "OFF NODE"])
            table.add(["threads' affinity masks", "within \(CPUList(allowed.sorted()))",
                       masksSeen.map { "\(CPUList($0))" }.joined(separator: "; "), masksOK ? "ok" : "OFF NODE"])
            table.add(["pages on node \(node)", "\(pageNodes.count)", "\(onNode)", onNode == pageNodes.count ? "ok" : "OFF NODE"])
            table.footnotes.append("\(report.threadsUsed) thread(s) used; " + (ok ? "placement ok" : "placement off"))
            print(table.render(), terminator: "")
        }
        if !ok { throw ExitCode(1) }
    }
}

