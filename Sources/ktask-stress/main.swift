// A random-job soak for ThreadSanitizer (`scripts/tsan-stress.sh`): jobs of every kind a program may run —
// blocking and async, map/reduce/update, nested, per node, adaptive, cancelled, failing with undo, on small
// pools whose caps change meanwhile, populates — from several threads at once, each result checked. Under
// `--sanitize=thread` a clean run prints no report; any wrong result fails it whatever the build.
import Foundation
import KTask
import Synchronization

struct StressFailure: Error, CustomStringConvertible { let description: String }
struct PlannedFailure: Error {}

/// A small deterministic generator, so that a run can be replayed from its seed.
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

/// Items each chunk saw, summed: a job covered its range once when this equals the range's sum.
final class Tally: Sendable {
    let sum = Atomic<Int>(0)
    func add(_ range: Range<Int>) { sum.add(range.reduce(0, &+), ordering: .relaxed) }
}

func expectedSum(_ range: Range<Int>) -> Int { range.reduce(0, &+) }

func check(_ ok: Bool, _ what: @autoclosure () -> String) throws {
    if !ok { throw StressFailure(description: what()) }
}

let pools = [try KTask.Pool(name: "stress-a", maxBusyHelpers: 1, idleTimeout: .milliseconds(5)),
             try KTask.Pool(name: "stress-b", maxBusyHelpers: 3), KTask.Pool.shared]

func randomOptions(_ g: inout SplitMix) -> KTask.Options {
    var options = KTask.Options(minChunk: [1, 7, 64, 1000].randomElement(using: &g)!,
                                align: [1, 4, 64].randomElement(using: &g)!,
                                maxThreads: [nil, 1, 2, 4, 8].randomElement(using: &g)!,
                                helperPriority: [.lowest, .inheritCaller, .nice(5)].randomElement(using: &g)!,
                                starvationGuard: KTask.StarvationGuard.allCases.randomElement(using: &g)!,
                                pool: pools.randomElement(using: &g)!)
    if Int.random(in: 0..<8, using: &g) == 0 { options.placement = .anywhere }
    if Int.random(in: 0..<8, using: &g) == 0 { options.adaptiveThreads = KTask.AdaptiveThreads(window: .milliseconds(1)) }
    return options
}

/// One blocking job of a random kind; throws a StressFailure when its result is wrong.
func blockingJob(_ g: inout SplitMix) throws {
    let range = Int.random(in: 0...100, using: &g)..<Int.random(in: 101...20_000, using: &g)
    let options = randomOptions(&g)
    switch Int.random(in: 0..<7, using: &g) {
    case 0:
        let tally = Tally()
        try KTask.run(range, options: options) { tally.add($0) }
        try check(tally.sum.load(ordering: .relaxed) == expectedSum(range), "run: sum of \(range)")
    case 1:
        // A failing chunk: every completed chunk is undone, the first error comes back.
        let tally = Tally(), failAt = range.randomElement(using: &g)!
        do {
            try KTask.run(range, options: options, undo: { chunk in tally.sum.add(-expectedSum(chunk), ordering: .relaxed) }) { chunk in
                if chunk.contains(failAt) { throw PlannedFailure() }
                tally.add(chunk)
            }
            throw StressFailure(description: "run with a failing chunk returned")
        } catch is PlannedFailure {
            try check(tally.sum.load(ordering: .relaxed) == 0, "undo left \(tally.sum.load(ordering: .relaxed))")
        }
    case 2:
        let squares = try KTask.map(range, options: options) { $0 &* $0 }
        try check(squares.count == range.count && squares.last == range.last.map { $0 &* $0 }, "map of \(range)")
    case 3:
        let total = try KTask.reduce(range, options: options, 0, &+) { $0.reduce(0, &+) }
        try check(total == expectedSum(range), "reduce of \(range)")
    case 4:
        // Nested: every chunk runs a small job of its own.
        let tally = Tally()
        try KTask.run(0..<8, options: KTask.Options(maxThreads: 2, pool: options.pool)) { outer in
            for index in outer { try KTask.run(index * 100..<(index + 1) * 100, options: KTask.Options(minChunk: 10)) { tally.add($0) } }
        }
        try check(tally.sum.load(ordering: .relaxed) == expectedSum(0..<800), "nested")
    case 5:
        let tally = Tally()
        try KTask.run(perNode: [KTask.NodeRange(node: 0, range: range)], options: options) { tally.add($0) }
        try check(tally.sum.load(ordering: .relaxed) == expectedSum(range), "per node")
    default:
        // Cancelled from inside or from another thread: it stops with the cancellation error.
        let token = KTask.Cancellation()
        var cancelling = options
        cancelling.cancellation = token
        let canceller = Thread { usleep(50); token.cancel() }
        canceller.start()
        do {
            try KTask.run(0..<1_000_000, options: cancelling) { chunk in
                if chunk.lowerBound > 500_000 { token.cancel() }
                usleep(20)
            }
        } catch let error as KTask.Error where error == .cancelled {}
    }
}

/// One async job (map, reduce, update or run), awaited.
func asyncJob(_ seed: UInt64) async throws {
    var g = SplitMix(state: seed)
    let range = 0..<Int.random(in: 1...20_000, using: &g)
    let options = randomOptions(&g)
    switch seed % 3 {
    case 0:
        let total = try await KTask.reduce(range, options: options, 0, { $0 &+ $1 }) { $0.reduce(0, &+) }
        try check(total == expectedSum(range), "async reduce")
    case 1:
        var values = Array(repeating: 0, count: range.count)
        try await KTask.update(&values, options: options) { chunk, span in
            for index in span.indices { span[index] = chunk.lowerBound + index }
        }
        try check(values == Array(range), "async update")
    default:
        let tally = Tally()
        try await KTask.run(range, options: options) { tally.add($0) }
        try check(tally.sum.load(ordering: .relaxed) == expectedSum(range), "async run")
    }
}

let jobs = Int(ProcessInfo.processInfo.environment["KTASK_STRESS_JOBS"] ?? "") ?? 20_000
// A soak asked to run with machine-wide slots in a folder must have them: off, it would not exercise them.
if case .folder = Settings.current.slots.value, MachineSlots.shared == nil {
    print("ktask-stress: machine-wide slots are off: \(MachineSlots.offReason ?? "")")
    exit(2)
}
let threads = 4
let failures = Atomic<Int>(0)
let start = ContinuousClock.now

// Blocking jobs from `threads` threads; one of them also changes the small pools' caps and populates memory.
let group = DispatchGroup()
for worker in 0..<threads {
    group.enter()
    let thread = Thread {
        var g = SplitMix(state: 0x6b74_6173_6b00 + UInt64(worker))
        for index in 0..<(jobs / (threads + 1)) {
            do {
                try blockingJob(&g)
                if worker == 0 && index % 50 == 0 {
                    try pools[0].setMaxBusyHelpers(Int.random(in: 0...2, using: &g))
                    let memory = try KTask.Memory(bytes: 4 << 20, pages: .base)
                    try KTask.populate(memory, options: KTask.Options(maxThreads: 2))
                }
            } catch {
                if failures.add(1, ordering: .relaxed).newValue <= 5 { print("job failed: \(error)") }
            }
        }
        group.leave()
    }
    thread.stackSize = 1 << 20
    thread.start()
}
// Async jobs, several in flight at once, from the concurrency pool.
let asyncDone = DispatchSemaphore(value: 0)
Task.detached {
    await withTaskGroup(of: Void.self) { tasks in
        for index in 0..<(jobs / (threads + 1)) {
            if index >= 4 { await tasks.next() }
            tasks.addTask {
                do { try await asyncJob(UInt64(index)) } catch {
                    if failures.add(1, ordering: .relaxed).newValue <= 5 { print("async job failed: \(error)") }
                }
            }
        }
    }
    asyncDone.signal()
}
group.wait()
asyncDone.wait()
let seconds = (ContinuousClock.now - start) / .seconds(1)
let failed = failures.load(ordering: .relaxed)
print("ktask-stress: \(jobs) jobs in \(String(format: "%.1f", seconds)) s, \(failed) with a wrong result")
exit(failed == 0 ? 0 : 1)
