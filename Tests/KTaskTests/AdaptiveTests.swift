import Foundation
import Synchronization
import Testing
@testable import KTask
import KTaskWorkloads

@Suite("Adaptive mode: the controller's rule, and jobs that settle at their knee", .serialized)
struct AdaptiveTests {
    /// Feeds the controller a job whose throughput is `rate(threads)` items per second, in 1 ms steps
    /// with one claim per thread per step; returns the threads it settled on.
    func settle(maxThreads: Int, minimumGain: Double = 0.1, rate: (Int) -> Double) -> Int? {
        var controller = AdaptiveController(settings: KTask.AdaptiveThreads(minimumGain: minimumGain, window: .milliseconds(10)),
                                             maxThreads: maxThreads)
        var items = 0.0, claims = 0
        for step in 1...10_000 {
            items += rate(controller.threads) / 1000
            claims += controller.threads
            if case .settle(let threads) = controller.observe(now: .milliseconds(step), items: Int(items), claims: claims) {
                return threads
            }
        }
        return nil
    }

    @Test("throughput capped at k threads: settles at k", arguments: [1, 2, 3, 5])
    func cappedThroughput(k: Int) {
        #expect(settle(maxThreads: 8) { Double(min($0, k)) * 1e6 } == k)
    }

    @Test("linear scaling: takes every thread it may")
    func linearScaling() {
        #expect(settle(maxThreads: 6) { Double($0) * 1e6 } == 6)
    }

    @Test("a thread that slows the job down is dropped; a gain below the minimum counts as none")
    func losingAndSmallGains() {
        #expect(settle(maxThreads: 8) { [1.0, 1.8, 1.5, 1.4][min($0, 4) - 1] * 1e6 } == 2)
        // 1, 1.5, 1.55: the third thread adds 5% of one thread, under the 10% minimum.
        #expect(settle(maxThreads: 8) { [1.0, 1.5, 1.55, 1.6][min($0, 4) - 1] * 1e6 } == 2)
        #expect(settle(maxThreads: 8, minimumGain: 0.01) { [1.0, 1.5, 1.55, 1.6, 1.6][min($0, 5) - 1] * 1e6 } == 4)
    }

    @Test("a helper is dropped only when two windows in a row say so: one disturbed window does not cost a thread")
    func dropNeedsTwoWindows() {
        /// Runs 2 threads' worth of work at `twoThreadRates` (items/s in successive 10 ms windows after the
        /// helper is added; 1 thread: 1M items/s) and returns what the controller settled on.
        func settle(twoThreadRates: [Double]) -> Int? {
            var controller = AdaptiveController(settings: KTask.AdaptiveThreads(window: .milliseconds(10)), maxThreads: 2)
            var items = 0.0, claims = 0, helperAdded: Int?
            for step in 1...1_000 {
                let rate = helperAdded.map { twoThreadRates[min((step - $0 - 1) / 10, twoThreadRates.count - 1)] } ?? 1e6
                items += rate / 1000
                claims += controller.threads
                switch controller.observe(now: .milliseconds(step), items: Int(items), claims: claims) {
                case .settle(let threads): return threads
                case .addHelper: helperAdded = step
                case .keep: break
                }
            }
            return nil
        }
        // The helper's first window is disturbed (0.9M items/s, below 1 thread's), its second is not (2M):
        // together 1.45M, a gain of 45%; the helper stays.
        #expect(settle(twoThreadRates: [0.9e6, 2e6]) == 2)
        // Two windows without a gain: dropped.
        #expect(settle(twoThreadRates: [0.9e6, 1.0e6]) == 1)
    }

    @Test("a phase starts at the first claim after a change, and counts only after the window and 8 claims per thread")
    func phaseNeedsWindowAndClaims() {
        var controller = AdaptiveController(settings: KTask.AdaptiveThreads(window: .milliseconds(10)), maxThreads: 4)
        // The first observation only starts the phase (the job's start-up is not measured).
        #expect(controller.observe(now: .milliseconds(1), items: 500, claims: 1) == .keep)
        #expect(controller.observe(now: .milliseconds(10), items: 900, claims: 100) == .keep)
        #expect(controller.observe(now: .milliseconds(21), items: 2500, claims: 8) == .keep)
        // The first 1-thread window (100k items/s); two more follow before the first helper.
        #expect(controller.observe(now: .milliseconds(21), items: 2500, claims: 9) == .keep)
        #expect(controller.observe(now: .milliseconds(31), items: 3500, claims: 17) == .keep)
        #expect(controller.observe(now: .milliseconds(41), items: 4500, claims: 25) == .addHelper)
        #expect(controller.rates == [100_000])
    }

    @Test("the 1-thread rate is the median of three windows: one slow window does not make a useless helper look useful")
    func baselineIsMedianOfThree() {
        var controller = AdaptiveController(settings: KTask.AdaptiveThreads(window: .milliseconds(10)), maxThreads: 2)
        // 1M items/s throughout, one thread or two, but the first 1-thread window is slowed to 0.6M by other work:
        // against that window alone the helper would seem to add 67%.
        var items = 0.0, claims = 0, decision = AdaptiveController.Decision.keep
        for step in 1...200 {
            items += (controller.threads == 1 && step <= 11 ? 0.6e6 : 1e6) / 1000
            claims += controller.threads
            decision = controller.observe(now: .milliseconds(step), items: Int(items), claims: claims)
            if case .settle = decision { break }
        }
        #expect(decision == .settle(threads: 1), "rates \(controller.rates)")
        #expect(abs(controller.rates[0] - 1e6) < 0.05e6, "the median window, not the slow one: \(controller.rates)")
    }

    @Test("bad settings are typed errors", arguments: [(-0.1, 10), (1.5, 10), (0.1, 0)])
    func badSettings(gain: Double, windowMilliseconds: Int) {
        let options = KTask.Options(adaptiveThreads: KTask.AdaptiveThreads(minimumGain: gain, window: .milliseconds(windowMilliseconds)))
        #expect(throws: KTask.Error.invalidAdaptiveThreads(minimumGain: gain, window: .milliseconds(windowMilliseconds))) {
            try KTask.run(0..<100, options: options) { _ in }
        }
    }

    /// Runs the rate-limited workload (each item sleeps 250 µs under one of `permits` permits) in
    /// adaptive mode, helpers at the caller's priority so that other tests running meanwhile do not
    /// delay their wake-ups. Each thread count is measured for 100 ms (the default is 10) and a helper must
    /// add 25% (the default is 10%): the suites running meanwhile delay a waking thread by a few ms at
    /// times, which moved a 10 ms window's rate by more than 25% (a 1-permit job kept its helper).
    func adaptiveRun(permits: Int, items: Int) throws -> KTask.Report {
        let pool = try KTask.Pool(name: "kt-adapt", maxBusyHelpers: 1, isolateHelpers: false)
        let workload = try RateLimitedWorkload(items: items, permits: permits)
        let run = try workload.prepareRun()
        let covered = Mutex<[Range<Int>]>([])
        let report = try KTask.run(0..<workload.items, options: KTask.Options(maxThreads: 2, helperPriority: .inheritCaller, pool: pool,
                                                                             adaptiveThreads: KTask.AdaptiveThreads(minimumGain: 0.25, window: .milliseconds(100)))) { chunk in
            covered.withLock { $0.append(chunk) }
            try run.body(chunk)
        }
        try run.check()
        #expect(covered.withLock { $0 }.sorted { $0.lowerBound < $1.lowerBound }.reduce(0) { next, chunk in
            next == chunk.lowerBound ? chunk.upperBound : -1 } == items, "every item exactly once")
        return report
    }

    @Test("a job capped at 1 thread by a shared limiter settles at 1: the helper it tried is dropped")
    func settlesAtOne() throws {
        let report = try adaptiveRun(permits: 1, items: 1600)
        #expect(report.adaptiveThreads == 1, "\(report.description)")
        // The dropped helper ran only while it was measured: most of the job was the caller's.
        #expect(report.claimsPerThread[0] > report.claimCount * 3 / 4, "\(report)")
    }

    @Test("a job two threads speed up keeps its helper")
    func keepsTwo() throws {
        let report = try adaptiveRun(permits: 2, items: 1600)
        #expect(report.adaptiveThreads == 2, "\(report)")
        #expect(report.threadsUsed == 2)
    }
}
