import Testing
@testable import KTask
@testable import KTaskWorkloads

/// The verdict under every bench table: would a second run of the same command give the same speedups?
@Suite("Bench noise verdict")
struct NoiseVerdictTests {
    func result(one: [Double], two: [Double], steal: Double? = nil, pressure: Double? = nil, wall: Double = 10) -> BenchResult {
        func row(_ threads: Int, _ values: [Double]) -> BenchRow {
            BenchRow(threads: threads, seconds: Sample(values), cpuSeconds: Sample(values), speedup: Sample(one).mean / Sample(values).mean,
                     medianSpeedup: Sample(one).median / Sample(values).median, threadsUsed: threads, chunkCount: 8,
                     starvationGuard: .none, threadLimit: .none)
        }
        var result = BenchResult(workload: .compute, size: 1, runs: one.count, summary: "", rows: [row(1, one), row(2, two)], stealSeconds: steal)
        result.wallSeconds = wall
        result.pressureSeconds = pressure
        return result
    }

    @Test("tight runs are steady; the 1-thread row has no uncertainty of its own")
    func steady() {
        let tight = result(one: [1.00, 1.01, 0.99, 1.00, 1.00], two: [0.50, 0.51, 0.50, 0.49, 0.50])
        #expect(tight.noiseVerdict().steady)
        #expect(tight.noiseVerdict().lines.first?.hasPrefix("steady") == true)
        #expect(tight.speedupUncertaintyPercent(tight.rows[0]) == 0)
        #expect(tight.speedupUncertaintyPercent(tight.rows[1]) < 3)
    }

    @Test("spread runs name the row to distrust; steal and CPU pressure are said as the reasons")
    func noisy() {
        let spread = result(one: [1.0, 1.4, 0.8, 1.2, 0.9], two: [0.5, 0.9, 0.4, 0.6, 0.5], steal: 2, pressure: 4)
        let verdict = spread.noiseVerdict()
        #expect(!verdict.steady)
        #expect(verdict.lines.count == 1 && verdict.lines[0].contains("distrust the speedup of 2 thread(s)"), "\(verdict.lines)")
        #expect(verdict.lines[0].contains("stole 10%") && verdict.lines[0].contains("waited for a CPU 40%"), "\(verdict.lines)")
    }

    @Test("one run per row cannot be judged")
    func oneRun() {
        let single = result(one: [1.0], two: [0.5])
        #expect(!single.noiseVerdict().steady)
        #expect(single.noiseVerdict().lines[0].contains("--runs"))
    }
}
