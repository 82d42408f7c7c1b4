import Benchmark
import Dispatch
import KTask

#if canImport(Glibc)
import Glibc
#endif

/// About 5 µs of dependent arithmetic.
@inline(never) func spin(_ seed: Int) -> UInt64 {
    var x = UInt64(truncatingIfNeeded: seed) | 1
    for _ in 0..<2_000 { x = (x ^ (x >> 29)) &* 0xBF58_476D_1CE4_E5B9 }
    return x
}

/// CPU time of the whole process (all threads).
func processCPUNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

/// What ktask itself costs: waking a helper and joining it, claiming chunks, and the inline path,
/// each beside the nearest alternative (Dispatch's concurrentPerform, a direct call).
let benchmarks: @Sendable () -> Void = {
    // 1000 jobs per sample, one after another (the figures are per job): what a loop of small jobs
    // costs, and not a helper's wake-up from a deep sleep between samples.
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal, .threads],
        timeUnits: .nanoseconds,
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 200_000)

    // A 2-thread job with nothing to do in its chunks: the cost of waking a helper and waiting for it.
    Benchmark("empty 2-thread job (KTask.run)") { benchmark in
        let options = KTask.Options(maxThreads: 2)
        for _ in benchmark.scaledIterations {
            blackHole(try KTask.run(0..<2, options: options) { chunk in blackHole(chunk) })
        }
    }

    Benchmark("empty 2-thread job (concurrentPerform)") { benchmark in
        for _ in benchmark.scaledIterations {
            DispatchQueue.concurrentPerform(iterations: 2) { index in blackHole(index) }
        }
    }

    // A job worth its helper, back to back: 2 items of ~5 µs on 2 threads (coarse work: its helper starts at
    // once). What is left over 5 µs is the cost of handing the helper its item and waiting for it.
    Benchmark("2 items of 5 µs on 2 threads (KTask.run)") { benchmark in
        let options = KTask.Options(maxThreads: 2)
        for _ in benchmark.scaledIterations {
            blackHole(try KTask.run(0..<2, options: options) { chunk in for item in chunk { blackHole(spin(item)) } })
        }
    }

    Benchmark("2 items of 5 µs on 2 threads (concurrentPerform)") { benchmark in
        for _ in benchmark.scaledIterations {
            DispatchQueue.concurrentPerform(iterations: 2) { index in blackHole(spin(index)) }
        }
    }

    // A small job: 16 items of arithmetic. ktask's caller runs it alone once it sees it is too small for a
    // helper (``CallerFirst``); the loop alone is the bar.
    Benchmark("16 items of arithmetic (KTask.run)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try KTask.run(0..<16) { chunk in for item in chunk { blackHole(item &* item &+ 7) } })
        }
    }

    Benchmark("16 items of arithmetic (the loop)") { benchmark in
        for _ in benchmark.scaledIterations {
            for item in 0..<16 { blackHole(item &* item &+ 7) }
        }
    }

    // Parked helpers must use no CPU: after a job, its helper spins briefly for the next one (so jobs
    // that follow one another skip the futex wake-up) and then parks. This measures the process's CPU
    // time over 0.5 s of idleness after a 2-thread job, in microseconds (0 when helpers park at once).
    Benchmark("CPU time of idle helpers over 0.5 s after a job (µs)",
              configuration: .init(metrics: [.custom("idle CPU µs", polarity: .prefersSmaller, useScalingFactor: false)],
                                   scalingFactor: .one,
                                   maxDuration: .seconds(10), maxIterations: 5)) { benchmark in
        let options = KTask.Options(maxThreads: 2)
        try KTask.run(0..<64, options: options) { chunk in blackHole(chunk) }
        let before = processCPUNanoseconds()
        usleep(500_000)
        benchmark.measurement(.custom("idle CPU µs"), Int((processCPUNanoseconds() - before) / 1000))
    }

    // A job below one chunk runs inline: the cost over calling the function yourself.
    Benchmark("job below one chunk (KTask.run)") { benchmark in
        let options = KTask.Options(minChunk: 1024)
        for _ in benchmark.scaledIterations {
            blackHole(try KTask.run(0..<512, options: options) { chunk in blackHole(chunk) })
        }
    }

    Benchmark("job below one chunk (direct call)") { benchmark in
        let body: (Range<Int>) -> Void = { chunk in blackHole(chunk) }
        for _ in benchmark.scaledIterations {
            body(0..<512)
        }
    }

    // Chunk-claim throughput with tiny chunks: 4096 one-item work units. ktask's caller claims chunks of
    // 512 and its helper 8-item grains (smallerHelperChunks: ~1/64 chunk); concurrentPerform claims one
    // iteration at a time. What is left is the claim loop's atomic, the cursor and the bookkeeping.
    Benchmark("4096 tiny work items (KTask.run, helper grains of 8)") { benchmark in
        let options = KTask.Options(maxThreads: 2, starvationGuard: .smallerHelperChunks)
        for _ in benchmark.scaledIterations {
            blackHole(try KTask.run(0..<4096, options: options) { chunk in for item in chunk { blackHole(item) } })
        }
    }

    Benchmark("4096 tiny work items (concurrentPerform, one per iteration)") { benchmark in
        for _ in benchmark.scaledIterations {
            DispatchQueue.concurrentPerform(iterations: 4096) { index in blackHole(index) }
        }
    }
}
