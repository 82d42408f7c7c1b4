import Foundation
import Synchronization
import Testing
@testable import KTask

@Suite("Results without unsafe code: map, reduce, update")
struct ResultsTests {
    struct Failure: Error {}
    @Test("map returns every result in order, blocking and async")
    func map() async throws {
        let squares = try await KTask.map(0..<100_000, options: KTask.Options(minChunk: 1000, maxThreads: 2)) { $0 * $0 }
        #expect(squares == (0..<100_000).map { $0 * $0 })
        #expect(try await KTask.map(5..<5) { $0 }.isEmpty)
        let offset = try blockingMap(10..<20)
        #expect(offset == Array(10..<20).map(String.init))
    }

    func blockingMap(_ range: Range<Int>) throws -> [String] { try KTask.map(range) { String($0) } }

    /// A result type that counts how many instances are alive, to see that a failed map destroys them.
    final class Tracked: Sendable {
        static let alive = Atomic<Int>(0)
        init() { Self.alive.add(1, ordering: .relaxed) }
        deinit { Self.alive.subtract(1, ordering: .relaxed) }
    }

    @Test("a map whose transform throws destroys the results it made and rethrows the first error")
    func failedMap() throws {
        let before = Tracked.alive.load(ordering: .relaxed)
        #expect(throws: Failure.self) {
            _ = try KTask.map(0..<10_000, options: KTask.Options(minChunk: 100, maxThreads: 2)) { index -> Tracked in
                if index == 7_777 { throw Failure() }
                return Tracked()
            }
        }
        #expect(Tracked.alive.load(ordering: .relaxed) == before)
    }

    @Test("reduce folds in range order: the same floating-point sum at 1 and 2 threads, every run")
    func deterministicReduce() async throws {
        func sum(_ threads: Int) async throws -> Double {
            try await KTask.reduce(0..<1_000_003, options: KTask.Options(minChunk: 64, maxThreads: threads), 0.0, { $0 + $1 }) { range in
                range.reduce(0.0) { $0 + 1.0 / Double($1 + 1) }
            }
        }
        let one = try await sum(1)
        for _ in 0..<5 { #expect(try await sum(2) == one) }
        var serial = 0.0
        for item in 0..<1_000_003 { serial += 1.0 / Double(item + 1) }
        #expect(abs(one - serial) < 1e-9)
        #expect(try await KTask.reduce(0..<0, 42, { $0 + $1 }) { _ in 1 } == 42)
    }

    @Test("reduce's blocks depend on the range, minChunk and align only")
    func reductionBlocks() {
        let blocks = ReductionBlocks(range: 3..<100_003, minChunk: 10, align: 8)
        #expect(blocks.size % 8 == 0 && blocks.size >= 10 && blocks.count <= ReductionBlocks.maxBlocks + 1)
        let covered = (0..<blocks.count).map(blocks.items(of:))
        #expect(covered.first?.lowerBound == 3 && covered.last?.upperBound == 100_003)
        #expect(zip(covered, covered.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
    }

    @Test("update changes the array in place, chunk by chunk; undo puts failed jobs' chunks back")
    func update() async throws {
        var values = Array(repeating: 0, count: 50_000)
        try await KTask.update(&values, options: KTask.Options(minChunk: 1000, maxThreads: 2)) { range, chunk in
            for index in chunk.indices { chunk[index] = range.lowerBound + index }
        }
        #expect(values == Array(0..<50_000))
        var doubled = Array(0..<10_000)
        #expect(throws: Failure.self) {
            try blockingUpdate(&doubled)
        }
        #expect(doubled == Array(0..<10_000), "completed chunks were undone")
    }

    func blockingUpdate(_ values: inout [Int]) throws {
        try KTask.update(&values, options: KTask.Options(minChunk: 100, maxThreads: 2), undo: { _, chunk in
            for index in chunk.indices { chunk[index] /= 2 }
        }) { range, chunk in
            if range.contains(9_999) { throw Failure() }
            for index in chunk.indices { chunk[index] *= 2 }
        }
    }
}
