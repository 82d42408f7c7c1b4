import KTask

/// A threading system `ktask compare` measures on the same work: ktask, or a peer a user would
/// otherwise reach for.
package enum ComparedSystem: String, CaseIterable, Sendable {
    case ktask
    /// C + OpenMP, `schedule(dynamic)` over ktask's chunks (gcc `-fopenmp`, an external program).
    case openmp
    /// C++ + oneTBB `parallel_for`, one task per chunk in an arena of N threads (an external program).
    case tbb
    /// Swift `DispatchQueue.concurrentPerform`, N iterations each striding over every N-th chunk.
    case dispatch
    /// A Swift `TaskGroup` with at most N child tasks in flight, one per chunk.
    case taskGroup = "taskgroup"
    /// QEMU preallocating a memory backend of the same size and pages (`prealloc-threads=N`), for the
    /// prefault workload only; timed from process start to exit.
    case qemu

    /// The systems a comparison of `workload` runs when none are named: QEMU only for prefault.
    package static func defaults(for workload: WorkloadKind) -> [ComparedSystem] {
        allCases.filter { $0 != .qemu || workload == .prefault }
    }

    /// The external program that runs this peer, built by `scripts/build-peers.sh`; nil for Swift ones.
    package var executableName: String? {
        switch self {
        case .openmp: "ktask-peer-openmp"
        case .tbb: "ktask-peer-tbb"
        case .ktask, .dispatch, .taskGroup, .qemu: nil
        }
    }
}

/// Runs one workload's job, timed, with one threading system.
protocol SystemRunner: AnyObject {
    /// Runs the whole job once with `threads` threads and checks its result; returns the seconds the
    /// parallel part took (set-up and checks excluded, as for ktask's own measurement).
    func runOnce(threads: Int) throws -> Double
}

/// ktask itself, with its defaults.
final class KTaskRunner: SystemRunner {
    let workload: any BenchWorkload
    let options: KTask.Options

    init(workload: any BenchWorkload, options: KTask.Options) {
        self.workload = workload
        self.options = options
    }

    func runOnce(threads: Int) throws -> Double {
        try workload.runOnce(threads: threads, options: options).seconds
    }
}

extension BenchWorkload {
    /// The chunk ktask would use at `threads` threads, which the peers are given too.
    func chunkSize(threads: Int) throws -> Int {
        try KTask.plannedChunkSize(items: items, minChunk: minChunk, align: align, threads: threads)
    }
}

/// The items of chunk `index` when `0..<items` is cut into chunks of `size` items.
func chunkItems(_ index: Int, size: Int, of items: Int) -> Range<Int> {
    index * size..<min(items, (index + 1) * size)
}
