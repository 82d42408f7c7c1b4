extension KTask {
    /// The nice value helper threads run at.
    public enum HelperPriority: Sendable, Equatable, CustomStringConvertible {
        /// Nice 19, the lowest priority: helpers take only CPU time nothing else wants. The default.
        case lowest
        /// A given nice value in -20...19 (values below the process's own need privilege to take effect).
        case nice(Int)
        /// The nice value of the thread that starts the job.
        case inheritCaller

        /// A one-line account for logs and error messages.
        public var description: String {
            switch self {
            case .lowest: "lowest (nice 19)"
            case .nice(let value): "nice \(value)"
            case .inheritCaller: "the caller's nice"
            }
        }

    }
}
