/// How one job's range is cut into chunks: the kernel's formula, with its load-balance factor of 4.
///
/// - threads = min(maxThreads, ceil(size / max(minChunk, align)), usable CPUs, free helpers + 1)
/// - chunk   = max(minChunk, size / (threads × 4)), rounded up to a multiple of `align`
///
/// Boundaries are multiples of `align` counted from 0, so the first and last chunk may be shorter.
///
/// The range is counted in grains, the unit a thread claims at least. Normally a grain is a chunk. When
/// low-priority helpers may be starved and their priority cannot be raised (see ``KTask/StarvationGuard``),
/// helpers claim single grains of about 1/64 of a chunk, so that a helper starved in the middle of its
/// claim holds back little of the job; the caller still claims whole chunks.
struct ChunkPlan: Equatable {
    /// How many chunks each thread should get so that one slow chunk does not hold up the job.
    static let loadBalanceFactor = 4
    /// How much smaller a helper's claim is when helpers may be starved (``KTask/StarvationGuard/smallerHelperChunks``).
    static let helperGrainDivisor = 64

    let range: Range<Int>
    /// Items in a caller's claim (a whole chunk); every chunk but the first and last has this size.
    let chunkSize: Int
    /// Items in a grain, the smallest claim.
    let grainSize: Int
    /// Grains in a chunk.
    let grainsPerChunk: Int
    let grainCount: Int
    /// The aligned point grain 0 starts from (≤ range.lowerBound).
    private let origin: Int

    /// The most threads worth starting for a range: one per smallest useful chunk, at most `limit`.
    static func usefulThreads(size: Int, minChunk: Int, align: Int, limit: Int) -> Int {
        min(limit, ceilDivide(size, max(minChunk, align)))
    }

    init(range: Range<Int>, minChunk: Int, align: Int, threads: Int, maxChunk: Int? = nil, smallHelperClaims: Bool = false) {
        precondition(!range.isEmpty && range.lowerBound >= 0 && minChunk > 0 && align > 0 && threads > 0)
        let size = range.count
        let (wantedChunks, overflow) = threads.multipliedReportingOverflow(by: Self.loadBalanceFactor)
        var chunk = roundUp(max(minChunk, size / (overflow ? Int.max : wantedChunks)), toMultipleOf: align)
        if let maxChunk {
            // At most maxChunk, cut down to a multiple of align, but never below the smallest aligned chunk.
            chunk = min(chunk, max(roundUp(minChunk, toMultipleOf: align), maxChunk - maxChunk % align))
        }
        let grain = smallHelperClaims
            ? roundUp(max(minChunk, chunk / Self.helperGrainDivisor), toMultipleOf: align) : chunk
        self.range = range
        self.grainSize = grain
        self.grainsPerChunk = max(1, chunk / grain)
        self.chunkSize = grain * grainsPerChunk
        self.origin = range.lowerBound - range.lowerBound % align
        self.grainCount = ceilDivide(range.upperBound - origin, grain)
    }

    /// Chunks of `chunkSize` the range holds (the claims there are when every thread claims whole chunks).
    var chunkCount: Int { ceilDivide(grainCount, grainsPerChunk) }

    /// The items of chunk `index` (0 ..< chunkCount).
    func chunk(_ index: Int) -> Range<Int> {
        items(ofGrains: index * grainsPerChunk ..< min(grainCount, (index + 1) * grainsPerChunk))
    }

    /// The items of grains `grains` (within 0 ..< grainCount).
    @inline(__always)
    func items(ofGrains grains: Range<Int>) -> Range<Int> {
        lowerBound(ofGrain: grains.lowerBound)..<lowerBound(ofGrain: grains.upperBound)
    }

    @inline(__always)
    private func lowerBound(ofGrain grain: Int) -> Int {
        let (offset, overflowA) = grain.multipliedReportingOverflow(by: grainSize)
        let (start, overflowB) = origin.addingReportingOverflow(offset)
        if overflowA || overflowB { return range.upperBound }
        return min(max(start, range.lowerBound), range.upperBound)
    }
}

/// ⌈a / b⌉ for a ≥ 0, b > 0, without overflow.
@inlinable @inline(__always)
func ceilDivide(_ a: Int, _ b: Int) -> Int {
    a / b + (a % b == 0 ? 0 : 1)
}

/// The smallest multiple of `multiple` that is ≥ value; saturates at the largest such multiple.
@inlinable @inline(__always)
func roundUp(_ value: Int, toMultipleOf multiple: Int) -> Int {
    let remainder = value % multiple
    if remainder == 0 { return value }
    let (result, overflow) = value.addingReportingOverflow(multiple - remainder)
    return overflow ? Int.max - Int.max % multiple : result
}

extension KTask {
    /// The chunk size, in items, that a job of `items` items gets at `threads` threads: the kernel's
    /// formula, `max(minChunk, items / (threads × 4))` rounded up to a multiple of `align`. For sizing
    /// work outside ktask the same way (e.g. a comparison with another threading system).
    package static func plannedChunkSize(items: Int, minChunk: Int, align: Int, threads: Int) throws(KTask.Error) -> Int {
        guard minChunk >= 1 else { throw .invalidMinChunk(minChunk) }
        guard align >= 1 else { throw .invalidAlign(align) }
        guard threads >= 1 else { throw .invalidMaxThreads(threads) }
        guard items >= 1 else { return minChunk }
        return ChunkPlan(range: 0..<items, minChunk: minChunk, align: align, threads: threads).chunkSize
    }
}

/// How much a participant claims at once: whole chunks, or single grains (about 1/64 chunk) where a
/// starved helper must hold back little (``KTask/StarvationGuard``) or adaptive mode measures throughput;
/// and, near the end of a part, no more than a share of what is left (a guided tail).
struct ClaimPolicy {
    /// Who claims single grains instead of whole chunks.
    enum GrainClaimers {
        case nobody
        /// Helpers claim grains, the caller whole chunks (a starvation guard is in force).
        case helpers
        /// Everyone claims grains (adaptive mode counts progress claim by claim).
        case everyone
    }

    let grainClaimers: GrainClaimers
    /// Whether plans must cut grains smaller than chunks.
    var smallGrains: Bool { grainClaimers != .nobody }

    /// Near the end of a part a whole-chunk claim shrinks to 1/(this × participants) of the grains left:
    /// a last big chunk would keep one thread busy while the others, done, wait for it.
    static let tailShareDivisor = 2

    init(starvationGuard: KTask.StarvationGuard, adaptive: Bool) {
        grainClaimers = adaptive ? .everyone : starvationGuard == .none ? .nobody : .helpers
    }

    /// Grains to claim next from a part with `left` grains left, for participant `slot` (0: the caller)
    /// of `participants`.
    @inline(__always)
    func grainsToClaim(slot: Int, plan: ChunkPlan, left: Int, participants: Int) -> Int {
        switch grainClaimers {
        case .everyone: return 1
        case .helpers where slot > 0: return 1
        default:
            let whole = plan.grainsPerChunk
            return whole > 1 ? max(1, min(whole, left / (Self.tailShareDivisor * participants))) : whole
        }
    }
}
