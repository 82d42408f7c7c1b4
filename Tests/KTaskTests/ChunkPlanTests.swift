import Testing
@testable import KTask

@Suite("Chunk planning")
struct ChunkPlanTests {
    @Test("chunk size is max(minChunk, size / (threads × 4)) rounded up to align")
    func formula() {
        let plan = ChunkPlan(range: 0..<1000, minChunk: 10, align: 1, threads: 2)
        #expect(plan.chunkSize == 125)
        #expect(plan.chunkCount == 8)
        let minDominates = ChunkPlan(range: 0..<1000, minChunk: 300, align: 1, threads: 4)
        #expect(minDominates.chunkSize == 300)
        #expect(minDominates.chunkCount == 4)
        let aligned = ChunkPlan(range: 0..<1000, minChunk: 10, align: 64, threads: 2)
        #expect(aligned.chunkSize == 128)
        #expect(aligned.chunkCount == 8)
    }

    @Test("chunks start on align boundaries counted from 0, the range's ends excepted")
    func alignedFromZero() {
        let plan = ChunkPlan(range: 5..<100, minChunk: 16, align: 16, threads: 2)
        #expect(plan.chunk(0) == 5..<16)
        #expect(plan.chunk(1) == 16..<32)
        #expect(plan.chunk(plan.chunkCount - 1) == 96..<100)
        let chunks = (0..<plan.chunkCount).map(plan.chunk)
        #expect(tilingProblems(chunks, range: 5..<100, align: 16, minChunk: 16).isEmpty)
    }

    @Test("threads are capped by ceil(size / max(minChunk, align)) and the limit")
    func usefulThreads() {
        #expect(ChunkPlan.usefulThreads(size: 100, minChunk: 30, align: 1, limit: 16) == 4)
        #expect(ChunkPlan.usefulThreads(size: 100, minChunk: 1, align: 50, limit: 16) == 2)
        #expect(ChunkPlan.usefulThreads(size: 1_000_000, minChunk: 1, align: 1, limit: 3) == 3)
    }

    @Test("ranges near Int.max neither overflow nor lose items")
    func hugeRange() {
        let range = (Int.max - 1000)..<Int.max
        let plan = ChunkPlan(range: range, minChunk: 7, align: 1 << 40, threads: 4)
        let chunks = (0..<plan.chunkCount).map(plan.chunk)
        #expect(tilingProblems(chunks, range: range, align: 1 << 40, minChunk: 7).isEmpty)
        let whole = ChunkPlan(range: 0..<Int.max, minChunk: 1, align: 3, threads: 2)
        let wholeChunks = (0..<whole.chunkCount).map(whole.chunk)
        #expect(tilingProblems(wholeChunks, range: 0..<Int.max, align: 3, minChunk: 1).isEmpty)
    }
}
