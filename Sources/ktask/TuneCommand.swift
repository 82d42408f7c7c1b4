import ArgumentParser
import Foundation
import KTask
import KTaskWorkloads

/// `ktask tune`: measure how many threads a class of work is worth on this machine, and save it.
struct TuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tune",
        abstract: "Find the thread count past which a workload stops gaining, and save it in the tuning profile.",
        discussion: """
            Runs the workload at 1 to --max-threads threads (interleaved, medians of --runs) and finds the \
            knee: the last thread count before one more thread adds less than --min-gain of one thread's \
            throughput. The knee is saved as the class's thread cap in the profile (--output, else \
            KTASK_PROFILE, else $XDG_CONFIG_HOME/ktask/profile.json, else ~/.config/ktask/profile.json); \
            jobs that set KTask.Options.workClass to the class get at most that many threads. A knee measured \
            while machine-wide slots or make's jobserver refused helpers is printed but not saved (exit 1): it \
            would measure the other processes. --workload rate-limited --permits K is the test workload whose \
            knee is K.

            The table shows each thread count's median seconds, items/s and gain (in units of one thread's \
            throughput), and marks the knee. JSON (--format json): {"schema", "work_class", "summary", "runs", \
            "min_gain", "knee", "points": [{"threads", "median_s", "min_s", "max_s", "items_per_s", \
            "threads_used", "refused_by"}], "saved_to"}.
            """)

    @Option(help: WorkloadKind.help)
    var workload: WorkloadKind = .compute

    @Option(help: ArgumentHelp("The prefault workload's pages: 4k, thp, hugetlb-2M or hugetlb-1G (default: thp where transparent huge pages are not off, else 4k).",
                               valueName: "4k|thp|hugetlb-2M|hugetlb-1G"))
    var pages: KTask.PageMode?

    @Option(help: ArgumentHelp("Bytes for prefault/init, items for compute/rate-limited (K, M, G, T suffixes; default: as ktask bench).", valueName: "size"), transform: SizeArgument.parse)
    var size: SizeArgument?

    @Option(help: "The class name saved in the profile (default: the workload's name).")
    var workClass: String?

    @Option(help: "The most threads to try (default and upper bound: the CPU budget).")
    var maxThreads: Int?

    @Option(parsing: .unconditional, help: "Runs per thread count.")
    var runs: Int = 3

    @Option(help: "The fraction of one thread's throughput a thread must add to count (0 to 1).")
    var minGain: Double = 0.1

    @Option(help: "rate-limited only: how many items may work at once (its knee).")
    var permits: Int = 1

    @Option(help: ArgumentHelp("The profile file to update.", valueName: "path"))
    var output: String?

    @Flag(help: "Measure and print, but do not save.")
    var dryRun = false

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    func validate() throws {
        guard runs >= 1 && runs <= 1000 else { throw ValidationError("--runs is \(runs); it must be between 1 and 1000") }
        guard (0...1).contains(minGain) else { throw ValidationError("--min-gain is \(minGain); it must be between 0 and 1") }
        guard permits >= 1 else { throw ValidationError("--permits is \(permits); it must be at least 1") }
        if let workClass, workClass.isEmpty { throw ValidationError("--work-class is empty; name the class") }
        if let maxThreads, maxThreads < 1 { throw ValidationError("--max-threads is \(maxThreads); it must be at least 1") }
    }

    func run() throws {
        let budget = CPUBudget.read().budget
        if let maxThreads, maxThreads > budget {
            throw ValidationError("--max-threads is \(maxThreads); this process may use \(budget) CPU(s), so at most \(budget)")
        }
        guard let path = output ?? KTask.TuningProfile.defaultPath else {
            throw ValidationError("no profile path: give --output, or set KTASK_PROFILE or HOME")
        }
        // An unreadable existing profile stops here, before minutes of measuring.
        var profile = FileManager.default.fileExists(atPath: path) ? try KTask.TuningProfile.load(from: path) : KTask.TuningProfile()
        if pages != nil && workload != .prefault {
            throw ValidationError("--pages is for --workload prefault; \(workload.rawValue) allocates its own memory")
        }
        let instance = try workload.make(size: size?.value ?? workload.defaultSize, permits: permits,
                                         pageMode: pages ?? KTask.PageMode.preferred().mode)
        let runner = TuneRunner(workload: instance, workClass: workClass ?? workload.rawValue, maxThreads: maxThreads ?? budget,
                                runs: runs, minimumGain: minGain)
        let progress = ProgressLine(jobs: runs * runner.maxThreads)
        let result = try runner.run { run, runs, threads in
            if run == 0 { progress.warmUp("tune \(runner.workClass)"); return }
            progress.job("tune \(runner.workClass): run \(run)/\(runs), \(threads) thread(s)")
        }
        progress.clear()
        // A knee measured while other processes held the helpers measures them, and would cap every later job.
        let refused = result.refusal.map(Self.refusalMessage)
        let save = !dryRun && refused == nil
        if save {
            profile.classes[result.workClass] = result.profileEntry
            try profile.save(to: path)
        }
        switch format {
        case .table: print(TuneOutput.table(result, savedTo: save ? path : nil, notSaved: dryRun ? "not saved (--dry-run)" : "not saved"),
                           terminator: "")
        case .json: print(try TuneOutput.json(result, savedTo: save ? path : nil))
        }
        if let refused, !dryRun {
            FileHandle.standardError.write(Data("ktask: \(refused)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// Why a measurement with refused helpers is not saved, and what to do.
    static func refusalMessage(threads: Int, by limit: KTask.ThreadLimit) -> String {
        let cause = limit == .machineSlots
            ? "machine-wide slots were held by other processes (`ktask info` shows them)"
            : "make's jobserver had no free token"
        return "tune measured other processes, not the work: at \(threads) thread(s) helpers were refused because \(cause); "
            + "the knee was not saved (it would cap every later job). Run it again when they are free, or outside make."
    }
}
