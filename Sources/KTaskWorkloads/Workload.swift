import KTask

#if canImport(Glibc)
import Glibc
#endif

/// One of the seed's real workloads, ready to run as a ktask job at a given thread count.
package protocol BenchWorkload: AnyObject {
    /// Work items in one job (pages, descriptors, or hash inputs): a run's body covers `0..<items`.
    var items: Int { get }
    /// The smallest chunk worth a thread, and the chunk alignment, in items (ktask's options, and the
    /// chunking `ktask compare` gives the peers).
    var minChunk: Int { get }
    var align: Int { get }
    /// What the workload does and how, for reports (e.g. which prefault method is in force).
    var summary: String { get }
    /// Sets up one run (fresh memory, a new generation tag, a zeroed sum): the chunk body to run over
    /// `0..<items` (or the per-node ranges) and the check of its result. Any threading system can run it.
    func prepareRun() throws -> PreparedRun
}

/// One run of a workload, set up and ready: the chunk body and the check of the result. ktask runs it
/// in ``BenchWorkload/runOnce(threads:options:)``; `ktask compare`'s Swift peers run the same body.
package struct PreparedRun: Sendable {
    /// One range per node (memory bound there); nil: the one range `0..<items` of the workload.
    package let perNode: [KTask.NodeRange]?
    /// Does the work for one chunk of items.
    package let body: @Sendable (Range<Int>) throws -> Void
    /// Throws ``WorkloadError/wrongResult(workload:detail:)`` unless every item was done by this run.
    package let check: @Sendable () throws -> Void
    /// The whole job as a user of ktask runs it, where that is a call of its own (prefault:
    /// `KTask.populate`); nil: `KTask.run` of `body` over the items or `perNode`.
    package let job: (@Sendable (KTask.Options) throws -> KTask.Report)?

    init(perNode: [KTask.NodeRange]?, body: @escaping @Sendable (Range<Int>) throws -> Void, check: @escaping @Sendable () throws -> Void,
         job: (@Sendable (KTask.Options) throws -> KTask.Report)? = nil) {
        (self.perNode, self.body, self.check, self.job) = (perNode, body, check, job)
    }
}

extension BenchWorkload {
    /// Runs the whole job once with ktask, with at most `threads` threads, and checks its result. The
    /// time and CPU time are the ktask call's alone, without set-up or checks.
    package func runOnce(threads: Int, options: KTask.Options) throws -> JobMeasurement {
        let run = try prepareRun()
        var options = options
        options.maxThreads = threads
        options.minChunk = minChunk
        options.align = align
        let measurement = try JobMeasurement.measure {
            if let job = run.job {
                try job(options)
            } else if let perNode = run.perNode {
                try KTask.run(perNode: perNode, options: options, run.body)
            } else {
                try KTask.run(0..<items, options: options, run.body)
            }
        }
        try run.check()
        return measurement
    }
}

/// One run of a workload's job: what the engine reported, and the wall and CPU time (user + system, all
/// threads of the process) the call took.
package struct JobMeasurement: Sendable {
    package let report: KTask.Report
    /// From the call to its return: what a user of ktask waits (the report's wall time is the engine's job
    /// alone, without a populate's checks before it).
    package let seconds: Double
    package let cpuSeconds: Double

    /// Runs `job`, measuring the time and the process's CPU time around it.
    static func measure(_ job: () throws -> KTask.Report) rethrows -> JobMeasurement {
        let before = processCPUSeconds()
        let start = ContinuousClock.now
        let report = try job()
        let seconds = (ContinuousClock.now - start).seconds
        return JobMeasurement(report: report, seconds: seconds, cpuSeconds: processCPUSeconds() - before)
    }

    /// Total CPU time (user + system) the whole process has used (CLOCK_PROCESS_CPUTIME_ID).
    private static func processCPUSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

/// The workloads `ktask bench` knows.
package enum WorkloadKind: String, CaseIterable, Sendable {
    /// Fault in a fresh anonymous mapping page by page, as starting a VM with pinned memory does.
    case prefault
    /// Initialise 64-byte page descriptors in a faulted buffer, as deferred struct-page init does at boot.
    case pageInit = "init"
    /// A CPU-bound mixing hash over N items, summed and checked.
    case compute
    /// Items that each wait 250 µs holding one of a limiter's permits: throughput capped at `permits`
    /// threads (the knee `ktask tune` and adaptive mode must find).
    case rateLimited = "rate-limited"

    /// What `--size` counts for this workload.
    package var sizeUnit: String { self == .compute || self == .rateLimited ? "items" : "bytes" }

    /// The default size: about 2 s on one thread of a 2-core machine for init and compute (threads 1 and 2,
    /// 5 runs each: 10-40 s), 1 GiB for prefault (about 0.1 s a run in THP pages, so 11 runs keep the
    /// table's speedups within ±10% run to run on a noisy VM).
    package var defaultSize: Int {
        switch self {
        case .prefault: 1 << 30
        case .pageInit: 8 << 30
        case .compute: 200_000_000
        case .rateLimited: 2000
        }
    }

    /// Builds the workload for `size` (bytes or items); allocation and pre-faulting happen here.
    /// With `nodes`, the work (and its memory) is split into one range per node, bound there.
    /// `permits`: the rate-limited workload's cap on threads doing work at once.
    /// `pageMode`: the prefault workload's pages (the others ignore it).
    package func make(size: Int, nodes: [Int]? = nil, permits: Int = 1, pageMode: KTask.PageMode = .base) throws -> any BenchWorkload {
        switch self {
        case .rateLimited: try RateLimitedWorkload(items: size, permits: permits)
        case .prefault: try PrefaultWorkload(bytes: size, nodes: nodes, pageMode: pageMode)
        case .pageInit: try PageInitWorkload(bytes: size, nodes: nodes)
        case .compute: try ComputeWorkload(items: size, nodes: nodes)
        }
    }
}

/// Why a workload could not be set up or produced a wrong result.
package enum WorkloadError: Error, Equatable, CustomStringConvertible {
    case sizeTooSmall(workload: String, size: Int, minimum: Int)
    case mapFailed(bytes: Int, errno: Int32)
    case wrongResult(workload: String, detail: String)
    case invalidParameter(name: String, value: Int, allowed: String)

    package var description: String {
        switch self {
        case .sizeTooSmall(let workload, let size, let minimum):
            "size \(size) is too small for \(workload); it must be at least \(minimum)"
        case .mapFailed(let bytes, let errno):
            "could not map \(bytes) bytes (errno \(errno)); try a smaller --size"
        case .wrongResult(let workload, let detail):
            "\(workload) produced a wrong result: \(detail)"
        case .invalidParameter(let name, let value, let allowed):
            "\(name) is \(value); allowed: \(allowed)"
        }
    }
}

/// Where `ktask bench` runs a workload's threads.
package enum NodeChoice: Sendable, Equatable {
    /// On the caller's node (the engine's default placement).
    case local
    /// Anywhere.
    case any
    /// One range per listed node, its memory bound there (the kernel's `ktask_run_numa`).
    case list([Int])
}
