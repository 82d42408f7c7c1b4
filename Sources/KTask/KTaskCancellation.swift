import Synchronization

extension KTask {
    /// A cancellation flag shared between whoever may cancel a job and the job's threads.
    public final class Cancellation: Sendable {
        private let flag = Atomic<Bool>(false)

        /// A token not yet cancelled.
        public init() {}

        /// Stops the jobs that carry this token from starting any further chunk.
        public func cancel() { flag.store(true, ordering: .releasing) }

        /// Whether ``cancel()`` has been called.
        public var isCancelled: Bool { flag.load(ordering: .acquiring) }
    }
}
