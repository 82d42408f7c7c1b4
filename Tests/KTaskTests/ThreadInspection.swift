@testable import KTask
import CKTaskShims
import Foundation

/// Reads threads back from /proc, as `top -H` would.
struct ThreadSnapshot: Equatable {
    let tid: Int
    let name: String
    let state: Character
    let nice: Int
    /// utime + stime, in clock ticks.
    let cpuTicks: Int

    /// The thread `tid` of this process, or nil if it has exited.
    static func read(tid: Int) -> ThreadSnapshot? {
        guard let stat = try? String(contentsOfFile: "/proc/self/task/\(tid)/stat", encoding: .utf8),
              let comm = try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8),
              let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after "pid (comm)": state is field 3; utime 14, stime 15; nice 19.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 17, let utime = Int(fields[11]), let stime = Int(fields[12]), let nice = Int(fields[16])
        else { return nil }
        return ThreadSnapshot(tid: tid, name: comm.trimmingCharacters(in: .whitespacesAndNewlines),
                              state: fields[0].first!, nice: nice, cpuTicks: utime + stime)
    }

    /// Every thread of this process whose name starts with `prefix`.
    static func all(namedWithPrefix prefix: String) -> [ThreadSnapshot] {
        let tids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tids.compactMap { Int($0) }.compactMap(read(tid:)).filter { $0.name.hasPrefix(prefix) }
    }

    static var currentTID: Int { Int(CKTask_gettid()) }
}

/// Runs `body` on `count` new threads at once and waits for all of them.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            body(index)
            group.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    group.wait()
}

/// A small deterministic generator, so a failing random case can be replayed from its seed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Checks that `chunks` tile `range` exactly: no gap, no overlap, each boundary inside the range
/// aligned to `align`, and every chunk but the ends at least `minChunk` items.
func tilingProblems(_ chunks: [Range<Int>], range: Range<Int>, align: Int, minChunk: Int) -> [String] {
    var problems: [String] = []
    let sorted = chunks.sorted { $0.lowerBound < $1.lowerBound }
    var expected = range.lowerBound
    for (position, chunk) in sorted.enumerated() {
        if chunk.isEmpty { problems.append("empty chunk \(chunk)") }
        if chunk.lowerBound != expected { problems.append("chunk \(chunk) starts at \(chunk.lowerBound), expected \(expected)") }
        if chunk.lowerBound != range.lowerBound && chunk.lowerBound % align != 0 {
            problems.append("chunk \(chunk) starts off the \(align) alignment")
        }
        let isEnd = position == 0 || position == sorted.count - 1
        if !isEnd && chunk.count < minChunk { problems.append("inner chunk \(chunk) is below minChunk \(minChunk)") }
        expected = chunk.upperBound
    }
    if expected != range.upperBound { problems.append("chunks end at \(expected), not \(range.upperBound)") }
    return problems
}

/// Cancels `task` once `completed` holds `count` chunks, from a thread of its own: other tests, or the
/// task itself when it blocks, may hold every cooperative thread.
func cancel<T: Sendable>(_ task: Task<T, any Error>, after count: Int, of completed: Locked<[Range<Int>]>) {
    Thread.detachNewThread {
        while completed.current.count < count { usleep(1_000) }
        task.cancel()
    }
}

/// Runs a job through the engine as the blocking API does, callable from an exit test's closure (which
/// the blocking API's `noasync` forbids).
@discardableResult
func runJob(_ range: Range<Int>, options: KTask.Options = KTask.Options(),
            _ chunk: @Sendable (Range<Int>) throws -> Void = { _ in }) throws -> KTask.Report {
    try MultithreadedJob.run(.range(range), options: options,
                cancellation: JobCancellation(token: options.cancellation, asyncTask: nil, observesCurrentTask: true),
                undo: nil, chunk)
}

/// The cpu-controller cgroup path of one of this process's threads (cgroup v1), nil where unreadable.
func cpuCgroup(_ tid: Int) -> String? {
    (try? String(contentsOfFile: "/proc/self/task/\(tid)/cgroup", encoding: .utf8))?
        .split(separator: "\n").first { $0.split(separator: ":")[1].split(separator: ",").contains("cpu") }
        .map { String($0.split(separator: ":", maxSplits: 2)[2]) }
}
