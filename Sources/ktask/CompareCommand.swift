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
            """)

    @Option(help: WorkloadKind.help)
    var workload: WorkloadKind = .compute

    @Option(help: ArgumentHelp("Thread counts, comma-separated (default: 1 to the CPU budget).", valueName: "n,n,..."), transform: ThreadCounts.parse)
    var threads: ThreadCounts?

    @Option(help: ArgumentHelp("Bytes for prefault/init, items for compute (K, M, G, T suffixes; default: as ktask bench, init 4G).", valueName: "size"), transform: SizeArgument.parse)
    var size: SizeArgument?

    @Option(parsing: .unconditional, help: "Runs of every system at every thread count.")
    var runs: Int = 5

    @Option(help: ArgumentHelp("Systems to compare with ktask, comma-separated (default: all; qemu for prefault only).", valueName: "openmp,tbb,dispatch,taskgroup,qemu"),
            transform: parseSystems)
    var systems: [ComparedSystem]?

    @Option(help: ArgumentHelp("The prefault workload's pages, for ktask and every peer (QEMU's backend too): 4k, thp, hugetlb-2M or hugetlb-1G. Default: thp where transparent huge pages are not off, else 4k.",
                               valueName: "4k|thp|hugetlb-2M|hugetlb-1G"))
    var pages: KTask.PageMode?

    @Option(help: ArgumentHelp("Where scripts/build-peers.sh put the C/C++ peers (default: .build/peers beside this program, else in the current directory).", valueName: "dir"))
    var peers: String?

    @Option(help: ArgumentHelp("ktask's helper priority: lowest (nice 19, the default), caller (the caller's nice), or a nice value -20...19: what staying out of the way costs.", valueName: "lowest|caller|n"),
            transform: parseHelperPriority)
    var helperPriority: KTask.HelperPriority = .lowest

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    @Option(help: ArgumentHelp("Also write an SVG chart of speedup against threads, one line per system.", valueName: "file.svg"))
    var plot: String?

    func validate() throws {
        guard runs >= 1 && runs <= 10_000 else { throw ValidationError("--runs is \(runs); it must be between 1 and 10000") }
        if let plot { try SpeedupPlot.checkWritable(plot) }
        if pages != nil && workload != .prefault {
            throw ValidationError("--pages is for --workload prefault; \(workload.rawValue) allocates its own memory")
        }
    }

    func run() throws {
        let counts = threads?.counts ?? Array(1...CPUBudget.read().budget)
        let systems = self.systems ?? ComparedSystem.defaults(for: workload)
        let pageMode = pages ?? KTask.PageMode.preferred().mode
        let runner = CompareRunner(workload: workload, size: size?.value ?? Self.defaultSize(workload),
                                   threadCounts: Array(Set(counts)).sorted(), runs: runs, systems: systems,
                                   peersDirectory: peers ?? Self.defaultPeersDirectory(),
                                   options: KTask.Options(helperPriority: helperPriority), pageMode: pageMode)
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

    /// As `ktask bench`, but init's table is 4 GiB: ktask and the two C/C++ peers each hold one at once.
    static func defaultSize(_ workload: WorkloadKind) -> Int {
        workload == .pageInit ? 4 << 30 : workload.defaultSize
    }

    /// `.build/peers` of the build this program comes from (it sits in `.build/<triple>/<config>/`, reached
    /// also through the `.build/<config>` link), else of the current directory.
    static func defaultPeersDirectory() -> String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: executable).deletingLastPathComponent()
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
