/// How one job's range is cut into chunks: the kernel's formula, with its load-balance factor of 4.
///
/// - threads = min(maxThreads, ceil(size / max(minChunk, align)), usable CPUs, free helpers + 1)
/// - chunk   = max(minChunk, size / (threads × 4)), rounded up to a multiple of `align`
///
/// Chunk boundaries are multiples of `align` counted from 0, so the first and last chunk may be
/// shorter; every other chunk is exactly `chunkSize` items.
struct ChunkPlan: Equatable {
    /// How many chunks each thread should get so that one slow chunk does not hold up the job.
    static let loadBalanceFactor = 4

    let range: Range<Int>
    let chunkSize: Int
    let chunkCount: Int
    /// The aligned point chunk 0 starts from (≤ range.lowerBound).
    private let origin: Int

    /// The most threads worth starting for a range: one per smallest useful chunk, at most `limit`.
    static func usefulThreads(size: Int, minChunk: Int, align: Int, limit: Int) -> Int {
        min(limit, ceilDivide(size, max(minChunk, align)))
    }

    init(range: Range<Int>, minChunk: Int, align: Int, threads: Int) {
        precondition(!range.isEmpty && range.lowerBound >= 0 && minChunk > 0 && align > 0 && threads > 0)
        let size = range.count
        let balanced = max(minChunk, size / (threads * Self.loadBalanceFactor))
        self.range = range
        self.chunkSize = roundUp(balanced, toMultipleOf: align)
        self.origin = range.lowerBound - range.lowerBound % align
        self.chunkCount = ceilDivide(range.upperBound - origin, chunkSize)
    }

    /// The items of chunk `index` (0 ..< chunkCount).
    @inline(__always)
    func chunk(_ index: Int) -> Range<Int> {
        let (offset, overflowA) = index.multipliedReportingOverflow(by: chunkSize)
        let (start, overflowB) = origin.addingReportingOverflow(offset)
        let (end, overflowC) = start.addingReportingOverflow(chunkSize)
        let lower = overflowA || overflowB ? range.upperBound : max(start, range.lowerBound)
        let upper = overflowA || overflowB || overflowC ? range.upperBound : min(end, range.upperBound)
        return lower..<upper
    }
}

/// ⌈a / b⌉ for a ≥ 0, b > 0, without overflow.
@inline(__always)
func ceilDivide(_ a: Int, _ b: Int) -> Int {
    a / b + (a % b == 0 ? 0 : 1)
}

/// The smallest multiple of `multiple` that is ≥ value; saturates at the largest such multiple.
@inline(__always)
func roundUp(_ value: Int, toMultipleOf multiple: Int) -> Int {
    let remainder = value % multiple
    if remainder == 0 { return value }
    let (result, overflow) = value.addingReportingOverflow(multiple - remainder)
    return overflow ? Int.max - Int.max % multiple : result
}
