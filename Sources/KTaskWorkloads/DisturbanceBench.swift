import Foundation
import KTask

/// How much a ktask job slows a CPU-bound foreground load down (``ForegroundLoad``, one thread per CPU at
/// nice 0, in a process of its own), in this session and in another one.
///
/// For each case the foreground counts its work for a fixed time while this process runs compute jobs
/// back to back: none (alone), with helpers at nice 19 (ktask's defaults), with helpers at nice 0 (no
/// isolation, no starvation guard: what a naive pool does), and with the calling thread alone (a
/// 1-thread job, the least any job can cost). Cases are interleaved run by run.
package struct DisturbanceBench {
    package enum Case: String, CaseIterable, Sendable {
        case alone = "foreground_alone"
        case helpersNice19 = "with_ktask_nice19"
        case helpersNice0 = "with_ktask_nice0"
        case callerOnly = "with_caller_only"
    }

    /// The foreground's rate (items per second) in each case, one sample per run.
    package struct Result: Sendable {
        package let seconds: Double
        package let runs: Int
        package let foregroundThreads: Int
        package let sameSession: [Case: Sample]
        package let otherSession: [Case: Sample]

        /// Foreground slowdown in percent of its rate alone (medians).
        package func slowdownPercent(_ rates: [Case: Sample], _ which: Case) -> Double {
            guard let alone = rates[.alone]?.median, alone > 0, let with = rates[which]?.median else { return 0 }
            return (1 - with / alone) * 100
        }
    }

    package let foregroundCommand: [String]
    package let foregroundThreads: Int
    package let seconds: Double
    package let runs: Int
    /// Items per compute job run while the foreground counts.
    package let jobItems: Int

    /// - Parameter foregroundCommand: runs ``ForegroundLoad`` and prints its count (`ktask foreground-load`
    ///   with its threads and seconds).
    package init(foregroundCommand: [String], foregroundThreads: Int, seconds: Double, runs: Int, jobItems: Int = 20_000_000) {
        self.foregroundCommand = foregroundCommand
        self.foregroundThreads = foregroundThreads
        self.seconds = seconds
        self.runs = runs
        self.jobItems = jobItems
    }

    /// The jobs `run` measures, for a progress estimate.
    package var jobCount: Int { runs * 2 * Case.allCases.count }

    package func run(progress: (String) -> Void = { _ in }) throws -> Result {
        let naivePool = try KTask.Pool(name: "ktask-n0", isolateHelpers: false)
        let workload = try ComputeWorkload(items: jobItems)
        var same: [Case: [Double]] = [:]
        var other: [Case: [Double]] = [:]
        for run in 1...runs {
            for newSession in [false, true] {
                for which in Case.allCases {
                    progress("disturbance: run \(run)/\(runs), \(newSession ? "other" : "same") session, \(which.rawValue)")
                    let rate = try measure(which, newSession: newSession, workload: workload, naivePool: naivePool)
                    if newSession { other[which, default: []].append(rate) } else { same[which, default: []].append(rate) }
                }
            }
        }
        return Result(seconds: seconds, runs: runs, foregroundThreads: foregroundThreads,
                      sameSession: same.mapValues(Sample.init), otherSession: other.mapValues(Sample.init))
    }

    private func measure(_ which: Case, newSession: Bool, workload: ComputeWorkload, naivePool: KTask.Pool) throws -> Double {
        let foreground = try ForegroundProcess(command: foregroundCommand, newSession: newSession)
        let options: KTask.Options? = switch which {
        case .alone: nil
        case .helpersNice19: KTask.Options()
        case .helpersNice0: KTask.Options(helperPriority: .nice(0), starvationGuard: KTask.StarvationGuard.none, pool: naivePool)
        case .callerOnly: KTask.Options(maxThreads: 1)
        }
        if let options {
            while foreground.isRunning {
                _ = try workload.runOnce(threads: options.maxThreads ?? Int.max, options: options)
            }
        }
        return Double(try foreground.finish()) / seconds
    }
}

/// How long a job takes on a machine whose CPUs a foreground load keeps busy (one thread per CPU at
/// nice 0, same session): on one thread; on all CPUs with nice-19 helpers and no starvation guard; with
/// ktask's defaults (priority boost where the process may); and as an unprivileged process gets it
/// (no cgroup, no boost: smaller helper chunks).
package struct StarvationBench {
    package enum Case: String, CaseIterable, Sendable {
        case singleThread = "single_thread_s"
        case noBoost = "no_boost_s"
        case boost = "boost_s"
        case unprivileged = "unprivileged_s"
    }

    package struct Result: Sendable {
        package let runs: Int
        package let jobItems: Int
        package let seconds: [Case: Sample]
        /// The CPU time the job's helpers got in each run (all helpers together), by case: what a helper
        /// actually got beside the load.
        package let helperCPUSeconds: [Case: Sample]
        /// The guard ktask's defaults chose for the `boost_s` case.
        package let defaultGuard: KTask.StarvationGuard
    }

    package let foregroundCommand: [String]
    package let runs: Int
    package let jobItems: Int

    /// - Parameter foregroundCommand: a foreground load that runs longer than any job here (it is stopped
    ///   when the job ends).
    package init(foregroundCommand: [String], runs: Int, jobItems: Int = 50_000_000) {
        self.foregroundCommand = foregroundCommand
        self.runs = runs
        self.jobItems = jobItems
    }

    /// The jobs `run` measures, for a progress estimate.
    package var jobCount: Int { runs * Case.allCases.count }

    package func run(progress: (String) -> Void = { _ in }) throws -> Result {
        let nicePool = try KTask.Pool(name: "ktask-s19", isolateHelpers: false)
        let workload = try ComputeWorkload(items: jobItems)
        var seconds: [Case: [Double]] = [:], helperCPU: [Case: [Double]] = [:]
        var defaultGuard = KTask.StarvationGuard.none
        for run in 1...runs {
            for which in Case.allCases {
                progress("starvation: run \(run)/\(runs), \(which.rawValue)")
                let options = switch which {
                case .singleThread: KTask.Options(maxThreads: 1)
                case .noBoost: KTask.Options(starvationGuard: KTask.StarvationGuard.none, pool: nicePool)
                case .boost: KTask.Options()
                case .unprivileged: KTask.Options(starvationGuard: .smallerHelperChunks, pool: nicePool)
                }
                let foreground = try ForegroundProcess(command: foregroundCommand, newSession: false)
                defer { foreground.stop() }
                // Let the load take every CPU before the job starts.
                Thread.sleep(forTimeInterval: 0.2)
                let measurement = try workload.runOnce(threads: options.maxThreads ?? Int.max, options: options)
                if which == .boost { defaultGuard = measurement.report.starvationGuard }
                seconds[which, default: []].append(measurement.report.wallTime.seconds)
                helperCPU[which, default: []].append(measurement.report.cpuTimePerThread.dropFirst().reduce(0) { $0 + $1.seconds })
            }
        }
        return Result(runs: runs, jobItems: jobItems, seconds: seconds.mapValues(Sample.init),
                      helperCPUSeconds: helperCPU.mapValues(Sample.init), defaultGuard: defaultGuard)
    }
}
