import KTask

/// One row of the scaling table: a thread count and its timings.
public struct BenchRow: Sendable {
    public let threads: Int
    public let seconds: Sample
    /// CPU time (user + system, all threads) per run.
    public let cpuSeconds: Sample
    /// Mean seconds at 1 thread ÷ mean seconds at this thread count.
    public let speedup: Double
    /// Median seconds at 1 thread ÷ median seconds at this thread count (less swayed by one slow run).
    public let medianSpeedup: Double
    /// Threads the jobs really used (fewest over the runs): below `threads` where CPUs or the cap are short.
    public let threadsUsed: Int
    /// Chunks in each job (from the last run).
    public let chunkCount: Int
    /// What kept helpers from holding the job up (from the last run).
    public let starvationGuard: KTask.StarvationGuard
    /// What bounded the thread count in the run that used the fewest threads.
    public let threadLimit: KTask.ThreadLimit
}

/// A finished benchmark: the seed's table for one workload.
public struct BenchResult: Sendable {
    public let workload: WorkloadKind
    public let size: Int
    public let runs: Int
    public let summary: String
    public let rows: [BenchRow]
    /// CPU time the hypervisor took from this guest during the timed runs (nil: not a VM, or unknown).
    public let stealSeconds: Double?
}

/// Runs a workload at several thread counts, the counts interleaved run by run (1, 2, 1, 2, ...) so that
/// a change in the machine's state during the bench affects every row alike.
public struct BenchRunner {
    public let workload: WorkloadKind
    public let size: Int
    public let threadCounts: [Int]
    public let runs: Int
    public let nodes: NodeChoice
    public let options: KTask.Options
    /// The prefault workload's pages.
    public let pageMode: KTask.PageMode

    /// - Parameter threadCounts: the rows; 1 is always measured, as the speedup baseline.
    public init(workload: WorkloadKind, size: Int, threadCounts: [Int], runs: Int, nodes: NodeChoice = .local,
                options: KTask.Options = KTask.Options(), pageMode: KTask.PageMode = .base) {
        self.workload = workload
        self.pageMode = pageMode
        self.size = size
        self.threadCounts = Array(Set(threadCounts + [1])).sorted()
        self.runs = runs
        self.nodes = nodes
        var options = options
        if nodes == .any { options.placement = .anywhere }
        self.options = options
    }

    /// Runs the bench; `progress` is told (run, of runs, threads) before each job (run 0 is the warm-up).
    public func run(progress: (Int, Int, Int) -> Void = { _, _, _ in }) throws -> BenchResult {
        var nodeList: [Int]?
        if case .list(let ids) = nodes { nodeList = ids }
        let instance = try workload.make(size: size, nodes: nodeList, pageMode: pageMode)
        var seconds: [Int: [Double]] = [:]
        var cpuSeconds: [Int: [Double]] = [:]
        var threadsUsed: [Int: Int] = [:]
        var chunkCount: [Int: Int] = [:]
        var guards: [Int: KTask.StarvationGuard] = [:]
        var limits: [Int: KTask.ThreadLimit] = [:]
        // One untimed run first: the first touch of memory (by this guest's host, or of cold caches
        // and page tables) is slower than any later one and would skew whichever row ran first.
        progress(0, runs, threadCounts.last!)
        _ = try instance.runOnce(threads: threadCounts.last!, options: options)
        let stealBefore = StealTime.total()
        for run in 1...runs {
            for threads in threadCounts {
                progress(run, runs, threads)
                let measurement = try instance.runOnce(threads: threads, options: options)
                let report = measurement.report
                seconds[threads, default: []].append(report.wallTime.seconds)
                cpuSeconds[threads, default: []].append(measurement.cpuSeconds)
                if report.threadsUsed < threadsUsed[threads] ?? Int.max { limits[threads] = report.threadLimit }
                threadsUsed[threads] = min(threadsUsed[threads] ?? Int.max, report.threadsUsed)
                chunkCount[threads] = report.claimCount
                guards[threads] = report.starvationGuard
            }
        }
        let steal = StealTime.total().flatMap { after in stealBefore.map { after - $0 } }
        let baseline = Sample(seconds[1]!)
        let rows = threadCounts.map { threads in
            let sample = Sample(seconds[threads]!)
            return BenchRow(threads: threads, seconds: sample, cpuSeconds: Sample(cpuSeconds[threads]!),
                            speedup: baseline.mean / sample.mean,
                            medianSpeedup: baseline.median / sample.median,
                            threadsUsed: threadsUsed[threads]!, chunkCount: chunkCount[threads]!,
                            starvationGuard: guards[threads]!, threadLimit: limits[threads]!)
        }
        return BenchResult(workload: workload, size: size, runs: runs, summary: instance.summary, rows: rows,
                           stealSeconds: steal)
    }
}
