/// Results without unsafe code: an array of per-item results, a reduction, or in-place updates of an
/// array's chunks, on the same engine as ``KTask/run(_:options:undo:_:)`` (chunking, helpers, placement,
/// cancellation and options alike).
extension KTask {
    // MARK: map

    /// Returns `transform(i)` for every `i` in `range`, in order: each chunk writes its results in place
    /// (no per-item allocation, no lock). If `transform` throws, or the job is cancelled, the results
    /// already made are destroyed and the first error is rethrown.
    @available(*, noasync, message: "blocks the calling thread; use the async KTask.map from async code")
    @inlinable
    public static func map<T: Sendable>(
        _ range: Range<Int>, options: KTask.Options = KTask.Options(), _ transform: @Sendable (Int) throws -> T
    ) throws -> [T] {
        try mapJob(range, options: options, cancellation: blocking(options), transform)
    }

    /// ``map(_:options:_:)-5g1uv`` from async code: every thread doing the work is ktask's own,
    /// and cancelling the calling task cancels the job.
    @inlinable
    public static func map<T: Sendable>(
        _ range: Range<Int>, options: KTask.Options = KTask.Options(), _ transform: @escaping @Sendable (Int) throws -> T
    ) async throws -> [T] {
        try await onKTaskThread(options: options) { cancellation in
            try mapJob(range, options: options, cancellation: cancellation, transform)
        }
    }

    // MARK: reduce

    /// Reduces `range`: `partial` runs on blocks of the range in parallel and `combine` folds their results,
    /// starting from `initial`, in range order.
    ///
    /// The blocks are a function of `range`, ``KTask/Options/minChunk`` and ``KTask/Options/align`` alone
    /// (about 4096 of them at most, each a multiple of `align` and at least `minChunk` items), never of the
    /// thread count or of how threads claimed them, and the fold runs in block order on the calling thread.
    /// So the result is the same on every run with the same range and options, floating-point sums
    /// included, however many threads ran.
    @available(*, noasync, message: "blocks the calling thread; use the async KTask.reduce from async code")
    @inlinable
    public static func reduce<T: Sendable>(
        _ range: Range<Int>, options: KTask.Options = KTask.Options(), _ initial: T,
        _ combine: (T, T) throws -> T, _ partial: @Sendable (Range<Int>) throws -> T
    ) throws -> T {
        try reduceJob(range, options: options, cancellation: blocking(options), initial, combine, partial)
    }

    /// ``reduce(_:options:_:_:_:)-1u6qv`` from async code: all work on ktask's threads.
    @inlinable
    public static func reduce<T: Sendable>(
        _ range: Range<Int>, options: KTask.Options = KTask.Options(), _ initial: T,
        _ combine: @escaping @Sendable (T, T) throws -> T, _ partial: @escaping @Sendable (Range<Int>) throws -> T
    ) async throws -> T {
        try await onKTaskThread(options: options) { cancellation in
            try reduceJob(range, options: options, cancellation: cancellation, initial, combine, partial)
        }
    }

    // MARK: update

    /// Updates `array` in place, chunk by chunk in parallel (Rayon's `par_chunks_mut`): `body` gets each
    /// chunk's index range and a `MutableSpan` of exactly those elements. No copy of the array is made.
    ///
    /// If `body` throws or the job is cancelled, `undo` (if given) is called once for every chunk that
    /// completed, with its span, so that it can put the elements back; then the first error is rethrown.
    @available(*, noasync, message: "blocks the calling thread; use the async KTask.update from async code")
    @inlinable
    public static func update<Element: Sendable>(
        _ array: inout [Element], options: KTask.Options = KTask.Options(),
        undo: ((Range<Int>, inout MutableSpan<Element>) -> Void)? = nil,
        _ body: @Sendable (Range<Int>, inout MutableSpan<Element>) throws -> Void
    ) throws {
        try updateJob(&array, options: options, cancellation: blocking(options), undo: undo, body)
    }

    /// ``update(_:options:undo:_:)-6shut`` from async code: the
    /// array is moved to ktask's threads and back (not copied), and all work runs there.
    @inlinable
    public static func update<Element: Sendable>(
        _ array: inout [Element], options: KTask.Options = KTask.Options(),
        undo: (@Sendable (Range<Int>, inout MutableSpan<Element>) -> Void)? = nil,
        _ body: @escaping @Sendable (Range<Int>, inout MutableSpan<Element>) throws -> Void
    ) async throws {
        let moved = MovedArray(array)
        array = []
        defer { array = moved.take() }
        try await onKTaskThread(options: options) { cancellation in
            try updateJob(&moved.array, options: options, cancellation: cancellation, undo: undo, body)
        }
    }
}

// MARK: The jobs behind them

// Inlinable, with the engine behind one non-generic call (``KTask/runChunks(_:options:cancellation:undo:_:)``):
// the per-item loop of each chunk is compiled in the caller's module, specialised for its element type and
// with its closure inlined, as a hand-written split would be; the engine is called once per job and its
// chunk function once per chunk.
extension KTask {
    @inlinable
    static func mapJob<T>(_ range: Range<Int>, options: KTask.Options, cancellation: JobCancellation,
                          _ transform: @Sendable (Int) throws -> T) throws -> [T] {
        // A negative range start is refused by the job before any chunk runs.
        return try Array(unsafeUninitializedCapacity: range.count) { buffer, initialized in
            let results = SharedBuffer(buffer)
            _ = try runChunks(range, options: options, cancellation: cancellation, undo: { chunk in
                // A failed job destroys what completed chunks made: the array is never returned.
                results.elements(chunk.lowerBound - range.lowerBound, chunk.count).deinitialize()
            }) { chunk in
                let slots = results.elements(chunk.lowerBound - range.lowerBound, chunk.count)
                var made = 0
                do {
                    for index in chunk {
                        slots.initializeElement(at: made, to: try transform(index))
                        made += 1
                    }
                } catch {
                    slots[..<made].deinitialize()
                    throw error
                }
            }
            initialized = range.count
        }
    }

    @inlinable
    static func reduceJob<T>(_ range: Range<Int>, options: KTask.Options, cancellation: JobCancellation, _ initial: T,
                             _ combine: (T, T) throws -> T, _ partial: @Sendable (Range<Int>) throws -> T) throws -> T {
        try options.validate()
        guard range.lowerBound >= 0 else { throw KTask.Error.negativeRangeStart(range.lowerBound) }
        guard !range.isEmpty else {
            options.onReport?(.noWork)
            return initial
        }
        let blocks = ReductionBlocks(range: range, minChunk: options.minChunk, align: options.align, maxChunk: options.maxChunk)
        var blockOptions = options
        (blockOptions.minChunk, blockOptions.align) = (1, 1)
        // maxChunk counts items; the block job's items are blocks.
        blockOptions.maxChunk = options.maxChunk.map { max(1, $0 / blocks.size) }
        // The report goes to the user once the fold has succeeded too, not when the blocks are done.
        let report = ReportBox()
        if options.onReport != nil {
            blockOptions.onReport = { @Sendable (blocksReport: KTask.Report) in report.value = blocksReport }
        }
        let partials = try mapJob(0..<blocks.count, options: blockOptions, cancellation: cancellation) { block in
            try partial(blocks.items(of: block))
        }
        let result = try partials.reduce(initial, combine)
        if let onReport = options.onReport, let blocksReport = report.value { onReport(blocksReport) }
        return result
    }

    @inlinable
    static func updateJob<Element>(_ array: inout [Element], options: KTask.Options, cancellation: JobCancellation,
                                   undo: ((Range<Int>, inout MutableSpan<Element>) -> Void)?,
                                   _ body: @Sendable (Range<Int>, inout MutableSpan<Element>) throws -> Void) throws {
        try array.withUnsafeMutableBufferPointer { buffer in
            let elements = SharedBuffer(buffer)
            _ = try runChunks(0..<buffer.count, options: options, cancellation: cancellation, undo: undo.map { undo in
                { chunk in
                    var span = MutableSpan(_unsafeElements: elements.elements(chunk.lowerBound, chunk.count))
                    undo(chunk, &span)
                }
            }) { chunk in
                var span = MutableSpan(_unsafeElements: elements.elements(chunk.lowerBound, chunk.count))
                try body(chunk, &span)
            }
        }
    }
}

/// The block job's report, kept until `reduce`'s fold has succeeded (written once, on the job's caller thread,
/// before the job returns: no lock needed).
@usableFromInline
final class ReportBox: @unchecked Sendable {
    @usableFromInline var value: KTask.Report?
    @inlinable init() {}
}

/// A buffer that chunks on several threads write, each to its own elements only: disjoint ranges, so
/// sharing its address is safe.
@usableFromInline
struct SharedBuffer<Element>: @unchecked Sendable {
    @usableFromInline let base: UnsafeMutablePointer<Element>?

    @inlinable
    init(_ buffer: UnsafeMutableBufferPointer<Element>) { base = buffer.baseAddress }

    /// The `count` elements from `offset`.
    @inlinable
    func elements(_ offset: Int, _ count: Int) -> UnsafeMutableBufferPointer<Element> {
        UnsafeMutableBufferPointer(start: base.map { $0 + offset }, count: count)
    }
}

/// An array on its way to ktask's threads and back: moved, so that updating it there copies nothing.
@usableFromInline
final class MovedArray<Element>: @unchecked Sendable {
    @usableFromInline var array: [Element]
    @inlinable init(_ array: [Element]) { self.array = array }
    @inlinable func take() -> [Element] {
        defer { array = [] }
        return array
    }
}

/// The blocks a reduction's range is cut into: a function of the range, `minChunk` and `align` alone, so
/// that the fold's grouping (and a floating-point result) never depends on the thread count.
///
/// Each block costs a call of `partial` and a slot for its result, so a block is at least
/// ``minItemsPerBlock`` items where the range has enough of them for ``minBlocks`` such blocks (a call
/// then weighs little beside even the cheapest items: `data[r].reduce(0, &+)` on 4,096 one-item blocks
/// took 180x the serial loop); a smaller range still gets up to ``minBlocks`` blocks, so that expensive
/// items have blocks to balance over 16 threads. At most about ``maxBlocks`` blocks.
@usableFromInline
struct ReductionBlocks: Sendable {
    /// At most about this many partial results.
    @usableFromInline static let maxBlocks = 4096
    /// At least this many blocks where the range has as many items (4 per thread on 16 threads).
    @usableFromInline static let minBlocks = 64
    /// Items per block, where the range has ``minBlocks`` × as many.
    @usableFromInline static let minItemsPerBlock = 64

    @usableFromInline let range: Range<Int>
    @usableFromInline let size: Int
    /// The aligned point block 0 starts from (≤ range.lowerBound).
    @usableFromInline let origin: Int
    @usableFromInline let count: Int

    /// Blocks of at most `maxChunk` items where one is given (cut to a multiple of `align`, at least
    /// `minChunk`): a partial is a chunk, and `maxChunk` bounds how long a cancelled job runs on.
    @inlinable
    init(range: Range<Int>, minChunk: Int, align: Int, maxChunk: Int? = nil) {
        self.range = range
        let amortised = min(Self.minItemsPerBlock, ceilDivide(range.count, Self.minBlocks))
        var size = roundUp(max(minChunk, ceilDivide(range.count, Self.maxBlocks), amortised), toMultipleOf: align)
        if let maxChunk { size = min(size, max(roundUp(minChunk, toMultipleOf: align), maxChunk - maxChunk % align)) }
        self.size = size
        origin = range.lowerBound - range.lowerBound % size
        count = ceilDivide(range.upperBound - origin, size)
    }

    /// The items of block `block`.
    @inlinable
    func items(of block: Int) -> Range<Int> {
        let start = origin + block * size
        return max(start, range.lowerBound)..<min(start &+ size, range.upperBound)
    }
}
