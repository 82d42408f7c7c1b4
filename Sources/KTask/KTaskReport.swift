extension KTask {
    /// What happened in one job: how it was divided and how long it took.
    public struct Report: Sendable, Equatable, CustomStringConvertible {
        /// Threads that worked on the job, the caller included.
        public let threadsUsed: Int
        /// Items per chunk (the first and last chunk may be shorter where `align` cuts them).
        public let chunkSize: Int
        /// How many claims completed: each a whole chunk, a share of the last chunks (the guided tail), or
        /// a single grain (with a starvation guard in force, helpers claim grains of about 1/64 chunk).
        public let claimCount: Int
        /// The nice value helpers were asked to run at; nil where the job used no helper.
        public let helperNice: Int?
        /// Wall time from the call to the return.
        public let wallTime: Duration
        /// What bounded the thread count: why the job got ``threadsUsed`` threads and not more.
        public let threadLimit: KTask.ThreadLimit
        /// What refused helpers the job's pool had for it: ``KTask/ThreadLimit/machineSlots`` (other processes
        /// held the machine-wide slots) or ``KTask/ThreadLimit/jobserverTokens`` (make had no token free); nil
        /// when nothing outside this process refused one. Set even where ``threadLimit`` names a later cause
        /// (e.g. a granted helper that was not needed), so a measurement can tell it was not alone.
        public let helpersRefusedBy: KTask.ThreadLimit?
        /// What kept helpers from holding the job up (``KTask/StarvationGuard/none`` for a job without helpers).
        public let starvationGuard: KTask.StarvationGuard
        /// Helpers the caller lent its priority to while it waited for them.
        public let boostedHelpers: Int
        /// Adaptive mode: the threads it settled on (or had reached when the job ran out of work); nil
        /// without adaptive mode or for a job that had no helper to add.
        public let adaptiveThreads: Int?
        /// Adaptive mode: the throughput (items per second) it measured at 1, 2, ... threads, which its
        /// decision rests on; empty without adaptive mode.
        public var adaptiveThroughput: [Double] { details?.adaptiveThroughput ?? [] }
        /// Completed claims per thread, the caller's first; nil for a job run inline as one call.
        private let perThread: [Int]?
        /// Helpers set aside for each node they were pinned to, by node id (a job on nodes: the caller's node
        /// first, then the nearest, or the nodes given); empty where helpers were not pinned (``KTask/Placement/anywhere``,
        /// a machine with one node) or the job had none. The caller works where it is, on top of these; a
        /// node has fewer than its usable CPUs where ``threadLimit`` cut (e.g. ``KTask/ThreadLimit/nodeCap``).
        public var helpersPerNode: [Int: Int] { details?.helpersPerNode ?? [:] }
        /// The CPU time each thread that worked on the job got while it claimed chunks of the job's parallel
        /// part, the caller's first (its first chunks alone, before it sized the rest, are not counted); empty
        /// for a job its caller ran alone. On a busy machine, what a helper actually got: a helper at nice 19 in the
        /// idle cgroup beside a nice-0 load gets a sliver of its wall time.
        public var cpuTimePerThread: [Duration] { details?.cpuTimePerThread ?? [] }

        /// What a job run inline leaves empty, in one box, nil for such a job: a report is copied on its way
        /// back, and each reference field of its own costs every copy a retain and a release (one more
        /// field made a job below one chunk 117 -> 125 ns).
        private let details: Details?

        final class Details: Sendable, Equatable {
            let adaptiveThroughput: [Double]
            let cpuTimePerThread: [Duration]
            let helpersPerNode: [Int: Int]?

            init(adaptiveThroughput: [Double], cpuTimePerThread: [Duration], helpersPerNode: [Int: Int]?) {
                (self.adaptiveThroughput, self.cpuTimePerThread, self.helpersPerNode) = (adaptiveThroughput, cpuTimePerThread, helpersPerNode)
            }

            static func == (left: Details, right: Details) -> Bool {
                left.adaptiveThroughput == right.adaptiveThroughput && left.cpuTimePerThread == right.cpuTimePerThread
                    && left.helpersPerNode == right.helpersPerNode
            }
        }

        init(threadsUsed: Int, chunkSize: Int, claimCount: Int, helperNice: Int?, wallTime: Duration,
             threadLimit: KTask.ThreadLimit = .none, helpersRefusedBy: KTask.ThreadLimit? = nil, starvationGuard: KTask.StarvationGuard = .none, boostedHelpers: Int = 0,
             adaptiveThreads: Int? = nil, adaptiveThroughput: [Double] = [], perThread: [Int]?, cpuTimePerThread: [Duration] = [],
             helpersPerNode: [Int: Int]? = nil) {
            details = adaptiveThroughput.isEmpty && cpuTimePerThread.isEmpty && helpersPerNode == nil ? nil
                : Details(adaptiveThroughput: adaptiveThroughput, cpuTimePerThread: cpuTimePerThread, helpersPerNode: helpersPerNode)
            self.threadsUsed = threadsUsed
            self.chunkSize = chunkSize
            self.claimCount = claimCount
            self.helperNice = helperNice
            self.wallTime = wallTime
            self.threadLimit = threadLimit
            self.helpersRefusedBy = helpersRefusedBy
            self.starvationGuard = starvationGuard
            self.boostedHelpers = boostedHelpers
            self.adaptiveThreads = adaptiveThreads
            self.perThread = perThread
        }

        /// The report of the rest of a job whose first `claims` chunks (the largest `largestChunk` items) the
        /// caller ran alone (``CallerFirst``).
        func addingCallerClaims(_ claims: Int, largestChunk: Int, wallTime: Duration) -> Report {
            // On the caller alone (nil): the job ran without a helper or an allocation, as an inline one does.
            let threads = perThread.map { [$0[0] + claims] + $0.dropFirst() }
            return Report(threadsUsed: threadsUsed, chunkSize: threadsUsed > 1 ? chunkSize : max(chunkSize, largestChunk),
                          claimCount: claimCount + claims, helperNice: helperNice, wallTime: wallTime, threadLimit: threadLimit,
                          helpersRefusedBy: helpersRefusedBy, starvationGuard: starvationGuard, boostedHelpers: boostedHelpers,
                          adaptiveThreads: adaptiveThreads, adaptiveThroughput: adaptiveThroughput,
                          perThread: threads, cpuTimePerThread: cpuTimePerThread, helpersPerNode: details?.helpersPerNode)
        }

        /// Whether the job ran on the calling thread alone, with no helper woken and nothing allocated: as one
        /// call (one chunk or one thread), or as a few chunks that showed the job too small to pay for a
        /// helper (``KTask/ThreadLimit/helperCost``).
        public var ranInline: Bool { perThread == nil }

        /// Claims completed by each thread, the calling thread's first.
        public var claimsPerThread: [Int] { perThread ?? [claimCount] }

        /// A one-line account for logs and error messages.
        public var description: String {
            "\(threadsUsed) thread(s) (limited by \(threadLimit.rawValue)), \(claimCount) claim(s), chunks of \(chunkSize), "
                + "per thread \(claimsPerThread), \(wallTime)"
                + (adaptiveThreads.map { ", adaptive: \($0) thread(s) from items/s \(adaptiveThroughput.map { Int($0) })" } ?? "")
                + (helpersPerNode.isEmpty ? "" : ", helpers per node "
                    + helpersPerNode.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))
                + (cpuTimePerThread.isEmpty ? "" : ", CPU ms per thread \(cpuTimePerThread.map { Double(Int($0.seconds * 10_000)) / 10 })")
        }
    }
}
