import KTask

/// One thread count of a tuning run.
package struct TunePoint: Sendable {
    package let threads: Int
    package let seconds: Sample
    /// Items per second at the median time.
    package let itemsPerSecond: Double
    /// Threads the jobs really used (fewest over the runs).
    package let threadsUsed: Int
    /// What refused this count's helpers in some run: other processes' machine-wide slots or make's tokens
    /// (the curve then measures them, not the work); nil when nothing outside this process did.
    package let refusedBy: KTask.ThreadLimit?
}

/// A finished tuning run: the throughput curve of one class of work and its knee.
package struct TuneResult: Sendable {
    package let workClass: String
    package let summary: String
    package let runs: Int
    package let minimumGain: Double
    package let cpuBudget: Int
    package let points: [TunePoint]
    /// ``KTask/TuningProfile/knee(throughput:minimumGain:)`` of the points.
    package let knee: Int

    /// The first thread count whose helpers were refused by other processes (machine-wide slots, make's
    /// jobserver), and by what; nil when none was. Such a knee must not be saved: it would cap every later job
    /// of the class at what was free during the measurement.
    package var refusal: (threads: Int, by: KTask.ThreadLimit)? {
        points.lazy.compactMap { point in point.refusedBy.map { (point.threads, $0) } }.first
    }

    /// The profile entry this measurement makes.
    package var profileEntry: KTask.TuningProfile.WorkClass {
        KTask.TuningProfile.WorkClass(maxThreads: knee, minimumGain: minimumGain, cpuBudget: cpuBudget,
                                itemsPerSecond: points.map(\.itemsPerSecond))
    }
}

/// `ktask tune`: runs one workload at 1 ... N threads (interleaved run by run, after a warm-up) and
/// finds the thread count past which one more thread adds less than `minimumGain` of one thread's
/// throughput: the measured answer to "how many threads is this work worth here".
package struct TuneRunner {
    package let workload: any BenchWorkload
    package let workClass: String
    package let maxThreads: Int
    package let runs: Int
    package let minimumGain: Double
    package let options: KTask.Options

    package init(workload: any BenchWorkload, workClass: String, maxThreads: Int, runs: Int, minimumGain: Double,
                options: KTask.Options = KTask.Options()) {
        self.workload = workload
        self.workClass = workClass
        self.maxThreads = maxThreads
        self.runs = runs
        self.minimumGain = minimumGain
        self.options = options
    }

    /// `progress` hears (run, of runs, threads) before each job (run 0: the warm-up).
    package func run(progress: (Int, Int, Int) -> Void = { _, _, _ in }) throws -> TuneResult {
        let counts = Array(1...maxThreads)
        var seconds = Array(repeating: [Double](), count: maxThreads + 1)
        var used = Array(repeating: Int.max, count: maxThreads + 1)
        var refused = Array(repeating: KTask.ThreadLimit?.none, count: maxThreads + 1)
        progress(0, runs, maxThreads)
        _ = try workload.runOnce(threads: maxThreads, options: options)
        for run in 1...runs {
            for threads in counts {
                progress(run, runs, threads)
                let measurement = try workload.runOnce(threads: threads, options: options)
                let report = measurement.report
                seconds[threads].append(measurement.seconds)
                used[threads] = min(used[threads], report.threadsUsed)
                // Read from its own field: threadLimit may name a later cause (a granted helper not needed).
                if let refusedBy = report.helpersRefusedBy { refused[threads] = refused[threads] ?? refusedBy }
            }
        }
        let points = counts.map { threads in
            let sample = Sample(seconds[threads])
            return TunePoint(threads: threads, seconds: sample, itemsPerSecond: Double(workload.items) / sample.median,
                             threadsUsed: used[threads], refusedBy: refused[threads])
        }
        return TuneResult(workClass: workClass, summary: workload.summary, runs: runs, minimumGain: minimumGain,
                          cpuBudget: CPUBudget.read().budget, points: points,
                          knee: KTask.TuningProfile.knee(throughput: points.map(\.itemsPerSecond), minimumGain: minimumGain))
    }
}
