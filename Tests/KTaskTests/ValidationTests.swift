import Foundation
import Testing
@testable import KTask

@Suite("Bad input gets a typed error")
struct ValidationTests {
    func run(_ range: Range<Int>, _ options: KTask.Options) throws {
        try KTask.run(range, options: options) { _ in Issue.record("a chunk ran for invalid input") }
    }

    @Test("negative range start")
    func negativeStart() {
        #expect(throws: KTask.Error.negativeRangeStart(-5)) { try run(-5..<10, KTask.Options()) }
    }

    @Test("minChunk, align, maxThreads below 1", arguments: [0, -1, Int.min])
    func parametersBelowOne(value: Int) {
        #expect(throws: KTask.Error.invalidMinChunk(value)) { try run(0..<10, KTask.Options(minChunk: value)) }
        #expect(throws: KTask.Error.invalidAlign(value)) { try run(0..<10, KTask.Options(align: value)) }
        #expect(throws: KTask.Error.invalidMaxThreads(value)) { try run(0..<10, KTask.Options(maxThreads: value)) }
    }

    @Test("invalid parameters are reported even for an empty range")
    func emptyRangeStillValidated() {
        #expect(throws: KTask.Error.invalidMinChunk(0)) { try run(0..<0, KTask.Options(minChunk: 0)) }
    }

    @Test("nice values outside -20...19")
    func badNice() {
        #expect(throws: KTask.Error.invalidNice(20)) { try run(0..<10, KTask.Options(helperPriority: .nice(20))) }
        #expect(throws: KTask.Error.invalidNice(-21)) { try run(0..<10, KTask.Options(helperPriority: .nice(-21))) }
    }

    @Test("pool settings")
    func badPoolSettings() throws {
        #expect(throws: KTask.Error.invalidHelperCap(-1)) { try KTask.Pool(maxBusyHelpers: -1) }
        #expect(throws: KTask.Error.invalidIdleTimeout(.zero)) { try KTask.Pool(idleTimeout: .zero) }
        let pool = try KTask.Pool(name: "kt-valid")
        #expect(throws: KTask.Error.invalidHelperCap(-3)) { try pool.setMaxBusyHelpers(-3) }
    }

    @Test("KTASK_MAX_THREADS values", arguments: ["-2", "two", "", "3.5", "99999999999999999999"])
    func badEnvironmentValue(value: String) throws {
        #expect(throws: KTask.Error.invalidEnvironmentVariable(
            name: "KTASK_MAX_THREADS", value: value,
            allowed: "a whole number of threads >= 1 (the calling thread counts as one), or 0 for no limit")) {
            try HelperCap.parse(environmentValue: value)
        }
        #expect(try HelperCap.parse(environmentValue: "0") == nil, "0: no limit from this variable")
    }

    @Test("KTASK_NODE_MAX_THREADS: helpers per node, 0 or more")
    func nodeEnvironmentValue() throws {
        #expect(try HelperCap.parse(nodeEnvironmentValue: "0") == nil, "0: no limit from this variable")
        #expect(try HelperCap.parse(nodeEnvironmentValue: "12") == HelperCap(maxBusyHelpers: 12, source: .nodeEnvironment))
        #expect(throws: KTask.Error.invalidEnvironmentVariable(name: "KTASK_NODE_MAX_THREADS", value: "-1",
                                                             allowed: "a whole number of helper threads per node >= 1, or 0 for no limit")) {
            try HelperCap.parse(nodeEnvironmentValue: "-1")
        }
    }

    @Test("KTASK_MAX_THREADS counts the caller: N threads means N − 1 helpers")
    func environmentValue() throws {
        #expect(try HelperCap.parse(environmentValue: "1") == HelperCap(maxBusyHelpers: 0, source: .environment))
        #expect(try HelperCap.parse(environmentValue: " 8\n") == HelperCap(maxBusyHelpers: 7, source: .environment))
    }

    @Test("a bad KTASK_MAX_THREADS is ignored with one warning for the process; the jobs run")
    func environmentIgnoredWhenMalformed() async throws {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            setenv("KTASK_MAX_THREADS", "lots", 1)
            for _ in 0..<3 {
                guard let report = try? runJob(0..<1_000_000) { _ in }, report.threadLimit != .environment else { exit(1) }
            }
            exit(0)
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.components(separatedBy: "KTASK_MAX_THREADS=\"lots\"").count - 1 == 1, "\(stderr)")
    }

    @Test("KTASK_MAX_THREADS=1 makes every job single-threaded")
    func environmentCapsThreads() async {
        await #expect(processExitsWith: .success) {
            setenv("KTASK_MAX_THREADS", "1", 1)
            let report = try? runJob(0..<1_000_000) { _ in }
            exit(report?.threadsUsed == 1 ? 0 : 1)
        }
    }

    @Test("errors say what was wrong and what is allowed")
    func descriptions() {
        #expect(KTask.Error.invalidMinChunk(0).description == "minChunk is 0; it must be at least 1")
        #expect(KTask.Error.negativeRangeStart(-1).description.contains("must start at 0 or above"))
    }
}
