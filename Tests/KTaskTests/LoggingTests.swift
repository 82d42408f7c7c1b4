import Foundation
import Logging
import Synchronization
import Testing
@testable import KTask

/// Log lines a handler received, for tests.
final class CapturedLog: Sendable {
    let lines = Mutex<[(level: Logger.Level, message: String)]>([])

    var logger: Logger {
        Logger(label: "test") { _ in CapturingHandler(log: self) }
    }

    func messages(_ level: Logger.Level) -> [String] {
        lines.withLock { $0.filter { $0.level == level }.map(\.message) }
    }
}

struct CapturingHandler: LogHandler {
    let log: CapturedLog
    var logLevel: Logger.Level = .debug
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        log.lines.withLock { $0.append((level, message.description)) }
    }
}

@Suite("Logging: the user's logger, decisions at debug, degradation at warning", .serialized)
struct LoggingTests {
    @Test("a job logs at debug how many threads it got and what bounded them, then its report",
          arguments: [1, 0])
    func decisionsAtDebug(freeHelpers: Int) throws {
        // With a cap of no helper the rest runs inline, and says why: still three lines.
        let captured = CapturedLog()
        let pool = try KTask.Pool(name: "kt-logd", maxBusyHelpers: freeHelpers, isolateHelpers: false)
        // Chunks of 1 ms: the caller's first chunk shows the rest is worth helpers (``CallerFirst``).
        let report = try KTask.run(0..<100_000, options: KTask.Options(minChunk: 1000, pool: pool, logger: captured.logger)) { _ in
            usleep(1000)
        }
        let debug = captured.messages(.debug)
        #expect(debug.count == 3, "\(debug)")
        #expect(debug.first?.hasPrefix("the caller ran 1000 of 100000 items alone in 1 chunk(s): restParallel") == true, "\(debug)")
        #expect(debug.dropFirst().first?.hasPrefix("99000 items") == true && debug.dropFirst().first?.contains("limited by") == true, "\(debug)")
        #expect(debug.dropFirst().first?.contains(freeHelpers == 0 ? "limited by the pool's cap on busy helpers" : "pool cap") == true, "\(debug)")
        #expect(debug.last == "job done: \(report)", "\(debug)")
        #expect(captured.messages(.warning).isEmpty)
    }

    @Test("a job that runs inline says why")
    func inlineSaysWhy() throws {
        let captured = CapturedLog()
        try KTask.run(0..<10, options: KTask.Options(minChunk: 100, logger: captured.logger)) { _ in }
        try KTask.run(0..<1000, options: KTask.Options(maxThreads: 1, logger: captured.logger)) { _ in }
        #expect(captured.messages(.debug) == [
            "10 items run inline on the calling thread: limited by \(KTask.ThreadLimit.tooLittleWork.rawValue)",
            "1000 items run inline on the calling thread: limited by \(KTask.ThreadLimit.maxThreads.rawValue)",
        ])
    }

    @Test("a job without a logger of its own logs to its pool's")
    func poolLogger() throws {
        let captured = CapturedLog()
        let pool = try KTask.Pool(name: "kt-log", maxBusyHelpers: 1, isolateHelpers: false, logger: captured.logger)
        try KTask.run(0..<10_000, options: KTask.Options(minChunk: 100, pool: pool)) { _ in usleep(200) }
        #expect(captured.messages(.debug).count == 3)
        let own = CapturedLog()
        try KTask.run(0..<10_000, options: KTask.Options(minChunk: 100, pool: pool, logger: own.logger)) { _ in usleep(200) }
        #expect(captured.messages(.debug).count == 3, "the job's own logger wins")
        #expect(own.messages(.debug).count == 3)
    }

    @Test("a logger above debug gets no decision lines")
    func quietAboveDebug() throws {
        let captured = CapturedLog()
        var logger = captured.logger
        logger.logLevel = .info
        try KTask.run(0..<1_000_000, options: KTask.Options(minChunk: 1000, logger: logger)) { _ in }
        #expect(captured.lines.withLock { $0.isEmpty })
    }

    @Test("a malformed KTASK_MAX_THREADS is one warning to the job's logger, not to standard error")
    func environmentWarningToLogger() async throws {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            setenv("KTASK_MAX_THREADS", "lots", 1)
            let captured = CapturedLog()
            for _ in 0..<3 {
                guard (try? KTask.run(0..<1_000_000, options: KTask.Options(minChunk: 1000, logger: captured.logger)) { _ in }) != nil
                else { exit(1) }
            }
            let warnings = captured.messages(.warning)
            exit(warnings.count == 1 && warnings[0].contains("KTASK_MAX_THREADS=\"lots\"") ? 0 : 2)
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(!stderr.contains("KTASK_MAX_THREADS"), "\(stderr)")
    }
}
