import Testing
@testable import KTask
@testable import KTaskWorkloads

@Suite("The seed's workloads do their work")
struct WorkloadTests {
    @Test("compute: the multithreaded sum equals the single-threaded one")
    func computeSum() throws {
        let workload = try ComputeWorkload(items: 3_000_000)
        let oneThread = try workload.runOnce(threads: 1, options: KTask.Options())
        #expect(oneThread.report.threadsUsed == 1)
        #expect(oneThread.cpuSeconds > 0)
        _ = try workload.runOnce(threads: 2, options: KTask.Options())
        #expect(ComputeWorkload.sum(0..<1000) == (0..<1000).reduce(UInt64(0)) { $0 &+ ComputeWorkload.mix($1) })
        #expect(ComputeWorkload.mix(1) != ComputeWorkload.mix(2))
    }

    @Test("prefault: every page of the mapping is resident afterwards")
    func prefaultResident() throws {
        let workload = try PrefaultWorkload(bytes: 64 << 20)
        let report = try workload.runOnce(threads: 2, options: KTask.Options()).report
        #expect(report.chunkSize % 512 == 0, "chunks of 2 MiB of 4 KiB pages: \(report)")
        #expect(workload.items == (64 << 20) / AnonymousMapping.pageSize)
    }

    @Test("prefault: ktask's run is the public KTask.populate, placed on nodes too; the peers get the same chunk function")
    func prefaultThroughPopulate() throws {
        let workload = try PrefaultWorkload(bytes: 16 << 20, nodes: [0])
        #expect(try workload.prepareRun().job != nil)
        let measurement = try workload.runOnce(threads: 2, options: KTask.Options())
        #expect(measurement.seconds >= measurement.report.wallTime.seconds * 0.99, "the call, checks included")
        let run = try workload.prepareRun()
        try run.body(0..<workload.items)
        try run.check()
    }

    @Test("prefault by touching works where MADV_POPULATE_WRITE is missing")
    func prefaultByTouching() throws {
        let mapping = try AnonymousMapping(bytes: 8 << 20)
        let pages = mapping.bytes / AnonymousMapping.pageSize
        try MemoryPopulator(base: UInt(bitPattern: mapping.base), pageSize: AnonymousMapping.pageSize, write: true,
                            usePopulate: false)(0..<pages)
        #expect(KTask.residentBytes(UnsafeMutableRawBufferPointer(start: mapping.base, count: mapping.bytes)) == mapping.bytes)
    }

    @Test("init: every descriptor is initialised by each run")
    func pageInit() throws {
        let workload = try PageInitWorkload(bytes: 32 << 20)
        _ = try workload.runOnce(threads: 2, options: KTask.Options())
        _ = try workload.runOnce(threads: 1, options: KTask.Options())
        #expect(MemoryLayout<PageDescriptor>.stride == 64)
    }

    @Test("sizes below one item are refused with a typed error")
    func tooSmall() {
        #expect(throws: WorkloadError.sizeTooSmall(workload: "compute", size: 0, minimum: 1)) {
            try ComputeWorkload(items: 0)
        }
        #expect(throws: WorkloadError.self) { try PrefaultWorkload(bytes: 100) }
        #expect(throws: WorkloadError.self) { try PageInitWorkload(bytes: 63) }
    }

    @Test("the bench driver measures 1 thread as the baseline and reports each row")
    func benchRunner() throws {
        let result = try BenchRunner(workload: .compute, size: 2_000_000, threadCounts: [2], runs: 2).run()
        #expect(result.rows.map(\.threads) == [1, 2])
        #expect(result.rows[0].speedup == 1)
        #expect(result.rows.allSatisfy { $0.seconds.values.count == 2 && $0.threadsUsed >= 1 })
    }

    @Test("statistics: mean, median, sample deviation")
    func statistics() {
        let sample = Sample([1, 2, 3, 4])
        #expect(sample.mean == 2.5)
        #expect(sample.median == 2.5)
        #expect(abs(sample.standardDeviation - 1.2909944) < 1e-6)
        #expect(Sample([5]).standardDeviationPercent == 0)
    }
}

#if canImport(Glibc)
import Glibc
#endif
