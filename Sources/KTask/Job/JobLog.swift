import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Where a job's decisions and warnings go: the `Logger` the user gave (``KTask/Options/logger``, else the
/// pool's), never one ktask makes itself. Decisions a user may wonder about ("why only 1 thread?") are
/// logged at debug; what degrades a job (a helper that could not start, a malformed environment variable)
/// at warning. With no logger anywhere, debug lines are dropped and warnings go to standard error, as
/// libgomp's do, so that a degraded job is never silent.
package struct JobLog {
    let logger: Logger?

    init(_ options: KTask.Options) {
        logger = options.logger ?? options.pool.logger
    }

    init(logger: Logger?) {
        self.logger = logger
    }

    /// The message is built only when a debug line would be kept.
    func debug(_ message: @autoclosure () -> String, metadata: Logger.Metadata = [:]) {
        guard let logger, logger.logLevel <= .debug else { return }
        logger.debug("\(message())", metadata: metadata)
    }

    func warning(_ message: String, metadata: Logger.Metadata = [:]) {
        if let logger {
            logger.warning("\(message)", metadata: metadata)
        } else {
            let details = metadata.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
            let line = Array("ktask: warning: \(message)\(details)\n".utf8)
            _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        }
    }
}
