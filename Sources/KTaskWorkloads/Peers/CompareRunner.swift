import Foundation
import KTask

/// One system at one thread count: its timings and how it compares with ktask.
package struct CompareRow: Sendable {
    package let system: ComparedSystem
    package let threads: Int
    package let seconds: Sample
    /// This system's median seconds ÷ ktask's at the same thread count: above 1, ktask was faster.
    package let ratioVsKTask: Double
    /// How far `ratioVsKTask` would move in a second run of the same command, in percent (about 95% of the
    /// time; 0 for ktask's own row, infinite with one run): a ratio within it of 1 is parity on this machine.
    package let ratioUncertaintyPercent: Double
    /// The median over runs of (this system's seconds ÷ ktask's in the same round): the two ran
    /// back to back, so drift of the machine between rounds cancels out.
    package let pairedRatioVsKTask: Double
}

/// A finished comparison of one workload.
package struct CompareResult: Sendable {
    package let workload: WorkloadKind
    package let size: Int
    package let runs: Int
    package let summary: String
    package let rows: [CompareRow]
    /// Systems without rows, and why (not built, failed, wrong result).
    package let missing: [(system: ComparedSystem, reason: String)]
    /// CPU time the hypervisor took from this guest during the timed runs (nil: unknown).
    package let stealSeconds: Double?
}

/// Runs ktask and its peers on the same workload instance, alternating run by run (ktask, openmp, tbb,
/// dispatch, taskgroup, then openmp, tbb, ..., ktask: each run rotated by one) at each thread count, so
/// that the machine's drift and each run's after-effects hit all alike.
package struct CompareRunner {
    package let workload: WorkloadKind
    package let size: Int
    package let threadCounts: [Int]
    package let runs: Int
    package let systems: [ComparedSystem]
    /// Where `scripts/build-peers.sh` put the C/C++ peers.
    package let peersDirectory: String
    /// ktask's options (its defaults unless a comparison asks otherwise, e.g. helpers at the caller's nice).
    package let options: KTask.Options
    /// The prefault workload's pages (QEMU's backend gets the same).
    package let pageMode: KTask.PageMode

    package init(workload: WorkloadKind, size: Int, threadCounts: [Int], runs: Int,
                systems: [ComparedSystem] = ComparedSystem.allCases, peersDirectory: String,
                options: KTask.Options = KTask.Options(), pageMode: KTask.PageMode = .base) {
        self.options = options
        self.pageMode = pageMode
        self.workload = workload
        self.size = size
        self.threadCounts = threadCounts
        self.runs = runs
        self.systems = [.ktask] + systems.filter { $0 != .ktask }
        self.peersDirectory = peersDirectory
    }

    /// Runs the comparison; `progress` hears (run, of runs, system, threads) before each job (run 0: warm-up).
    package func run(progress: (Int, Int, ComparedSystem, Int) -> Void = { _, _, _, _ in }) throws -> CompareResult {
        let instance = try workload.make(size: size, pageMode: pageMode)
        var missing: [(system: ComparedSystem, reason: String)] = []
        var runners: [(ComparedSystem, any SystemRunner)] = []
        for system in systems {
            do {
                runners.append((system, try makeRunner(system, workload: instance)))
            } catch let error as PeerError {
                missing.append((system, error.reason))
            }
        }
        var seconds: [ComparedSystem: [Int: [Double]]] = [:]
        /// Per system and thread count, its time ÷ ktask's in each round where both ran.
        var pairedRatios: [ComparedSystem: [Int: [Double]]] = [:]
        // Drops a peer that fails mid-way; ktask failing ends the comparison.
        func measure(_ system: ComparedSystem, _ runner: any SystemRunner, threads: Int) throws -> Double? {
            do {
                return try runner.runOnce(threads: threads)
            } catch {
                guard system != .ktask else { throw error }
                missing.append((system, (error as? PeerError)?.reason ?? "\(error)"))
                runners.removeAll { $0.0 == system }
                seconds[system] = nil
                return nil
            }
        }
        // One untimed run of each first: first touches of memory and thread start-up are not what is compared.
        for (system, runner) in runners {
            progress(0, runs, system, threadCounts.last!)
            _ = try measure(system, runner, threads: threadCounts.last!)
        }
        let stealBefore = StealTime.total()
        for run in 1...runs {
            for threads in threadCounts {
                // Each run starts with the next system (a rotation), so that what the run before leaves
                // behind (freed memory the host takes back, a cooling CPU) does not always hit the same one.
                let shift = (run - 1) % max(1, runners.count)
                var round: [ComparedSystem: Double] = [:]
                for (system, runner) in Array(runners[shift...] + runners[..<shift]) {
                    progress(run, runs, system, threads)
                    if let time = try measure(system, runner, threads: threads) {
                        seconds[system, default: [:]][threads, default: []].append(time)
                        round[system] = time
                    }
                }
                for (system, time) in round {
                    pairedRatios[system, default: [:]][threads, default: []].append(time / round[.ktask]!)
                }
            }
        }
        let steal = StealTime.total().flatMap { after in stealBefore.map { after - $0 } }
        var rows: [CompareRow] = []
        for threads in threadCounts {
            let ktask = Sample(seconds[.ktask]![threads]!)
            for system in systems {
                guard let values = seconds[system]?[threads] else { continue }
                let sample = Sample(values)
                rows.append(CompareRow(system: system, threads: threads, seconds: sample,
                                       ratioVsKTask: sample.median / ktask.median,
                                       ratioUncertaintyPercent: system == .ktask ? 0 : Sample.ratioUncertaintyPercent(sample, ktask),
                                       pairedRatioVsKTask: Sample(pairedRatios[system]?[threads] ?? []).median))
            }
        }
        return CompareResult(workload: workload, size: size, runs: runs, summary: instance.summary, rows: rows,
                             missing: missing, stealSeconds: steal)
    }

    private func makeRunner(_ system: ComparedSystem, workload instance: any BenchWorkload) throws -> any SystemRunner {
        switch system {
        case .ktask: return KTaskRunner(workload: instance, options: options)
        case .dispatch: return DispatchPeer(workload: instance)
        case .taskGroup: return TaskGroupPeer(workload: instance)
        case .qemu: return try QEMUPeer(workload: instance)
        case .openmp, .tbb:
            let name = system.executableName!
            let path = (peersDirectory as NSString).appendingPathComponent(name)
            guard FileManager.default.isExecutableFile(atPath: path) else {
                let reason = (try? String(contentsOfFile: path + ".missing", encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                throw PeerError.missing(system: system.rawValue,
                                        reason: reason ?? "\(path) is not built (run scripts/build-peers.sh)")
            }
            return try ExternalPeer(system: system, executable: path, workload: instance, kind: workload, size: size)
        }
    }
}

extension PeerError {
    var reason: String {
        switch self {
        case .missing(_, let reason), .failed(_, let reason): reason
        }
    }
}
