import Benchmark
import Dispatch
import KTask

/// What ktask itself costs: waking a helper and joining it, claiming chunks, and the inline path,
/// each beside the nearest alternative (Dispatch's concurrentPerform, a direct call).
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal, .threads],
        timeUnits: .nanoseconds,
        maxDuration: .seconds(3),
        maxIterations: 200_000)

    // A 2-thread job with nothing to do in its chunks: the cost of waking a helper and waiting for it.
    Benchmark("empty 2-thread job (KTask.run)") { benchmark in
        let options = KTaskOptions(maxThreads: 2)
        for _ in benchmark.scaledIterations {
            blackHole(try KTask.run(0..<2, options: options) { chunk in blackHole(chunk) })
        }
    }

    Benchmark("empty 2-thread job (concurrentPerform)") { benchmark in
        for _ in benchmark.scaledIterations {
            DispatchQueue.concurrentPerform(iterations: 2) { index in blackHole(index) }
        }
    }

    // A job below one chunk runs inline: the cost over calling the function yourself.
    Benchmark("job below one chunk (KTask.run)") { benchmark in
        let options = KTaskOptions(minChunk: 1024)
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
        let options = KTaskOptions(maxThreads: 2, starvationGuard: .smallerHelperChunks)
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
