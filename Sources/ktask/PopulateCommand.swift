import ArgumentParser
import Foundation
import KTask
import KTaskWorkloads

/// `ktask populate PATH`: fault a file's pages in on many threads — a file on disk into the page cache, a
/// tmpfs or hugetlbfs file's memory allocated (`--write`) — and say how much was resident before and after.
struct PopulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "populate",
        abstract: "Read a file into the page cache, or allocate a tmpfs/hugetlbfs file's memory, on many threads.",
        discussion: """
            A file on disk is read into the page cache (what vmtouch -t does on one thread); nothing in it changes. \
            A tmpfs or hugetlbfs file (e.g. a VM's memory-backend-file in /dev/shm or /dev/hugepages) is created or \
            extended to --size, and with --write every page is allocated (no byte changes), on the --nodes given; \
            a read leaves a tmpfs file's holes unallocated. Resident bytes come from mincore, before (0 for a file \
            this call created) and after a read; after a --write that succeeded every page is allocated. Pages per \
            node (move_pages) are counted with --nodes. --verify measures all of them whatever the populate says. \
            The file is opened once, never through a symbolic link; a FIFO or device is refused, as is writing \
            another user's file or one with several links unless --allow-other-owner is given. A failed populate removes \
            the file it created, or truncates back the file it extended.

            Refused before anything is extended (exit 1, with the reason): a missing file without --size, a \
            folder, a symbolic link, a FIFO or device, a file it may not read or write, another user's file or \
            one with several links for --write (unless --allow-other-owner; another user's file is still never \
            extended or bound to nodes), --write on a disk file, more than the hugetlb pool, free memory or the \
            cgroup's memory limit can hold (checked once for the whole file), a hugetlbfs mount of a page size \
            other than 2 MiB or 1 GiB. A --pages the filesystem does not hold exits 2. Nodes are bound only with \
            --write, on a file the caller owns or created; error offsets are the file's. Reading a disk file is \
            bound by the device (give --threads 1 where a second thread does not help); tmpfs and hugetlbfs files \
            scale with the CPUs. The file is one job; on a terminal a progress line shows its bytes done.

            JSON (--format json): {"schema", "path", "kind", "pages", "write", "bytes", "resident_before", \
            "resident_after", "seconds", "bytes_per_s", "threads_used", "thread_limit", "pages_per_node", \
            "cpus_seen"}.
            """)

    @Argument(help: "The file.")
    var path: String

    @Option(help: ArgumentHelp("Bytes to populate (K, M, G, T suffixes); a tmpfs or hugetlbfs file shorter than that is extended or created. Default: the file's size.",
                               valueName: "size"), transform: SizeArgument.parse)
    var size: SizeArgument?

    @Flag(help: "Allocate every page (tmpfs and hugetlbfs files only); without it pages are read.")
    var write = false

    @Option(help: ArgumentHelp("The pages the file's filesystem must hold: 4k (tmpfs, disk), hugetlb-2M or hugetlb-1G (hugetlbfs); a check, since the filesystem decides.",
                               valueName: "4k|thp|hugetlb-2M|hugetlb-1G"))
    var pages: KTask.PageMode?

    @Option(help: ArgumentHelp("Where threads run: local (the caller's node), any, or node ids (one range per node, its memory bound there).",
                               valueName: "local|any|n,n,..."), transform: parseNodeChoice)
    var nodes: NodeChoice = .local

    @Flag(help: "Write or allocate an existing file another user owns, or one with several links (refused without it: it may have been planted). Another user's file is still never extended or bound to nodes.")
    var allowOtherOwner = false

    @Option(help: "The most threads, the calling thread included (default: every usable CPU).")
    var threads: Int?

    @Option(help: ArgumentHelp("Helpers' priority: lowest (nice 19 in the idle cgroup, the default: a VM host's other guests keep their CPU), caller (the caller's nice), or a nice value -20...19.", valueName: "lowest|caller|n"),
            transform: parseHelperPriority)
    var helperPriority: KTask.HelperPriority = .lowest

    @Flag(help: "Measure what is resident before and after (mincore) and the pages per node (move_pages) even where the populate itself says it: a file this call created holds nothing before, and a --write that succeeded allocated every page.")
    var verify = false

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads is \(threads); it must be at least 1") }
    }

    func run() throws {
        do { try populate() } catch let error as KTask.Error { throw Self.inFlagTerms(error) }
    }

    /// The library's parameters as this command's flags: a refusal names the flag to give or drop.
    static let flagsByParameter = ["size": "--size", "writable": "--write", "allowOtherOwner": "--allow-other-owner"]

    /// `error` as the tool's user reads it: a parameter the library names in backticks (`size`), or as an
    /// invalid parameter, becomes its flag.
    static func inFlagTerms(_ error: KTask.Error) -> KTask.Error {
        switch error {
        case .fileUnusable(let path, var reason):
            for (parameter, flag) in flagsByParameter { reason = reason.replacingOccurrences(of: "`\(parameter)`", with: flag) }
            return .fileUnusable(path: path, reason: reason)
        case .invalidParameter(let name, let value, let allowed):
            return .invalidParameter(name: flagsByParameter[name] ?? name, value: value, allowed: allowed)
        default:
            return error
        }
    }

    func populate() throws {
        if case .list(let ids) = nodes {
            let known = CPUBudget.read().topology.nodes.map(\.id)
            if let unknown = ids.first(where: { !known.contains($0) }) { throw KTask.Error.unknownNode(unknown, available: known) }
        }
        // Opened once; what it is (filesystem, pages, owner) comes from that descriptor.
        let file = try KTask.MappedFile(path: path, size: size?.value, writable: write, allowOtherOwner: allowOtherOwner)
        if let pages, pages != file.pageMode {
            file.undoChanges()
            throw ValidationError("--pages \(pages): \(path) is on \(file.kind), which holds \(file.pageMode) pages")
        }
        var options = KTask.Options(maxThreads: threads, helperPriority: helperPriority)
        if nodes == .any { options.placement = .anywhere }
        // Where chunks ran (sched_getcpu) is recorded only where the job is placed on nodes.
        let placement: (nodes: [Int], record: KTask.ChunkPlacementRecord)? = if case .list(let ids) = nodes {
            (ids, KTask.ChunkPlacementRecord())
        } else { nil }
        // A failed or killed populate frees what this call made: the file it created, or the part it
        // extended; nothing else. From right after the mapping, so the residency count before is covered too.
        let (before, seconds, report) = try file.undoingChangesIfStopped {
            // Known without a walk over every page: a file this call created holds none.
            let before = file.created && !verify ? 0 : file.residentBytes
            let label = "populate \(path)"
            let progress = ProgressLine(jobs: 1)
            defer { progress.clear() }
            progress.bytes(label, done: 0, of: file.count)
            // The library's progress API (bytes, for a populate), one report at a time: the line needs no lock.
            if progress.enabled {
                let line = UncheckedSendable(progress)
                options.progress = KTask.Progress { done, total in line.value.bytes(label, done: done, of: total) }
            }
            let start = ContinuousClock.now
            // A file this call has just created holds zeros that no one else has written (it is the caller's,
            // 0600, and new): the populate may write zeros over them, which is faster than faulting it in.
            let report = try KTask.populate(file, onNodes: placement?.nodes, write: write, options: options, progress: nil,
                                            recording: placement?.record, zeroNewFile: file.created)
            return (before, (ContinuousClock.now - start).seconds, report)
        }
        let cpusSeen = placement?.record.cpus
        // A write that succeeded allocated every page; a read may leave a disk file's pages uncached (or
        // evicted), so it is measured. Pages per node are counted where the job was placed or --verify asks.
        let perNode = placement != nil || verify
            ? file.pageCountsPerNode() : [:]
        let after = write && !verify ? file.count : file.residentBytes
        switch format {
        case .table:
            var table = TextTable(notes: ["\(path): \(Units.bytes(file.count)) on \(file.kind.description), \(file.pageMode) pages, "
                                          + (write ? "allocated" : "read")],
                                  columns: ["resident before", "resident after", "time", "rate", "threads"])
            table.add(["\(Units.bytes(before)) (\(percent(before, file.count)))", "\(Units.bytes(after)) (\(percent(after, file.count)))",
                       Units.duration(seconds), Units.rate(Double(file.count) / seconds, "B/s"), "\(report.threadsUsed)"])
            if let cpusSeen { table.footnotes.append("chunks ran on CPUs \(cpusSeen.map(String.init).joined(separator: ","))") }
            if !perNode.isEmpty {
                table.footnotes.append("pages per node: " + perNode.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))
            }
            if report.threadsUsed < (threads ?? Int.max) && report.threadLimit != .none {
                table.footnotes.append("\(report.threadsUsed) thread(s) used: limited by \(report.threadLimit.rawValue)")
            }
            print(table.render(), terminator: "")
        case .json:
            struct Document: Encodable {
                var schema = jsonSchemaVersion
                let path: String, kind: String, pages: String, write: Bool, bytes: Int
                let resident_before: Int, resident_after: Int, seconds: Double, bytes_per_s: Double
                let threads_used: Int, thread_limit: String, pages_per_node: Nullable<[String: Int]>, cpus_seen: Nullable<[Int]>
            }
            print(try encodeJSON(Document(path: path, kind: file.kind.description, pages: file.pageMode.rawValue, write: write, bytes: file.count,
                                          resident_before: before, resident_after: after, seconds: Units.measured(seconds),
                                          bytes_per_s: Units.measured(Double(file.count) / seconds), threads_used: report.threadsUsed,
                                          thread_limit: report.threadLimit.rawValue,
                                          pages_per_node: Nullable(perNode.isEmpty ? nil : Dictionary(uniqueKeysWithValues: perNode.map { ("\($0.key)", $0.value) })),
                                          cpus_seen: Nullable(cpusSeen))))
        }
    }

    /// A value handed to a closure that is called by one thread at a time (``KTask/Progress``).
    struct UncheckedSendable<Value>: @unchecked Sendable {
        let value: Value
        init(_ value: Value) { self.value = value }
    }

    func percent(_ part: Int, _ whole: Int) -> String {
        whole > 0 ? String(format: "%.0f%%", Double(part) / Double(whole) * 100) : "-"
    }
}
