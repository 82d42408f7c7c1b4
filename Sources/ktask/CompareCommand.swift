import ArgumentParser
import Foundation
import KTask
import KTaskWorkloads

/// `ktask compare`: ktask against OpenMP, oneTBB, concurrentPerform and a TaskGroup on the same work.
struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Run a workload with ktask and its peers, alternating run by run, and print each peer's time over ktask's.",
        discussion: """
            Peers: openmp (C, gcc -fopenmp, schedule(dynamic) over the chunks), tbb (C++, oneTBB parallel_for \
            with simple_partitioner, one task per chunk, in a task_arena of N threads kept across runs), \
            dispatch (Swift concurrentPerform with N iterations, each striding over every N-th chunk), taskgroup \
            (Swift TaskGroup, one child task per chunk, at most N in flight). All run ktask's inner loop on \
            ktask's chunks (the same chunk formula). The C/C++ peers are built by scripts/build-peers.sh \
            (scripts/compare.sh builds them and runs this); a peer that is not built is listed with the reason. \
            ratio = the peer's median seconds / ktask's: above 1, ktask was faster.

            Systems run alternating, run by run (ktask, openmp, tbb, dispatch, taskgroup, ktask, ...) at each \
            thread count after one untimed run of each; each round starts with the next system in turn, so \
            that one run's after-effects do not always fall on the same system. qemu (prefault only; by \
            default with --workload prefault) is qemu-system-x86_64 -machine none with a memory-backend-ram \
            (THP) or a memory-backend-file on a hugetlbfs mount, prealloc=on,prealloc-threads=N, timed from \
            process start to exit; it is listed missing where qemu-system is not installed, or for 4 KiB pages \
            while THP is on. The C/C++ peers stay running for the whole comparison, so that their thread pools \
            stay warm as ktask's do; their inner loops are compiled by clang, the LLVM Swift uses (gcc's compute loop was 25% \
            slower on the 2-vCPU VM where this was measured: that would compare compilers, not threading). Every run's \
            result is checked (the compute sum, pages resident, descriptors written); a peer that fails or \
            gives a wrong result is listed missing with the reason.

            The table's +- (JSON ratio_uncertainty_pct) is how far the ratio would move in a second run of the \
            same command, about 95% of the time (2 sqrt(2) x the standard error of a ratio of medians, from the \
            runs' robust spread): a ratio within it of 1.000 is parity as far as the run can tell (on a 2-vCPU \
            VM two 9-run 4 KiB prefault compares in a row gave +-13-36% at 2 threads: a 2% difference needs a \
            quieter machine or far more runs). \
            paired_ratio_vs_ktask is the median over rounds of the system's time / ktask's in the same round, \
            which cancels a noisy machine's drift between rounds.

            JSON (--format json): {"schema", "workload", "size", "runs", "summary", "steal_s", "rows": \
            [{"system", "threads", "median_s", "min_s", "max_s", "ratio_vs_ktask", "ratio_uncertainty_pct", \
            "paired_ratio_vs_ktask"}], "missing": [{"system", "reason"}]}.

            --workload vm-file starts a VM whose RAM is a shared file, both ways, as processes timed from start \
            to exit: ktask+qemu = this ktask's populate --write --threads N --size S FILE, then \
            qemu-system-x86_64 -machine none -nodefaults -display none -monitor stdio -object \
            memory-backend-file,id=ram0,mem-path=FILE,size=S,share=on,prealloc=off (quit on its stdin), the two \
            times summed (each also shown); qemu-prealloc = the same QEMU with prealloc=on,prealloc-threads=N. \
            --pages 4k (the default: a file in a new folder in /dev/shm), hugetlb-2M or hugetlb-1G (a new folder \
            on a hugetlbfs mount of that page size); --size defaults to 4G. Every run gets a fresh file (removed \
            after it, so its pages are freed), the first path alternates run by run after one untimed run of each, \
            and the folder is removed at the end, on an error and on Ctrl-C. --settle S waits S seconds, untimed, \
            after each run (on a VM with free page reporting the freed memory goes back to the host about 2 s later; \
            a run that starts sooner finds some of it still backed, and its time depends on that race). Without qemu-system, a hugetlbfs \
            mount or enough free huge pages (free_hugepages) both paths are listed missing with the command that \
            fixes it. --systems, --peers, --helper-priority and --plot are for the other workloads. \
            JSON: {"schema", "workload", "pages", "size", "runs", "settle_s", "location", "ktask_command", "ktask_self_contained", "qemu_command", \
            "steal_s", "rows": [{"system", "threads", "median_s", "min_s", "max_s", "spread_pct", \
            "populate_median_s", "qemu_median_s", "ratio_vs_ktask", "ratio_uncertainty_pct", \
            "paired_ratio_vs_ktask"}], "missing": [{"system", "reason"}]}.
            """)

    @Option(help: CompareWorkload.help)
    var workload: CompareWorkload = .bench(.compute)

    @Option(help: ArgumentHelp("Thread counts, comma-separated (default: 1 to the CPU budget).", valueName: "n,n,..."), transform: ThreadCounts.parse)
    var threads: ThreadCounts?

    @Option(help: ArgumentHelp("Bytes for prefault/init/vm-file, items for compute (K, M, G, T suffixes; default: as ktask bench, init and vm-file 4G).", valueName: "size"), transform: SizeArgument.parse)
    var size: SizeArgument?

    @Option(parsing: .unconditional, help: "Runs of every system at every thread count.")
    var runs: Int = 5

    @Option(help: ArgumentHelp("Systems to compare with ktask, comma-separated (default: all; qemu for prefault only).", valueName: "openmp,tbb,dispatch,taskgroup,qemu"),
            transform: parseSystems)
    var systems: [ComparedSystem]?

    @Option(help: ArgumentHelp("The prefault workload's pages, for ktask and every peer (QEMU's backend too): 4k, thp, hugetlb-2M or hugetlb-1G. Default: thp where transparent huge pages are not off, else 4k. vm-file: 4k (tmpfs, the default), hugetlb-2M or hugetlb-1G (hugetlbfs).",
                               valueName: "4k|thp|hugetlb-2M|hugetlb-1G"))
    var pages: KTask.PageMode?

    @Option(help: ArgumentHelp("Where scripts/build-peers.sh put the C/C++ peers (default: .build/peers beside this program, else in the current directory).", valueName: "dir"))
    var peers: String?

    @Option(help: ArgumentHelp("ktask's helper priority: lowest (nice 19, the default), caller (the caller's nice), or a nice value -20...19: what staying out of the way costs.", valueName: "lowest|caller|n"),
            transform: parseHelperPriority)
    var helperPriority: KTask.HelperPriority?

    @Option(parsing: .unconditional, help: ArgumentHelp("vm-file: seconds to wait, untimed, after each run's file is removed (default 0): on a VM with free page reporting, so that every run finds its memory handed back to the host, not some of it.", valueName: "seconds"))
    var settle: Double?

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    @Option(help: ArgumentHelp("Also write an SVG chart of speedup against threads, one line per system.", valueName: "file.svg"))
    var plot: String?

    func validate() throws {
        guard runs >= 1 && runs <= 10_000 else { throw ValidationError("--runs is \(runs); it must be between 1 and 10000") }
        guard case .bench(let workload) = workload else { return try validateVMFile() }
        if settle != nil { throw ValidationError("--settle is for --workload vm-file") }
        if let plot { try SpeedupPlot.checkWritable(plot) }
        if pages != nil && workload != .prefault {
            throw ValidationError("--pages is for --workload prefault or vm-file; \(workload.rawValue) allocates its own memory")
        }
    }

    func validateVMFile() throws {
        let otherWorkloads = [("--systems", systems != nil), ("--peers", peers != nil), ("--helper-priority", helperPriority != nil), ("--plot", plot != nil)]
        if let flag = otherWorkloads.first(where: { $0.1 })?.0 {
            throw ValidationError("\(flag) is not for --workload vm-file, which always times ktask+qemu against qemu-prealloc")
        }
        let pageMode = pages ?? .base
        guard pageMode != .transparentHuge else {
            throw ValidationError("--pages thp: vm-file's RAM is a tmpfs (4k) or hugetlbfs (hugetlb-2M, hugetlb-1G) file; thp is for --workload prefault")
        }
        if let settle, !(0...600).contains(settle) { throw ValidationError("--settle is \(settle); it must be between 0 and 600 seconds") }
        if let size = size?.value, size <= 0 || size % pageMode.pageSize != 0 {
            throw ValidationError("--size \(size) is not a whole number of \(pageMode) pages (\(pageMode.pageSize) bytes each)")
        }
    }

    func run() throws {
        let counts = threads?.counts ?? Array(1...CPUBudget.read().budget)
        guard case .bench(let workload) = workload else { return try runVMFile(threadCounts: Array(Set(counts)).sorted()) }
        let systems = self.systems ?? ComparedSystem.defaults(for: workload)
        let pageMode = pages ?? KTask.PageMode.preferred().mode
        let runner = CompareRunner(workload: workload, size: size?.value ?? Self.defaultSize(workload),
                                   threadCounts: Array(Set(counts)).sorted(), runs: runs, systems: systems,
                                   peersDirectory: peers ?? Self.defaultPeersDirectory(),
                                   options: KTask.Options(helperPriority: helperPriority ?? .lowest), pageMode: pageMode)
        let progress = ProgressLine(jobs: runs * systems.count * Set(counts).count)
        let result = try runner.run { run, runs, system, threads in
            if run == 0 { progress.warmUp("\(workload.rawValue), \(system.rawValue)"); return }
            progress.job("\(workload.rawValue): run \(run)/\(runs), \(system.rawValue), \(threads) thread(s)")
        }
        progress.clear()
        switch format {
        case .table: print(CompareOutput.table(result), terminator: "")
        case .json: print(try CompareOutput.json(result))
        }
        if let plot { try CompareOutput.plot(result).write(to: plot) }
    }

    /// `--workload vm-file`: ktask populate + QEMU against QEMU's own preallocation, as processes.
    func runVMFile(threadCounts: [Int]) throws {
        let comparison = VMFileComparison(size: size?.value ?? 4 << 30, pageMode: pages ?? .base, threadCounts: threadCounts,
                                          runs: runs, ktaskExecutable: Self.thisExecutable(), settleSeconds: settle ?? 0)
        let progress = ProgressLine(jobs: runs * VMStartPath.allCases.count * threadCounts.count)
        let result = try comparison.run { run, runs, path, threads in
            if run == 0 { progress.warmUp("vm-file, \(path.rawValue)"); return }
            progress.job("vm-file: run \(run)/\(runs), \(path.rawValue), \(threads) thread(s)")
        }
        progress.clear()
        switch format {
        case .table: print(VMFileOutput.table(result), terminator: "")
        case .json: print(try VMFileOutput.json(result))
        }
    }

    /// This program's own file, so that the populate timed is this build's.
    static func thisExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// As `ktask bench`, but init's table is 4 GiB: ktask and the two C/C++ peers each hold one at once.
    static func defaultSize(_ workload: WorkloadKind) -> Int {
        workload == .pageInit ? 4 << 30 : workload.defaultSize
    }

    /// `.build/peers` of the build this program comes from (it sits in `.build/<triple>/<config>/`, reached
    /// also through the `.build/<config>` link), else of the current directory.
    static func defaultPeersDirectory() -> String {
        var directory = URL(fileURLWithPath: thisExecutable()).deletingLastPathComponent()
        for _ in 0..<3 {
            directory = directory.deletingLastPathComponent()
            let candidate = directory.appendingPathComponent("peers").path
            if directory.lastPathComponent == ".build", FileManager.default.fileExists(atPath: candidate) { return candidate }
        }
        return ".build/peers"
    }
}

/// `--systems`: comma-separated peer names.
func parseSystems(_ argument: String) throws -> [ComparedSystem] {
    let names = argument.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    let systems = names.compactMap(ComparedSystem.init(rawValue:))
    guard !names.isEmpty, systems.count == names.count else {
        throw ValidationError("allowed: comma-separated names from \(ComparedSystem.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return systems
}

/// `compare --workload`: one of the bench workloads (ktask against its peers in one process), or vm-file
/// (a VM's start on a RAM file, ktask populate + QEMU against QEMU's preallocation, as processes).
enum CompareWorkload: Equatable, ExpressibleByArgument {
    case bench(WorkloadKind)
    case vmFile

    init?(argument: String) {
        if argument == "vm-file" { self = .vmFile } else if let kind = WorkloadKind(rawValue: argument) { self = .bench(kind) } else { return nil }
    }

    var name: String {
        switch self {
        case .bench(let kind): kind.rawValue
        case .vmFile: "vm-file"
        }
    }

    var defaultValueDescription: String { name }
    static var allValueStrings: [String] { WorkloadKind.allCases.map(\.rawValue) + ["vm-file"] }

    static let help: ArgumentHelp = """
        The workload: prefault (fault in fresh memory, as a VM start does), init (initialise page descriptors, \
        as boot does), compute (a CPU-bound hash), rate-limited (a test workload whose throughput is capped \
        at a number of threads), or vm-file (a VM started on a RAM file: ktask populate then QEMU, against \
        QEMU's own prealloc=on, as processes).
        """
}
