import Synchronization

extension KTask {
    /// Adaptive mode: the job starts on the calling thread alone, measures its throughput, adds one helper
    /// at a time, and stops adding (dropping the last one) once a helper adds less than `minimumGain` of
    /// one thread's throughput. A memory-bandwidth-bound or rate-limited job so stops at its knee instead
    /// of burning cores the work cannot use. The 1-thread throughput every gain is judged against is the
    /// median of three windows, and a helper is dropped only when two windows in a row at its thread
    /// count, measured together, say so (a drop is never undone): one window slowed by other work decides
    /// nothing.
    public struct AdaptiveThreads: Sendable, Equatable {
        /// The fraction of the 1-thread throughput a helper must add to be kept (0...1).
        public var minimumGain: Double
        /// How long each thread count is measured at least (each also waits for 8 claims per thread);
        /// 1 thread for three windows, and twice as long before a helper is dropped.
        public var window: Duration

        /// Adaptive mode keeping a helper while it adds at least `minimumGain` of one thread's throughput,
        /// measuring each thread count for at least `window`.
        public init(minimumGain: Double = 0.1, window: Duration = .milliseconds(10)) {
            self.minimumGain = minimumGain
            self.window = window
        }

        func validate() throws(KTask.Error) {
            guard (0...1).contains(minimumGain), window > .zero else {
                throw .invalidAdaptiveThreads(minimumGain: minimumGain, window: window)
            }
        }
    }
}

/// The decisions of adaptive mode, fed with the job's progress by the calling thread between claims.
/// Kept apart from the threads so that the rule can be tested with made-up progress.
struct AdaptiveController {
    enum Decision: Equatable {
        /// Keep measuring.
        case keep
        /// Add one helper and measure again.
        case addHelper
        /// Stop adapting with this many threads (one fewer than now means: drop the newest helper).
        case settle(threads: Int)
    }

    let settings: KTask.AdaptiveThreads
    /// The most threads the job may reach (1 + helpers reserved).
    let maxThreads: Int
    /// Claims a phase needs per thread before it counts: a rate over fewer is mostly rounding.
    static let claimsPerThread = 8
    /// Windows the 1-thread rate is the median of: every helper's gain is judged against it, so one
    /// window slowed by other work must not make a useless helper look useful.
    static let baselineWindowCount = 3

    private(set) var threads = 1
    /// Items per second measured at 1, 2, ... threads.
    private(set) var rates: [Double] = []
    private var phaseStart = Duration.zero
    private var phaseItems = 0
    private var phaseClaims = 0
    private(set) var settled: Int?
    /// A phase starts at the first observation after a change, not at the change: the job's own start
    /// (first touches, a helper waking) would otherwise count against the thread count measured.
    private var phaseStarted = false
    /// The phase's first window said to drop the newest helper; its second decides (both measured as one).
    private var confirmingDrop = false
    /// The 1-thread windows measured so far.
    private var baselineWindows: [Double] = []

    init(settings: KTask.AdaptiveThreads, maxThreads: Int) {
        self.settings = settings
        self.maxThreads = maxThreads
        if maxThreads <= 1 { settled = 1 }
    }

    /// Stops adapting with `threads` threads (e.g. no further helper could be started).
    mutating func stop(at threads: Int) {
        self.threads = threads
        settled = threads
    }

    /// `now`: time since the job started; `items`, `claims`: completed by all threads so far.
    mutating func observe(now: Duration, items: Int, claims: Int) -> Decision {
        guard settled == nil else { return .keep }
        guard phaseStarted else {
            (phaseStarted, phaseStart, phaseItems, phaseClaims) = (true, now, items, claims)
            return .keep
        }
        let windows = confirmingDrop ? 2 : 1
        let elapsed = now - phaseStart
        guard elapsed >= settings.window * windows, claims - phaseClaims >= Self.claimsPerThread * threads * windows else { return .keep }
        let rate = Double(items - phaseItems) / elapsed.seconds
        if threads == 1 {
            baselineWindows.append(rate)
            guard baselineWindows.count == Self.baselineWindowCount else {
                (phaseStart, phaseItems, phaseClaims) = (now, items, claims)
                return .keep
            }
            rates.append(baselineWindows.sorted()[baselineWindows.count / 2])
        } else if confirmingDrop {
            rates[rates.count - 1] = rate
        } else {
            rates.append(rate)
        }
        if KTask.TuningProfile.knee(throughput: rates, minimumGain: settings.minimumGain) < threads {
            // A dropped helper is never added back: before dropping, measure this thread count for a
            // second window and judge both together, so that one window disturbed by other work (a load
            // burst, a helper preempted) does not leave a long job short of a thread it could use.
            guard confirmingDrop else {
                confirmingDrop = true
                return .keep
            }
            confirmingDrop = false
            settled = threads - 1
            return .settle(threads: threads - 1)
        }
        confirmingDrop = false
        phaseStart = now
        phaseItems = items
        phaseClaims = claims
        if threads >= maxThreads {
            settled = threads
            return .settle(threads: threads)
        }
        threads += 1
        phaseStarted = false
        return .addHelper
    }
}

/// Adaptive mode's view of the claim loop: items and claims completed by all threads, and the
/// participants still admitted (a settled job lets the newest leave after their current claim).
final class AdaptiveProgress: ClaimHook, @unchecked Sendable {
    private let itemsDone = Atomic<Int>(0)
    private let claimsDone = Atomic<Int>(0)
    private let admittedSlots = Atomic<Int>(Int.max)

    func mayClaim(slot: Int) -> Bool { slot < admittedSlots.load(ordering: .relaxed) }

    func claimed(slot: Int, items: Int) {
        itemsDone.add(items, ordering: .relaxed)
        claimsDone.add(1, ordering: .relaxed)
    }

    /// Items and claims completed so far by all threads.
    var done: (items: Int, claims: Int) { (itemsDone.load(ordering: .relaxed), claimsDone.load(ordering: .relaxed)) }

    /// Lets only participants 0 ..< `slots` claim from now on; the others leave after their current claim.
    func admit(upTo slots: Int) { admittedSlots.store(slots, ordering: .relaxed) }
}

/// The caller's side of adaptive mode: the job's reserved helpers wait here and are dispatched one at
/// a time, between the caller's claims, as the controller asks; the ones not needed go back to the pool.
struct AdaptiveDriver {
    private var controller: AdaptiveController
    private var waiting: [Admission.LaneReservation]
    private let job: JobState
    private let progress: AdaptiveProgress
    private let start: ContinuousClock.Instant

    init(_ settings: KTask.AdaptiveThreads, job: JobState, progress: AdaptiveProgress, start: ContinuousClock.Instant,
         waiting: [Admission.LaneReservation]) {
        self.job = job
        self.progress = progress
        self.start = start
        self.waiting = waiting.flatMap { entry in
            entry.reservation.singles().map { Admission.LaneReservation(lane: entry.lane, reservation: $0) }
        }
        controller = AdaptiveController(settings: settings, maxThreads: 1 + self.waiting.count)
    }

    /// The threads it settled on (or had reached when the job ran out of work).
    var threads: Int { controller.settled ?? controller.threads }
    /// Items per second measured at 1, 2, ... threads.
    var rates: [Double] { controller.rates }
    /// Whether it settled below every thread the job had reserved.
    var stoppedEarly: Bool { threads < controller.maxThreads }

    /// After each of the caller's claims: measure, and add or drop a helper as the controller decides.
    mutating func afterClaim(dispatcher: inout HelperDispatcher) {
        let (items, claims) = progress.done
        switch controller.observe(now: .now - start, items: items, claims: claims) {
        case .keep: break
        case .addHelper:
            // No helper once the work is all handed out: it would only wake to find nothing.
            guard job.hasGrainsLeft, !waiting.isEmpty else {
                controller.stop(at: controller.threads - 1)
                return
            }
            if dispatcher.dispatch(waiting.removeFirst()) == 0 {
                // The system would not start a thread: stay with the threads there are.
                controller.stop(at: controller.threads - 1)
            }
        case .settle(let threads):
            progress.admit(upTo: threads)
            giveBackWaiting(to: dispatcher.pool)
        }
    }

    /// Gives the helpers never dispatched back to the pool.
    mutating func giveBackWaiting(to pool: KTask.Pool) {
        for entry in waiting { pool.cancel(entry.reservation) }
        waiting = []
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    package var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
