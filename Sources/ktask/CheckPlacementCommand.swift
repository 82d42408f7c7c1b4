import ArgumentParser
import Foundation
import KTask
import Synchronization

/// `ktask check-placement --node N`: runs a job placed on node N over memory bound to N and checks,
/// by reading the kernel back, that every chunk ran on N's CPUs (sched_getcpu) and that every page
/// landed on N (move_pages). For checking a multi-node machine or VM; exits 1 when either is off.
struct CheckPlacementCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-placement",
        abstract: "Check that a job placed on a node runs on its CPUs and puts its pages there.",
        discussion: """
            Runs a job placed on node N (the calling thread moved there too) over memory bound to N, then reads \
            back where each chunk ran (sched_getcpu), each thread's affinity mask, and where each page is \
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
        // The caller works on the job too: run it from the node, as a thread placed there would.
        let processMask = Affinity.process() ?? nodeCPUs
        Affinity.pinCurrentThread(to: nodeCPUs)

        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let bytes = (size.value + pageSize - 1) / pageSize * pageSize
        guard let base = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), base != MAP_FAILED else {
            throw ValidationError("could not map \(bytes) bytes")
        }
        defer { munmap(base, bytes) }
        try KTask.NodeMemory.bind(UnsafeMutableRawBufferPointer(start: base, count: bytes), to: [node])

        let seen = Mutex<Set<Int>>([])
        // The CPUs each chunk's thread may run on: where it ran can be luck, where it may run is not.
        let masks = Mutex<Set<[Int]>>([])
        let address = UInt(bitPattern: base)
        let report = try KTask.run(perNode: [KTask.NodeRange(node: node, range: 0..<(bytes / pageSize))],
                                   options: KTask.Options(minChunk: 16)) { pages in
            let cpu = Affinity.currentCPU()
            let mask = Affinity.current()?.cpus ?? []
            seen.withLock { _ = $0.insert(cpu) }
            masks.withLock { _ = $0.insert(mask) }
            for page in pages {
                UnsafeMutableRawPointer(bitPattern: address + UInt(page * pageSize))!.storeBytes(of: 1, as: UInt8.self)
            }
        }
        let pageNodes = try KTask.NodeMemory.nodes(ofPagesIn: UnsafeRawBufferPointer(start: base, count: bytes), pageSize: pageSize)
        let cpusSeen = seen.withLock { $0.sorted() }
        let masksSeen = masks.withLock { $0.sorted { $0.lexicographicallyPrecedes($1) } }
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
            var table = TextTable(notes: ["a job placed on node \(node) over \(Units.bytes(bytes)) bound there, read back from the kernel"],
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

