import Synchronization
import Testing
@testable import KTask

@Suite("Every item exactly once")
struct CoverageTests {
    /// Runs one random job and returns what was wrong with its chunks.
    static func randomJob(_ generator: inout SplitMix, pool: KTask.Pool = .shared) throws -> [String] {
        let start = Int.random(in: 0...5000, using: &generator)
        let size = Int.random(in: 1...200_000, using: &generator)
        let minChunk = [1, 3, 64, 1000, 50_000].randomElement(using: &generator)!
        let align = [1, 2, 7, 64, 4096].randomElement(using: &generator)!
        let maxThreads = Int.random(in: 1...8, using: &generator)
        let guardMode = KTask.StarvationGuard.allCases.randomElement(using: &generator)!
        let range = start..<(start + size)
        let chunks = Locked<[Range<Int>]>([])
        let options = KTask.Options(minChunk: minChunk, align: align, maxThreads: maxThreads, starvationGuard: guardMode, pool: pool)
        let report = try KTask.run(range, options: options) { chunk in
            chunks.withLock { $0.append(chunk) }
        }
        var problems = tilingProblems(chunks.current, range: range, align: align, minChunk: minChunk)
            .map { "range \(range) minChunk \(minChunk) align \(align) maxThreads \(maxThreads): \($0)" }
        if report.threadsUsed > maxThreads { problems.append("used \(report.threadsUsed) threads, more than \(maxThreads)") }
        if report.claimsPerThread.reduce(0, +) != chunks.current.count {
            problems.append("report counts \(report.claimsPerThread) but \(chunks.current.count) chunks ran")
        }
        return problems
    }

    @Test("random (size, minChunk, align, maxThreads): chunks tile the range, aligned")
    func randomJobs() throws {
        var generator = SplitMix(state: 0x6b7461736b)
        for _ in 0..<300 {
            let problems = try Self.randomJob(&generator)
            #expect(problems.isEmpty, "\(problems)")
        }
    }

    @Test("random jobs from 8 threads at once share the pool and still tile their ranges")
    func concurrentJobs() {
        let failures = Locked<[String]>([])
        onThreads(8) { index in
            var generator = SplitMix(state: UInt64(index) &* 7919)
            for _ in 0..<40 {
                do {
                    let problems = try Self.randomJob(&generator)
                    failures.withLock { $0 += problems }
                } catch {
                    failures.withLock { $0.append("threw \(error)") }
                }
            }
        }
        #expect(failures.current.isEmpty, "\(failures.current.prefix(5))")
    }

    @Test("every index is written exactly once in a large job")
    func everyIndexOnce() throws {
        let count = 1_000_003
        let hits = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: count)
        defer { hits.deallocate() }
        hits.initialize(repeating: 0)
        let base = UInt(bitPattern: hits.baseAddress!)
        try KTask.run(0..<count, options: KTask.Options(minChunk: 1000, align: 8)) { chunk in
            let pointer = UnsafeMutablePointer<UInt8>(bitPattern: base)!
            for index in chunk { pointer[index] &+= 1 }
        }
        #expect(hits.allSatisfy { $0 == 1 })
    }

    @Test("the calling thread claims chunks too")
    func callerParticipates() throws {
        let callerTID = ThreadSnapshot.currentTID
        let pool = try KTask.Pool(name: "kt-caller", maxBusyHelpers: 1, isolateHelpers: false)
        let callerChunks = Atomic<Int>(0)
        let report = try KTask.run(0..<16, options: KTask.Options(maxThreads: 2, pool: pool)) { _ in
            if ThreadSnapshot.currentTID == callerTID { callerChunks.add(1, ordering: .relaxed) }
            usleep(2_000)
        }
        #expect(report.threadsUsed == 2)
        #expect(callerChunks.load(ordering: .relaxed) > 0)
        #expect(report.claimsPerThread[0] == callerChunks.load(ordering: .relaxed))
        #expect(report.claimsPerThread.reduce(0, +) == report.claimCount)
    }

    @Test("a job that fits in one chunk runs inline on the caller")
    func inlineJob() throws {
        let callerTID = ThreadSnapshot.currentTID
        let ranOn = Locked<[Int]>([])
        let report = try KTask.run(10..<50, options: KTask.Options(minChunk: 64)) { chunk in
            #expect(chunk == 10..<50)
            ranOn.withLock { $0.append(ThreadSnapshot.currentTID) }
        }
        #expect(report.ranInline)
        #expect(report.threadsUsed == 1 && report.claimCount == 1)
        #expect(ranOn.current == [callerTID])
    }

    @Test("a job's helpers are back in the pool, free for the next job, when it returns")
    func helpersFreeWhenJobReturns() throws {
        let pool = try KTask.Pool(name: "kt-b2b", maxBusyHelpers: 1, isolateHelpers: false)
        var stillBusy = 0
        var joined = 0
        for round in 0..<200 {
            // Half the jobs have nothing to do (the helper is usually revoked), half keep it busy.
            let report = try KTask.run(0..<1000, options: KTask.Options(maxThreads: 2, pool: pool)) { _ in
                if round % 2 == 1 { usleep(200) }
            }
            if pool.state.busyHelpers != 0 { stillBusy += 1 }
            if report.threadsUsed == 2 { joined += 1 }
        }
        #expect(stillBusy == 0)
        #expect(joined > 0, "no helper ever joined: the test proves nothing")
        #expect(pool.state.liveThreads == 1)
    }

    @Test("an empty range is a no-op")
    func emptyRange() throws {
        let calls = Atomic<Int>(0)
        let report = try KTask.run(7..<7) { _ in calls.add(1, ordering: .relaxed) }
        #expect(calls.load(ordering: .relaxed) == 0)
        #expect(report.claimCount == 0)
    }

    @Test("with no free helper the caller does the whole job")
    func noFreeHelper() throws {
        let pool = try KTask.Pool(name: "kt-none", maxBusyHelpers: 0, isolateHelpers: false)
        let chunks = Locked<[Range<Int>]>([])
        let report = try KTask.run(0..<100_000, options: KTask.Options(pool: pool)) { chunk in
            chunks.withLock { $0.append(chunk) }
        }
        #expect(report.threadsUsed == 1)
        // Its first chunks alone (``CallerFirst``), then the rest in one: in order, each item once.
        let ranges = chunks.current
        #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == 100_000, "\(ranges)")
        #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound }, "\(ranges)")
        #expect(ranges.count <= CallerFirst.maxChunks + 1, "\(ranges)")
        #expect(pool.state.liveThreads == 0)
    }
}

#if canImport(Glibc)
import Glibc
#endif
