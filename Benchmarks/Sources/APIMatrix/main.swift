// The API matrix: each public entry point a user reaches for first (run, map, reduce, update) against what
// they would otherwise write (the serial loop, a hand split over concurrentPerform, a TaskGroup), built as a
// client package in release mode, at several sizes and per-item costs, quiet or under load.
//
//   swift run -c release --package-path Benchmarks APIMatrix [--load none|one|all] [--rounds N]
//       [--sizes 16,256,...] [--costs cheap,100ns,10us] [--entries run,map,...]
//
// Rounds are interleaved (every variant once per round, in turn) so that host noise falls on all of them
// alike; each figure is the median time of one call over the rounds, with the p10-p90 spread, and the
// ratio is to the serial loop's median in the same run. Under load, ktask at its defaults is also set
// against itself at `maxThreads: 1`: helpers must never make a job slower than its caller alone.
import Dispatch
import KTask

#if canImport(Glibc)
import Glibc
#endif

// MARK: Work per item

/// An opaque value the optimiser cannot fold into a constant.
@inline(never) func opaque<T>(_ value: T) -> T { value }

/// What each item costs.
enum Cost: String, CaseIterable {
    /// One multiply-add.
    case cheap
    /// A dependent chain of ~100 ns.
    case hundredNanoseconds = "100ns"
    /// A dependent chain of ~10 µs.
    case tenMicroseconds = "10us"

    /// Rounds of the dependent chain per item, calibrated at start for 100 ns and 10 µs.
    nonisolated(unsafe) static var rounds: [Cost: Int] = [.cheap: 0]

    /// The largest size worth timing at this cost (keeps a serial call under ~0.2 s).
    var maxItems: Int {
        switch self {
        case .cheap: return 16 << 20
        case .hundredNanoseconds: return 1 << 20
        case .tenMicroseconds: return 1 << 14
        }
    }
}

@inline(__always) func cheap(_ i: Int) -> Int { i &* i &+ 7 }

/// A dependent multiply-xorshift chain of `rounds` steps.
@inline(__always) func chain(_ i: Int, _ rounds: Int) -> Int {
    var x = UInt64(truncatingIfNeeded: i) &+ 0x9E37_79B9_7F4A_7C15
    for _ in 0..<rounds { x = (x ^ (x >> 29)) &* 0xBF58_476D_1CE4_E5B9 }
    return Int(truncatingIfNeeded: x)
}

func now() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

func calibrate() {
    let probe = 1_000_000
    let start = now()
    _ = opaque(chain(opaque(1), probe))
    let perRound = Double(now() - start) / Double(probe)
    Cost.rounds[.hundredNanoseconds] = max(1, Int(100 / perRound))
    Cost.rounds[.tenMicroseconds] = max(1, Int(10_000 / perRound))
}

// MARK: Variants

/// One way to do the job; returns a checksum so that nothing is optimised away.
struct Variant {
    let name: String
    let body: (Int, Cost) throws -> Int
}

let threads = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))

/// A pointer shared by the threads of a hand split (each writes its own elements).
struct SharedPointer: @unchecked Sendable { let base: UnsafeMutablePointer<Int> }

@inline(__always) func item(_ i: Int, _ cost: Cost, _ rounds: Int) -> Int {
    cost == .cheap ? cheap(i) : chain(i, rounds)
}

/// Fills `count` results: the shape of `map`, `update` and `run` alike.
func serialFill(_ n: Int, _ cost: Cost) -> Int {
    let rounds = Cost.rounds[cost]!
    let results = (0..<n).map { item($0, cost, rounds) }
    return results[n / 2]
}

func serialSum(_ n: Int, _ cost: Cost, _ data: [Int]) -> Int {
    let rounds = Cost.rounds[cost]!
    if cost == .cheap { return data.reduce(0) { $0 &+ $1 &* $1 } }
    var sum = 0
    for i in 0..<n { sum &+= chain(i, rounds) }
    return sum
}

func handSplitFill(_ n: Int, _ cost: Cost) -> Int {
    let rounds = Cost.rounds[cost]!
    let results = [Int](unsafeUninitializedCapacity: n) { buffer, initialized in
        let shared = SharedPointer(base: buffer.baseAddress!)
        let parts = min(threads, n)
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let lower = n * part / parts, upper = n * (part + 1) / parts
            for i in lower..<upper { (shared.base + i).initialize(to: item(i, cost, rounds)) }
        }
        initialized = n
    }
    return results[n / 2]
}

func taskGroupFill(_ n: Int, _ cost: Cost) async -> Int {
    let rounds = Cost.rounds[cost]!
    let buffer = UnsafeMutableBufferPointer<Int>.allocate(capacity: n)
    defer { buffer.deallocate() }
    let shared = SharedPointer(base: buffer.baseAddress!)
    let parts = min(threads, n)
    await withTaskGroup(of: Void.self) { group in
        for part in 0..<parts {
            group.addTask {
                let lower = n * part / parts, upper = n * (part + 1) / parts
                for i in lower..<upper { (shared.base + i).initialize(to: item(i, cost, rounds)) }
            }
        }
    }
    // The buffer, not an array made from it: TaskGroup's figure leaves out that copy.
    return buffer[n / 2]
}

/// Runs an async body to completion from synchronous code (the variants are timed alike).
func blockingAwait(_ body: @escaping @Sendable () async -> Int) -> Int {
    nonisolated(unsafe) var result = 0
    let done = DispatchSemaphore(value: 0)
    Task {
        result = await body()
        done.signal()
    }
    done.wait()
    return result
}

func ktaskVariants(_ label: String, _ options: KTask.Options, entries: Set<String>) -> [Variant] {
    var variants: [Variant] = []
    if entries.contains("map") {
        variants.append(Variant(name: "map\(label)") { n, cost in
            let rounds = Cost.rounds[cost]!
            let results = try KTask.map(0..<n, options: options) { item($0, cost, rounds) }
            return results[n / 2]
        })
    }
    if entries.contains("update") {
        variants.append(Variant(name: "update\(label)") { n, cost in
            let rounds = Cost.rounds[cost]!
            var results = [Int](repeating: 0, count: n)
            try KTask.update(&results, options: options) { chunk, span in
                for i in chunk { span[i - chunk.lowerBound] = item(i, cost, rounds) }
            }
            return results[n / 2]
        })
    }
    if entries.contains("run") {
        variants.append(Variant(name: "run\(label)") { n, cost in
            let rounds = Cost.rounds[cost]!
            let results = try [Int](unsafeUninitializedCapacity: n) { buffer, initialized in
                let shared = SharedPointer(base: buffer.baseAddress!)
                try KTask.run(0..<n, options: options) { chunk in
                    for i in chunk { (shared.base + i).initialize(to: item(i, cost, rounds)) }
                }
                initialized = n
            }
            return results[n / 2]
        })
    }
    return variants
}

func reduceVariants(_ label: String, _ options: KTask.Options) -> [Variant] {
    [Variant(name: "reduce\(label)") { n, cost in
        let rounds = Cost.rounds[cost]!
        if cost == .cheap {
            let data = dataFor(n)
            return try KTask.reduce(0..<n, options: options, 0, &+) { range in
                data[range].reduce(0) { $0 &+ $1 &* $1 }
            }
        }
        return try KTask.reduce(0..<n, options: options, 0, &+) { range in
            var sum = 0
            for i in range { sum &+= chain(i, rounds) }
            return sum
        }
    }]
}

nonisolated(unsafe) var dataCache: [Int: [Int]] = [:]
func dataFor(_ n: Int) -> [Int] {
    if let data = dataCache[n] { return data }
    let data = (0..<n).map { $0 &* 31 &+ 1 }
    dataCache[n] = data
    return data
}

// MARK: Load

/// Spinners at nice 0, as another user's CPU-bound work: one process per CPU, or one (a shell loop, so
/// that no optimiser can remove it).
func startLoad(_ mode: String) -> [pid_t] {
    let count = mode == "all" ? threads : mode == "one" ? 1 : 0
    var pids: [pid_t] = []
    for _ in 0..<count {
        var pid: pid_t = 0
        let arguments = ["/bin/sh", "-c", "while :; do :; done"]
        var argv = arguments.map { strdup($0) } + [nil]
        guard posix_spawn(&pid, "/bin/sh", nil, nil, &argv, environ) == 0 else { fatalError("could not start the load") }
        argv.forEach { free($0) }
        pids.append(pid)
    }
    // Let the load take the CPUs.
    usleep(200_000)
    return pids
}

func stopLoad(_ pids: [pid_t]) {
    for pid in pids { kill(pid, SIGKILL); waitpid(pid, nil, 0) }
}

// MARK: Timing

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))]
}

func format(_ nanoseconds: Double) -> String {
    switch nanoseconds {
    case ..<1_000: return String(Int(nanoseconds)) + " ns"
    case ..<1_000_000: return String(Double(Int(nanoseconds / 10)) / 100) + " µs"
    default: return String(Double(Int(nanoseconds / 10_000)) / 100) + " ms"
    }
}

func ratio(_ value: Double) -> String {
    String(Double(Int((value * 100).rounded())) / 100) + "x"
}

func main() throws {
    var load = "none", rounds = 15
    var sizes = [16, 256, 4096, 65536, 1 << 20, 16 << 20]
    var costs = Cost.allCases
    var entries: Set<String> = ["run", "map", "reduce", "update"]
    var defaults = KTask.Options()
    var profiled: String?
    var reports = 0
    var arguments = CommandLine.arguments.dropFirst().makeIterator()
    while let argument = arguments.next() {
        guard let value = arguments.next() else { fatalError("\(argument) needs a value") }
        switch argument {
        case "--load": load = value
        case "--rounds": rounds = Int(value)!
        case "--sizes": sizes = value.split(separator: ",").map { Int($0)! }
        case "--costs": costs = value.split(separator: ",").map { Cost(rawValue: String($0))! }
        case "--entries": entries = Set(value.split(separator: ",").map(String.init))
        case "--helper-priority":
            // lowest (the default), caller, or nice:N: the helpers of every ktask variant.
            defaults.helperPriority = value == "caller" ? .inheritCaller
                : value.hasPrefix("nice:") ? .nice(Int(value.dropFirst(5))!) : .lowest
        case "--reports":
            // The reports of N runs of KTask.run under the load, one per line: --reports N --sizes N --costs COST
            reports = Int(value)!
        case "--profile":
            // One variant in a loop for 3 s (for perf): --profile NAME --sizes N --costs COST
            profiled = value
        default: fatalError("unknown option \(argument)")
        }
    }
    calibrate()
    if let profiled {
        let empty = Variant(name: "empty") { _, _ in
            try KTask.run(0..<2, options: KTask.Options(maxThreads: 2)) { chunk in _ = opaque(chunk) }
            return 0
        }
        let variant = ([empty] + ktaskVariants("", KTask.Options(), entries: [profiled]) + reduceVariants("", KTask.Options()))
            .first { $0.name == profiled }!
        let start = now()
        var calls = 0
        while now() - start < 3_000_000_000 {
            for _ in 0..<100 { _ = opaque(try variant.body(sizes[0], costs[0])) }
            calls += 100
        }
        print("\(profiled): \(format(Double(now() - start) / Double(calls))) per call")
        return
    }
    if reports > 0 {
        let loadPIDs = startLoad(load)
        defer { stopLoad(loadPIDs) }
        let cost = costs[0], rounds = Cost.rounds[cost]!
        for _ in 0..<reports {
            let sink = SharedPointer(base: .allocate(capacity: sizes[0]))
            let start = now()
            let single = try KTask.run(0..<sizes[0], options: KTask.Options(maxThreads: 1)) { chunk in
                for i in chunk { sink.base[i] = item(i, cost, rounds) }
            }
            let middle = now()
            let report = try KTask.run(0..<sizes[0], options: KTask.Options(pool: KTask.Pool(name: "fresh"))) { chunk in
                for i in chunk { sink.base[i] = item(i, cost, rounds) }
            }
            print("1 thread \(format(Double(middle - start))), ktask \(format(Double(now() - middle))): \(report), guard \(report.starvationGuard), boosted \(report.boostedHelpers)")
            _ = single
            sink.base.deallocate()
        }
        return
    }
    var one = defaults
    one.maxThreads = 1
    print("# API matrix: \(threads) CPUs, load \(load), helpers \(defaults.helperPriority), \(rounds) interleaved rounds; median per call [p10-p90], ratio to serial")
    let loadPIDs = startLoad(load)
    defer { stopLoad(loadPIDs) }
    for cost in costs {
        for n in sizes where n <= cost.maxItems {
            var variants: [Variant] = [
                Variant(name: "serial loop") { n, cost in serialFill(n, cost) },
                Variant(name: "concurrentPerform split") { n, cost in handSplitFill(n, cost) },
                Variant(name: "TaskGroup split") { n, cost in blockingAwait { await taskGroupFill(n, cost) } },
            ]
            variants += ktaskVariants("", defaults, entries: entries)
            if load != "none" { variants += ktaskVariants(" (1 thread)", one, entries: entries) }
            if entries.contains("reduce") {
                variants.append(Variant(name: "serial reduce") { n, cost in serialSum(n, cost, dataFor(n)) })
                variants += reduceVariants("", defaults)
                if load != "none" { variants += reduceVariants(" (1 thread)", one) }
            }
            // Calls per sample: enough for ~1 ms of serial work, so that the clock's cost vanishes.
            let serialOnce = { () -> Double in
                let start = now()
                _ = opaque(serialFill(n, cost))
                return Double(now() - start)
            }
            _ = serialOnce()
            let calls = max(1, min(10_000, Int(1_000_000 / max(1, serialOnce()))))
            var samples = [[Double]](repeating: [], count: variants.count)
            for variant in variants { _ = try variant.body(n, cost) }
            for round in 0..<rounds {
                // Each round in a different order, so that no variant always follows the same one.
                let order = round % 2 == 0 ? Array(variants.indices) : variants.indices.reversed()
                for index in order {
                    let start = now()
                    var sink = 0
                    for _ in 0..<calls { sink &+= try variants[index].body(n, cost) }
                    samples[index].append(Double(now() - start) / Double(calls))
                    _ = opaque(sink)
                }
            }
            print("\n## \(cost.rawValue) items, n = \(n) (\(calls) calls per sample)")
            let medians = samples.map { $0.sorted()[$0.count / 2] }
            let serialFillMedian = medians[0]
            let serialReduceMedian = variants.firstIndex { $0.name == "serial reduce" }.map { medians[$0] }
            for (index, variant) in variants.enumerated() {
                let sorted = samples[index].sorted()
                let base = variant.name.hasPrefix("reduce") || variant.name == "serial reduce"
                    ? serialReduceMedian! : serialFillMedian
                var line = "\(variant.name.padding(28)) \(format(medians[index]).padding(10)) [\(format(percentile(sorted, 0.1)))-\(format(percentile(sorted, 0.9)))]".padding(64)
                line += "  \(ratio(medians[index] / base)) serial"
                if variant.name.hasSuffix(" (1 thread)") == false, load != "none",
                   let single = variants.firstIndex(where: { $0.name == variant.name + " (1 thread)" }) {
                    let ratios = zip(samples[index], samples[single]).map { $0 / $1 }.sorted()
                    line += ", \(ratio(medians[index] / medians[single])) its 1-thread time (paired p90 \(ratio(percentile(ratios, 0.9))))"
                }
                print(line)
            }
        }
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}

try main()
