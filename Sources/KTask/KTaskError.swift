#if canImport(Glibc)
import Glibc
#endif

extension KTask {
    /// What was wrong with a ktask job or setting, and what is allowed instead.
    ///
    /// Every invalid input to ktask is reported as one of these cases before any work runs; a job that
    /// was cancelled is reported as ``cancelled`` after its completed chunks were undone. An error thrown
    /// by the job's own chunk function is passed through to the caller unchanged.
    public enum Error: Swift.Error, Equatable, Sendable, CustomStringConvertible {
        /// The range of work items starts below zero; work items are numbered from 0.
        case negativeRangeStart(Int)
        /// `minChunk` must be at least 1.
        case invalidMinChunk(Int)
        /// `align` must be at least 1.
        case invalidAlign(Int)
        /// `maxThreads` must be at least 1 (the calling thread counts as one).
        case invalidMaxThreads(Int)
        /// A nice value outside -20...19.
        case invalidNice(Int)
        /// A cap on busy helper threads below zero.
        case invalidHelperCap(Int)
        /// An idle timeout that is not positive.
        case invalidIdleTimeout(Duration)
        /// An environment variable holds a value ktask cannot use.
        case invalidEnvironmentVariable(name: String, value: String, allowed: String)
        /// A placement or per-node job names a node the machine does not have.
        case unknownNode(Int, available: [Int])
        /// A placement or per-node job names a node with no CPU the process may use, and (for a memory-only
        /// node) none that serves it.
        case nodeWithoutUsableCPUs(Int)
        /// A node placement or a per-node job names no node.
        case noNodes
        /// A per-node job names the same node twice.
        case duplicateNode(Int)
        /// Memory may not be placed on this node (the cgroup cpuset's mems or `Mems_allowed_list` leave it out).
        case memoryNodeNotAllowed(Int, allowed: [Int])
        /// A memory-policy system call failed (e.g. mbind to a node without memory).
        case memoryPolicyFailed(call: String, errno: Int32)
        /// The system refused to start a thread for an async job.
        case threadStartFailed
        /// The tuning profile (``KTask/TuningProfile``) at `path` cannot be used; `reason` says why.
        case invalidProfile(path: String, reason: String)
        /// ``KTask/Options/workClass`` is empty.
        case emptyWorkClass
        /// ``KTask/AdaptiveThreads`` with a minimum gain outside 0...1 or a window that is not positive.
        case invalidAdaptiveThreads(minimumGain: Double, window: Duration)
        /// The job was cancelled before all chunks ran; completed chunks were undone.
        case cancelled
        /// A parameter outside what is allowed (e.g. a memory size below 1, a region off page boundaries).
        case invalidParameter(name: String, value: String, allowed: String)
        /// The hugetlb pool for `pageSize` has `available` free pages and `needed` more are needed.
        case hugePagesUnavailable(pageSize: Int, needed: Int, available: Int)
        /// The kernel refused a memory mapping of `bytes`.
        case mapFailed(bytes: Int, reason: String)
        /// Faulting in `needed` more bytes would exceed what the machine or the cgroup has (`available`,
        /// read from `source`): refused before the kernel's OOM killer would end the process.
        case notEnoughMemory(needed: Int, available: Int, source: String)
        /// A file cannot be populated as asked; `reason` says why (missing, a folder, no permission, a
        /// filesystem that cannot hold huge pages, writing where only reading is allowed). A parameter of
        /// ``KTask/MappedFile/init(path:size:writable:allowOtherOwner:)`` to give or drop is named in backticks
        /// (`size`, `writable`, `allowOtherOwner`), so that a tool can name its own option instead.
        case fileUnusable(path: String, reason: String)
        /// Populating memory failed at byte `offset` of the region (no memory left, hugetlb pool exhausted,
        /// the cgroup's memory limit).
        case populateFailed(offset: Int, reason: String)

        /// A one-line account for logs and error messages.
        public var description: String {
            switch self {
            case .negativeRangeStart(let start):
                "the range of work items starts at \(start); it must start at 0 or above"
            case .invalidParameter(let name, let value, let allowed):
                "\(name) is \(value); it must be \(allowed)"
            case .hugePagesUnavailable(let pageSize, let needed, let available):
                "\(needed) huge page(s) of \(pageSize >> 20) MiB needed, \(available) available in the hugetlb pool; reserve more as root "
                    + "with `echo N > /sys/kernel/mm/hugepages/hugepages-\(pageSize >> 10)kB/nr_hugepages` (N = pages in the pool)"
            case .notEnoughMemory(let needed, let available, let source):
                "\(needed >> 20) MiB more would be faulted in, but only \(available >> 20) MiB are available (\(source)); "
                    + "free memory, raise the limit, or ask for less"
            case .fileUnusable(let path, let reason):
                "\(path): \(reason)"
            case .mapFailed(let bytes, let reason):
                "could not map \(bytes) bytes: \(reason)"
            case .populateFailed(let offset, let reason):
                "could not populate memory at byte \(offset): \(reason)"
            case .invalidMinChunk(let value):
                "minChunk is \(value); it must be at least 1"
            case .invalidAlign(let value):
                "align is \(value); it must be at least 1"
            case .invalidMaxThreads(let value):
                "maxThreads is \(value); it must be at least 1 (the calling thread counts as one)"
            case .invalidNice(let value):
                "nice value \(value) is out of range; it must be in -20...19"
            case .invalidHelperCap(let value):
                "the cap on busy helper threads is \(value); it must be 0 or above"
            case .invalidIdleTimeout(let value):
                "the helper idle timeout is \(value); it must be above zero"
            case .invalidEnvironmentVariable(let name, let value, let allowed):
                "\(name)=\"\(value)\" is not valid; allowed: \(allowed)"
            case .unknownNode(let id, let available):
                "node \(id) does not exist; nodes: \(available.map(String.init).joined(separator: ","))"
            case .nodeWithoutUsableCPUs(let id):
                "node \(id) has no CPU this process may use (memory-only, offline, or outside the cpuset/affinity)"
            case .noNodes:
                "no node given; name at least one node"
            case .duplicateNode(let id):
                "node \(id) is given twice; give each node one range"
            case .memoryNodeNotAllowed(let node, let allowed):
                "memory may not be placed on node \(node); allowed nodes: \(allowed.map(String.init).joined(separator: ",")) "
                    + "(the cgroup cpuset's mems)"
            case .memoryPolicyFailed(let call, let errno):
                "\(call) failed with errno \(errno) (\(String(cString: strerror(errno))))"
            case .invalidProfile(let path, let reason):
                "the tuning profile \(path) \(reason); run `ktask tune` again or remove it"
            case .emptyWorkClass:
                "the work class is empty; name it (e.g. \"prefault\") or leave it nil"
            case .invalidAdaptiveThreads(let gain, let window):
                "adaptive threads need a minimum gain in 0...1 and a positive window; got \(gain) and \(window)"
            case .threadStartFailed:
                "the system refused to start a thread for the job (too many threads?)"
            case .cancelled:
                "the job was cancelled; chunks that had completed were undone"
            }
        }
    }
}
