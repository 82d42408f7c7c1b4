import KTask
import Synchronization

/// A CPU-bound pass over N items: each item is mixed by a few rounds of a 64-bit hash and the
/// results are summed, so the work cannot be optimised away and each run's sum is checked.
package final class ComputeWorkload: BenchWorkload, Sendable {
    package let items: Int
    /// One range of items per node; nil: one range.
    package let nodes: [Int]?

    package let minChunk = 65_536
    package let align = 1

    package init(items: Int, nodes: [Int]? = nil) throws(WorkloadError) {
        guard items >= 1 else { throw .sizeTooSmall(workload: "compute", size: items, minimum: 1) }
        self.items = items
        self.nodes = nodes
    }

    package var summary: String {
        "mix and sum \(items) items" + (nodes.map { ", a range per node \($0.map(String.init).joined(separator: ","))" } ?? "")
    }

    /// Eight rounds of the SplitMix64 finaliser over one item.
    @inline(__always)
    package static func mix(_ item: Int) -> UInt64 {
        var x = UInt64(truncatingIfNeeded: item)
        for _ in 0..<8 {
            x &+= 0x9E37_79B9_7F4A_7C15
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            x ^= x >> 31
        }
        return x
    }

    /// The sum of ``mix(_:)`` over a range, on the calling thread.
    package static func sum(_ items: Range<Int>) -> UInt64 {
        var total: UInt64 = 0
        for item in items { total &+= mix(item) }
        return total
    }

    package func prepareRun() throws -> PreparedRun {
        let total = Atomic<UInt64>(0)
        return PreparedRun(
            perNode: nodes.map { KTask.NodeRange.split(items, across: $0, align: 1) },
            body: { chunk in total.wrappingAdd(Self.sum(chunk), ordering: .relaxed) },
            check: { try self.check(sum: total.load(ordering: .relaxed)) })
    }

    /// The sum every run must produce: the first checked run's; nil before it.
    package var expectedSum: UInt64? { reference.withLock { $0 } }
    private let reference = Mutex<UInt64?>(nil)

    /// Throws unless `sum` is the sum of every item (the first sum seen becomes the reference).
    package func check(sum: UInt64) throws(WorkloadError) {
        try reference.withLock { (expected: inout UInt64?) throws(WorkloadError) in
            if let expected, expected != sum {
                throw .wrongResult(workload: "compute", detail: "sum \(sum) differs from \(expected)")
            }
            expected = sum
        }
    }
}
