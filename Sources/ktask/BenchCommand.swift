import ArgumentParser
import Foundation
import KTask
import KTaskWorkloads

/// `ktask bench`: the scaling table (default), and what ktask costs other work (disturbance, starvation).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure ktask: the scaling table (default), disturbance of other work, starvation under load.",
        subcommands: [ScalingBenchCommand.self, DisturbanceBenchCommand.self, StarvationBenchCommand.self],
        defaultSubcommand: ScalingBenchCommand.self)
}

/// `ktask bench [scaling]`: the seed's scaling table for one real workload.
struct ScalingBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scaling",
        abstract: "Run a workload at several thread counts and print the seed's scaling table.",
        discussion: """
            Each thread count runs --runs times, interleaved (1, 2, 1, 2, ...) after one untimed warm-up run; \
            1 thread is always measured. The table shows, per thread count, the median speedup over 1 thread \
            and the median time with its robust spread (1.4826 x the median absolute deviation) as a \
            percentage: on a VM one run in ten can be several times slower, which moves a mean by tens of \
            percent and a median hardly at all. Under the table a verdict says whether a second run of the same \
            command should give every speedup within +-10% ("steady"), or which rows to distrust and why \
            ("noisy": the runs' spread, steal time, other work waiting for CPUs per /proc/pressure/cpu).

            Workloads: prefault (default 1 GiB, 11 runs) maps fresh anonymous memory and faults it in, a 2 MiB \
            chunk at a time, with MADV_POPULATE_WRITE where the kernel has it, else a byte written per page; \
            every page is checked resident after. --pages picks its pages (default thp, as QEMU asks for guest \
            RAM, unless transparent huge pages are never); hugetlb pages come from the reserved pool, and too \
            few is an error that says how to reserve more. The seed's 4 KiB table is --pages 4k. init (default \
            8 GiB) initialises 64-byte page descriptors in memory faulted in beforehand, as deferred struct-page \
            init does at boot. compute (default 200M items) runs eight rounds of the SplitMix64 finaliser per \
            item; each run's sum must equal the first's. The defaults are sized so that a default run takes \
            10-40 s on a 2-core machine.

            JSON (--format json): {"schema", "workload", "size", "runs", "summary", "steal_s", "noise": \
            {"steady", "verdict", "wall_s", "cpu_pressure_s"}, "rows": [{"threads", "mean_s", "stddev_pct", \
            "median_s", "min_s", "max_s", "speedup", "speedup_median", "speedup_uncertainty_pct", "cpu_s", \
            "threads_used", "thread_limit", "helpers_per_node", "chunks", "starvation_guard"}], "placement"}. \
            helpers_per_node: {"node": helpers} in the run with the fewest threads ({} where helpers were not pinned). speedup is the ratio of means, as \
            in the seed; speedup_median the ratio of medians; steal_s the CPU time a hypervisor took from this \
            machine during the timed runs.
            """)

    @Option(help: WorkloadKind.help)
    var workload: WorkloadKind = .prefault

    @Option(help: ArgumentHelp("Thread counts to measure, comma-separated (default: 1 to the CPU budget).", valueName: "n,n,..."), transform: ThreadCounts.parse)
    var threads: ThreadCounts?

    @Option(help: ArgumentHelp("Bytes for prefault/init, items for compute; K, M, G, T suffixes are powers of 1024 (default: about 2 s per 1-thread run).", valueName: "size"), transform: SizeArgument.parse)
    var size: SizeArgument?

    @Option(help: ArgumentHelp("Where a job's helpers run: caller (the caller's node, then the nearest nodes once it is full; the default), caller-only (never past the caller's node), any (wherever the scheduler puts them), or nodes:0,1 (spread over those nodes).",
                               valueName: "caller|caller-only|any|nodes:n,..."), transform: parsePlacement)
    var placement: KTask.Placement?

    @Option(help: ArgumentHelp("Node ids: one range per node, its memory bound there (the kernel's ktask_run_numa); local and any are --placement caller and any.",
                               valueName: "n,n,..."), transform: parseNodeChoice)
    var nodes: NodeChoice = .local

    @Option(help: ArgumentHelp("The prefault workload's pages: 4k, thp (transparent huge pages, as QEMU asks for guest RAM), hugetlb-2M or hugetlb-1G (from the reserved pool). Default: thp where transparent huge pages are not off, else 4k.",
                               valueName: "4k|thp|hugetlb-2M|hugetlb-1G"))
    var pages: KTask.PageMode?

    @Option(parsing: .unconditional, help: "Runs per thread count (default: 11 for prefault, whose runs are short, else 5).")
    var runs: Int?

    /// Enough runs that the default table's speedups reproduce within ±10% on a noisy VM.
    var runCount: Int { runs ?? (workload == .prefault ? 11 : 5) }

    @Option(help: ArgumentHelp("ktask's helper priority: lowest (nice 19, the default), caller (the caller's nice), or a nice value -20...19: what staying out of the way costs (KTASK_NO_HELPER_CGROUP=1 also keeps helpers out of the idle cgroup).", valueName: "lowest|caller|n"),
            transform: parseHelperPriority)
    var helperPriority: KTask.HelperPriority = .lowest

    @Flag(help: "Also show the CPU time (user + system, all threads) of each thread count, and its ratio to 1 thread's.")
    var cpuTime = false

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    @Option(help: ArgumentHelp("Also write an SVG chart of the speedup (medians) against threads.", valueName: "file.svg"))
    var plot: String?

    func validate() throws {
        guard runCount >= 1 && runCount <= 10_000 else {
            throw ValidationError("--runs is \(runCount); it must be between 1 and 10000")
        }
        if let plot { try SpeedupPlot.checkWritable(plot) }
        if placement != nil, nodes != .local {
            throw ValidationError("--placement and --nodes both say where helpers run; give one (--nodes n,n runs one range per node)")
        }
        if pages != nil && workload != .prefault {
            throw ValidationError("--pages is for --workload prefault; \(workload.rawValue) allocates its own memory")
        }
    }

    func run() throws {
        let budget = CPUBudget.read().budget
        let counts = threads?.counts ?? Array(1...budget)
        let size = self.size?.value ?? workload.defaultSize
        let preferred = KTask.PageMode.preferred()
        let pageMode = pages ?? preferred.mode
        let runs = runCount
        let runner = BenchRunner(workload: workload, size: size, threadCounts: counts, runs: runs, nodes: nodes,
                                 options: KTask.Options(helperPriority: helperPriority, placement: placement ?? .callerNode), pageMode: pageMode)
        let progress = ProgressLine(jobs: runs * counts.count)
        let result = try runner.run { run, runs, threads in
            if run == 0 { progress.warmUp(workload.rawValue) } else { progress.job("\(workload.rawValue): run \(run)/\(runs), \(threads) thread(s)") }
        }
        progress.clear()
        switch format {
        case .table:
            if workload == .prefault {
                print("# pages: \(pageMode)" + (pages == nil ? " (default: \(preferred.reason))" : " (--pages)"))
            }
            if helperPriority != .lowest { print("# helpers at \(helperPriority) (--helper-priority)") }
            print("# placement: \(result.placement)" + (placement == nil && nodes == .local ? " (default)" : ""))
            print(BenchTable.render(result, cpuTime: cpuTime), terminator: "")
        case .json: print(try BenchJSON.render(result))
        }
        if let plot {
            let series = SpeedupPlot.Series(name: "ktask", points: result.rows.map { (threads: $0.threads, speedup: $0.medianSpeedup) })
            try SpeedupPlot(title: "ktask bench: \(workload.rawValue)",
                            subtitle: "\(result.summary); medians of \(runs) runs", series: [series]).write(to: plot)
        }
    }
}

/// The command line that runs a foreground load from this same executable.
func foregroundCommand(threads: Int, seconds: Double) -> [String] {
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return [executable, "foreground-load", "--threads", "\(threads)", "--seconds", "\(seconds)"]
}

/// `ktask bench disturbance`: how much a job slows a foreground load, same session and another.
struct DisturbanceBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disturbance",
        abstract: "Measure how much ktask slows a CPU-bound foreground load (one thread per CPU, nice 0).",
        discussion: """
            The foreground counts its work alone, then while compute jobs run with helpers at nice 19 \
            (ktask's defaults), with helpers at nice 0, and with the calling thread only; in this session \
            and in another one (setsid). Rates are medians over the runs; slowdowns relative to alone.

            JSON (--format json): foreground_alone, with_ktask_nice19, with_ktask_nice0, with_caller_only \
            (median items/s), each with a *_spread_pct, slowdown_pct_nice19, slowdown_pct_nice0, \
            slowdown_pct_caller_only; each again with the suffix _other_session; seconds, runs, \
            foreground_threads.
            """)

    @Option(help: "Seconds the foreground counts in each case.")
    var seconds: Double = 2

    @Option(parsing: .unconditional, help: "Runs of every case.")
    var runs: Int = 5

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    func validate() throws {
        guard seconds >= 0.2 && seconds <= 600 else { throw ValidationError("--seconds is \(seconds); it must be between 0.2 and 600") }
        guard runs >= 1 && runs <= 1000 else { throw ValidationError("--runs is \(runs); it must be between 1 and 1000") }
    }

    func run() throws {
        let threads = CPUBudget.read().budget
        let bench = DisturbanceBench(foregroundCommand: foregroundCommand(threads: threads, seconds: seconds),
                                     foregroundThreads: threads, seconds: seconds, runs: runs)
        let progress = ProgressLine(jobs: bench.jobCount)
        let result = try bench.run { progress.job($0) }
        progress.clear()
        switch format {
        case .table: print(DisturbanceOutput.table(result), terminator: "")
        case .json: print(try DisturbanceOutput.json(result))
        }
    }
}

/// `ktask bench starvation`: a job's time on a machine a foreground load keeps busy.
struct StarvationBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "starvation",
        abstract: "Time a job while a foreground load keeps every CPU busy: 1 thread, no guard, ktask's guard, unprivileged.",
        discussion: """
            A compute job under a foreground load (one thread per CPU at nice 0, in a process of its own), \
            timed on one thread, on all CPUs with nice-19 helpers and no guard, with ktask's defaults (the \
            starvation guard in force here), and as an unprivileged process gets it (smaller helper chunks). \
            The table shows each case's median, p90, min - max and the CPU time its helpers got.

            JSON (--format json): single_thread_s, no_boost_s, boost_s, unprivileged_s (medians), spread_pct, \
            p90_s and helper_cpu_s (each keyed by case), default_guard, runs, items.
            """)

    @Option(parsing: .unconditional, help: "Runs of every case.")
    var runs: Int = 5

    @Option(help: ArgumentHelp("Items in the compute job (K, M, G suffixes).", valueName: "size"), transform: SizeArgument.parse)
    var size: SizeArgument = SizeArgument(value: 50_000_000)

    @Option(help: "Seconds the foreground load runs at most for one job: a starved job ends at the latest then.")
    var maxLoadSeconds: Double = 60

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    func validate() throws {
        guard runs >= 1 && runs <= 1000 else { throw ValidationError("--runs is \(runs); it must be between 1 and 1000") }
        guard maxLoadSeconds >= 1 && maxLoadSeconds <= 3600 else {
            throw ValidationError("--max-load-seconds is \(maxLoadSeconds); it must be between 1 and 3600")
        }
    }

    func run() throws {
        let threads = CPUBudget.read().budget
        let bench = StarvationBench(foregroundCommand: foregroundCommand(threads: threads, seconds: maxLoadSeconds), runs: runs,
                                    jobItems: size.value)
        let progress = ProgressLine(jobs: bench.jobCount)
        let result = try bench.run { progress.job($0) }
        progress.clear()
        switch format {
        case .table: print(StarvationOutput.table(result), terminator: "")
        case .json: print(try StarvationOutput.json(result))
        }
    }
}

/// `ktask foreground-load`: the benches' foreground, in a process of its own; prints the items it mixed.
struct ForegroundLoadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "foreground-load", abstract: "Spin a CPU-bound load and print how much work it did.",
        shouldDisplay: false)

    @Option var threads: Int
    @Option var seconds: Double

    func run() throws {
        print(ForegroundLoad.run(threads: max(1, threads), seconds: max(0, seconds)))
    }
}
