import Foundation
import KTask

/// One row of the scaling table: a thread count and its timings.
package struct BenchRow: Sendable {
    package let threads: Int
    package let seconds: Sample
    /// CPU time (user + system, all threads) per run.
    package let cpuSeconds: Sample
    /// Mean seconds at 1 thread ÷ mean seconds at this thread count.
    package let speedup: Double
    /// Median seconds at 1 thread ÷ median seconds at this thread count (less swayed by one slow run).
    package let medianSpeedup: Double
    /// Threads the jobs really used (fewest over the runs): below `threads` where CPUs or the cap are short.
    package let threadsUsed: Int
    /// Chunks in each job (from the last run).
    package let chunkCount: Int
    /// What kept helpers from holding the job up (from the last run).
    package let starvationGuard: KTask.StarvationGuard
    /// What bounded the thread count in the run that used the fewest threads.
    package let threadLimit: KTask.ThreadLimit
    /// Helpers pinned to each node in the run that used the fewest threads (empty: not pinned).
    package var helpersPerNode: [Int: Int] = [:]
}

/// A finished benchmark: the seed's table for one workload.
package struct BenchResult: Sendable {
    package let workload: WorkloadKind
    package let size: Int
    package let runs: Int
    package let summary: String
    package let rows: [BenchRow]
    /// Where helpers ran: the placement's description, or the nodes of a per-node job.
    package var placement = ""
    /// CPU time the hypervisor took from this guest during the timed runs (nil: not a VM, or unknown).
    package let stealSeconds: Double?
    /// Wall time of the timed runs, set-up between them included.
    package var wallSeconds: Double = 0
    /// Time some task waited for a CPU during the timed runs (PSI; nil: no PSI here).
    package var pressureSeconds: Double?

    /// How far each row's median speedup would move in a second run of the same command (about 95% of
    /// the time; ``Sample/ratioUncertaintyPercent(_:_:)``).
    package func speedupUncertaintyPercent(_ row: BenchRow) -> Double {
        guard let baseline = rows.first(where: { $0.threads == 1 }), runs > 1 else { return .infinity }
        return row.threads == 1 ? 0 : Sample.ratioUncertaintyPercent(baseline.seconds, row.seconds)
    }

    /// Whether two runs of this command would agree within `tolerancePercent` on every speedup, and if
    /// not, why: the rows to distrust, steal time, other work waiting for CPUs.
    package func noiseVerdict(tolerancePercent: Double = 10) -> (steady: Bool, lines: [String]) {
        let noisy = rows.filter { $0.threads != 1 && speedupUncertaintyPercent($0) > tolerancePercent }
        var reasons: [String] = []
        let cpuSeconds = wallSeconds * Double(max(1, rows.map(\.threads).max() ?? 1))
        if let stealSeconds, cpuSeconds > 0, stealSeconds / cpuSeconds > 0.02 {
            reasons.append(String(format: "the hypervisor stole %.0f%% of the CPU time", stealSeconds / cpuSeconds * 100))
        }
        if let pressureSeconds, wallSeconds > 0, pressureSeconds / wallSeconds > 0.10 {
            reasons.append(String(format: "some task waited for a CPU %.0f%% of the time (/proc/pressure/cpu)", pressureSeconds / wallSeconds * 100))
        }
        if runs == 1 { return (false, ["one run per row: no spread to judge reproducibility by (use --runs 5 or more)"]) }
        if noisy.isEmpty {
            return (true, [String(format: "steady: every speedup should reproduce within ±%.0f%%", tolerancePercent)] + reasons.map { "note: \($0)" })
        }
        let rowsText = noisy.map { String(format: "%d thread(s) ±%.0f%%", $0.threads, speedupUncertaintyPercent($0)) }.joined(separator: ", ")
        return (false, ["noisy: distrust the speedup of \(rowsText) (run-to-run spread)"
                        + (reasons.isEmpty ? "" : "; " + reasons.joined(separator: "; "))
                        + "; more --runs or a quieter machine narrow it"])
    }
}

/// Runs a workload at several thread counts, the counts interleaved run by run (1, 2, 1, 2, ...) so that
/// a change in the machine's state during the bench affects every row alike.
package struct BenchRunner {
    package let workload: WorkloadKind
    package let size: Int
    package let threadCounts: [Int]
    package let runs: Int
    package let nodes: NodeChoice
    package let options: KTask.Options
    /// The prefault workload's pages.
    package let pageMode: KTask.PageMode

    /// - Parameter threadCounts: the rows; 1 is always measured, as the speedup baseline.
    package init(workload: WorkloadKind, size: Int, threadCounts: [Int], runs: Int, nodes: NodeChoice = .local,
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
    package func run(progress: (Int, Int, Int) -> Void = { _, _, _ in }) throws -> BenchResult {
        var nodeList: [Int]?
        if case .list(let ids) = nodes { nodeList = ids }
        let instance = try workload.make(size: size, nodes: nodeList, pageMode: pageMode)
        var seconds: [Int: [Double]] = [:]
        var cpuSeconds: [Int: [Double]] = [:]
        var threadsUsed: [Int: Int] = [:]
        var chunkCount: [Int: Int] = [:]
        var guards: [Int: KTask.StarvationGuard] = [:]
        var limits: [Int: KTask.ThreadLimit] = [:]
        var perNode: [Int: [Int: Int]] = [:]
        // One untimed run first: the first touch of memory (by this guest's host, or of cold caches
        // and page tables) is slower than any later one and would skew whichever row ran first.
        progress(0, runs, threadCounts.last!)
        _ = try instance.runOnce(threads: threadCounts.last!, options: options)
        let stealBefore = StealTime.total()
        let pressureBefore = CPUPressure.total()
        let timedStart = ContinuousClock.now
        for run in 1...runs {
            for threads in threadCounts {
                progress(run, runs, threads)
                let measurement = try instance.runOnce(threads: threads, options: options)
                let report = measurement.report
                seconds[threads, default: []].append(measurement.seconds)
                cpuSeconds[threads, default: []].append(measurement.cpuSeconds)
                if report.threadsUsed < threadsUsed[threads] ?? Int.max {
                    limits[threads] = report.threadLimit
                    perNode[threads] = report.helpersPerNode
                }
                threadsUsed[threads] = min(threadsUsed[threads] ?? Int.max, report.threadsUsed)
                chunkCount[threads] = report.claimCount
                guards[threads] = report.starvationGuard
            }
        }
        let steal = StealTime.total().flatMap { after in stealBefore.map { after - $0 } }
        let pressure = CPUPressure.total().flatMap { after in pressureBefore.map { after - $0 } }
        let wall = ContinuousClock.now - timedStart
        let baseline = Sample(seconds[1]!)
        let rows = threadCounts.map { threads in
            let sample = Sample(seconds[threads]!)
            return BenchRow(threads: threads, seconds: sample, cpuSeconds: Sample(cpuSeconds[threads]!),
                            speedup: baseline.mean / sample.mean,
                            medianSpeedup: baseline.median / sample.median,
                            threadsUsed: threadsUsed[threads]!, chunkCount: chunkCount[threads]!,
                            starvationGuard: guards[threads]!, threadLimit: limits[threads]!, helpersPerNode: perNode[threads] ?? [:])
        }
        var result = BenchResult(workload: workload, size: size, runs: runs, summary: instance.summary, rows: rows,
                                 stealSeconds: steal)
        result.wallSeconds = wall.seconds
        result.placement = nodeList.map { "one range per node on nodes \($0.map(String.init).joined(separator: ","))" } ?? options.placement.description
        result.pressureSeconds = pressure
        return result
    }
}
