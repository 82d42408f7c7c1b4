#if canImport(Glibc)
import Glibc
#endif

/// The caller starts at once; helpers join only what is left, and only if it is worth a helper.
///
/// A job cannot tell how long its items take before it runs some. So the caller runs the range's first
/// chunks itself, timing them: the first `minChunk` items, then each chunk sized to reach half the
/// pool's break-even time at the pace measured so far (at least twice, at most 16 times the chunk before;
/// boundaries on multiples of `align`), at most ``maxChunks`` chunks, until it has worked that long or the
/// range is done. Then it estimates the rest at the pace of its last chunk (the first may hold a cold
/// start: code and data paged in, caches empty): less than the break-even time, and
/// it runs the rest inline as one more chunk; more, and the rest becomes the parallel job.
///
/// The break-even time is what a helper has cost this pool lately (``HelperCost``): the time from the
/// caller's reservation to a helper's first claim, averaged over recent jobs (a helper spinning after a job
/// joins in a microsecond or two, a parked one in tens, a starved one on a busy machine in milliseconds).
/// With less work left than that, a helper would arrive when the job is over and cost the caller more
/// (reservation, wake-up, taking it back) than it saves. So a 16-item job of arithmetic costs about
/// what the loop does, a job of 16 items of 10 µs gets its helpers after its first item, and on a machine
/// where helpers are starved small jobs stop paying for helpers that would not come.
///
/// Only for a range of at least ``minChunksPerThread`` smallest chunks per thread: coarse work (16 items
/// of 100 ms on 16 CPUs) starts its helpers at once, as a caller's first item would delay it by a whole item.
///
/// The first chunks are ordinary completed chunks: a later failure undoes them like any other.
struct CallerFirst {
    /// The most chunks the caller runs before it decides.
    static let maxChunks = 8
    /// Only a range of at least this many smallest chunks per thread starts on the caller alone: with
    /// fewer, one chunk is too large a share of a thread's work to run before the helpers come (its
    /// first chunk delays the job by at most 1/8 of a thread's share).
    static let minChunksPerThread = 8
    /// The CPUs online when the process started: the thread count for that rule, without a system call
    /// per job (the job's own limits are read only once the caller has decided).
    static let onlineCPUs = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    /// Chunk growth from one to the next: at least ×2 (few chunks, few clock reads), at most ×16 (a pace
    /// measured on a few items is mostly the clock's own cost).
    static let minGrowth = 2
    /// A chunk at least this long (nanoseconds) gives a pace good enough to send helpers at once.
    static let clearPaceNanoseconds: Int64 = 2_000
    static let maxGrowth = 16

    let range: Range<Int>
    let minChunk: Int
    let align: Int
    /// Where each chunk run so far ends (the first starts at the range's start).
    private var ends = InlineArray<8, Int>(repeating: 0)
    /// Chunks run so far.
    private(set) var claims = 0
    /// The largest chunk run so far.
    private(set) var largestChunk = 0

    /// Items done so far: the range's start up to here.
    var doneUpTo: Int { claims == 0 ? range.lowerBound : ends[claims - 1] }

    /// What the caller decided.
    enum Outcome: Equatable {
        /// The range is done: it ran on the caller only.
        case done
        /// The rest (`range` from ``doneUpTo``) is not worth a helper.
        case restInline
        /// The rest is worth helpers.
        case restParallel
    }

    /// The largest chunk (``KTask/Options/maxChunk``, cut to a multiple of `align`, at least `minChunk`).
    let maxChunk: Int

    init(range: Range<Int>, minChunk: Int, align: Int, maxChunk: Int? = nil) {
        self.range = range
        self.minChunk = minChunk
        self.align = align
        self.maxChunk = maxChunk.map { max(minChunk, $0 - $0 % align) } ?? Int.max
    }

    /// Runs first chunks from `start` (CLOCK_MONOTONIC nanoseconds) until the caller has worked `decideAfter`
    /// nanoseconds or the range is done, then decides from the pace measured whether the rest (if any) is
    /// worth a helper (`breakEven`). `finished` is when the last chunk returned.
    mutating func run(start: Int64, decideAfter: Int64, breakEven: Int64, cancellation: JobCancellation,
                      _ chunk: (Range<Int>) throws -> Void) throws -> (outcome: Outcome, finished: Int64, estimate: Int64) {
        var size = minChunk
        var now = start
        /// The last chunk's time: the pace the rest is estimated at (the first chunk's may hold a cold start).
        var lastChunk: (items: Int, nanoseconds: Int64) = (1, 0)
        while claims < Self.maxChunks {
            // As the claim loop does before each claim: a cancelled job starts no more chunks.
            guard !cancellation.isCancelled(onCaller: true) else { throw cancellation.error }
            let next = Self.step(from: doneUpTo, size: size, align: align, upTo: range.upperBound, maxChunk: maxChunk)
            try chunk(next)
            ends[claims] = next.upperBound
            claims += 1
            largestChunk = max(largestChunk, next.count)
            let before = now
            now = monotonicNanoseconds()
            lastChunk = (next.count, now - before)
            if next.upperBound == range.upperBound { return (.done, now, 0) }
            let elapsed = now - start
            if elapsed >= decideAfter { break }
            // A chunk after the first (which may hold a cold start: a page fault, code paged in), long enough to
            // time well (2 µs: the clock's own cost is tens of nanoseconds), that shows the rest clearly worth
            // helpers: they start now, not after the caller's first ``decideAfter``.
            if claims >= 2, lastChunk.nanoseconds >= Self.clearPaceNanoseconds,
               Double(lastChunk.nanoseconds) * Double(range.upperBound - next.upperBound) / Double(lastChunk.items) >= 2 * Double(breakEven) {
                break
            }
            size = min(maxChunk, Self.nextSize(after: next.count, done: next.upperBound - range.lowerBound, elapsed: elapsed,
                                               aimingAt: decideAfter))
        }
        let left = range.upperBound - doneUpTo
        // At the last chunk's pace, without overflow for huge ranges.
        let estimate = Double(lastChunk.nanoseconds) * Double(left) / Double(lastChunk.items)
        return (estimate < Double(breakEven) ? .restInline : .restParallel, now,
                estimate >= Double(Int64.max) ? Int64.max : Int64(estimate))
    }

    /// The chunk from `lower`: at least `size` items, ending on a multiple of `align` or at `upper`; at most
    /// `maxChunk` items where that still reaches the next multiple of `align` (an unaligned start).
    static func step(from lower: Int, size: Int, align: Int, upTo upper: Int, maxChunk: Int = Int.max) -> Range<Int> {
        let (wanted, overflow) = lower.addingReportingOverflow(size)
        var end = overflow ? upper : min(upper, roundUp(wanted, toMultipleOf: align))
        if end - lower > maxChunk {
            let (bound, boundOverflow) = lower.addingReportingOverflow(maxChunk)
            if !boundOverflow { end = min(end, max(roundUp(lower + 1, toMultipleOf: align), bound - bound % align)) }
        }
        return lower..<end
    }

    /// The next chunk's size: the items that would bring the work done to `aimingAt` nanoseconds at the pace
    /// so far (`done` items in `elapsed`), within ``minGrowth`` to ``maxGrowth`` times the last chunk.
    static func nextSize(after last: Int, done: Int, elapsed: Int64, aimingAt target: Int64) -> Int {
        let wanted = Double(max(0, target - elapsed)) * Double(done) / Double(max(1, elapsed))
        let low = Double(last) * Double(minGrowth), high = Double(last) * Double(maxGrowth)
        let size = min(max(wanted, low), high)
        return size >= Double(Int.max / 2) ? Int.max / 2 : Int(size)
    }

    /// Undoes the chunks run, in order (after a later failure).
    func undo(_ undo: (Range<Int>) -> Void) {
        var lower = range.lowerBound
        for index in 0..<claims {
            undo(lower..<ends[index])
            lower = ends[index]
        }
    }
}

/// A helper's recent cost to a pool's jobs, and what ``CallerFirst`` makes of it.
struct HelperCost {
    /// Before any job measured one: a parked helper's wake-up in a VM.
    static let initialNanoseconds: Int64 = 10_000
    /// A sample is taken as at least this (a spinning helper) and at most this (a starved one).
    static let minimumNanoseconds: Int64 = 500
    static let maximumNanoseconds: Int64 = 50_000_000
    /// How fast an average above the initial one falls back without samples (``KTask/Pool/helperCost(now:)``).
    static let excessHalfLifeNanoseconds: Int64 = 1_000_000_000

    let nanoseconds: Int64

    /// Work left below which a helper is not worth it: the helper's cost. With R of work left and a helper
    /// that starts claiming after C (its cost, measured from the caller's reservation, so the caller's own
    /// part of it is included), two threads finish in about C + (R − C) / 2: sooner than R alone once R > C.
    var breakEven: Int64 { nanoseconds }
    /// How long the caller works alone before it decides: half the break-even time, at least 1 µs (a clock
    /// read's error is tens of nanoseconds) and at most 50 µs (enough to measure the pace; where helpers
    /// cost more, as on a busy machine, the caller need not work alone longer to see a job is small).
    var decideAfter: Int64 { min(max(breakEven / 2, 1_000), 50_000) }
}
