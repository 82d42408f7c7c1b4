import Foundation
/// Summary statistics of repeated timings.
package struct Sample: Sendable, Equatable {
    package let values: [Double]

    package init(_ values: [Double]) { self.values = values }

    package var mean: Double { values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count) }

    package var median: Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    /// The value below which a fraction `p` (0...1) of the values lie (nearest rank); 0 for no values.
    package func percentile(_ p: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let rank = Int((p * Double(sorted.count)).rounded(.up))
        return sorted[Swift.min(sorted.count, Swift.max(1, rank)) - 1]
    }

    package var min: Double { values.min() ?? 0 }
    package var max: Double { values.max() ?? 0 }

    /// Sample standard deviation (n − 1).
    package var standardDeviation: Double {
        guard values.count > 1 else { return 0 }
        let mean = self.mean
        let squares = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        return (squares / Double(values.count - 1)).squareRoot()
    }

    /// Standard deviation as a percentage of the mean: the seed table's "± %".
    package var standardDeviationPercent: Double { mean > 0 ? standardDeviation / mean * 100 : 0 }

    /// The spread of the runs that one slow run cannot inflate: 1.4826 × the median absolute deviation
    /// (which equals the standard deviation for normally distributed timings).
    package var robustStandardDeviation: Double {
        guard values.count > 1 else { return 0 }
        let median = self.median
        return 1.4826 * Sample(values.map { abs($0 - median) }).median
    }

    /// ``robustStandardDeviation`` as a percentage of the median: the table's "± %".
    package var robustSpreadPercent: Double { median > 0 ? robustStandardDeviation / median * 100 : 0 }

    /// The standard error of the median (≈ 1.2533 σ/√n), relative to the median.
    package var relativeErrorOfMedian: Double {
        guard values.count > 1, median > 0 else { return .infinity }
        return 1.2533 * robustStandardDeviation / median / Double(values.count).squareRoot()
    }

    /// How far the ratio of two samples' medians would move in a second run of the same command, in percent
    /// (about 95% of the time): 2 × √2 × the ratio's relative standard error, from both samples' robust
    /// spread (one slow run, e.g. the host faulting memory back in, does not decide it). Infinite for a
    /// sample of one run.
    package static func ratioUncertaintyPercent(_ numerator: Sample, _ denominator: Sample) -> Double {
        let error = (pow(numerator.relativeErrorOfMedian, 2) + pow(denominator.relativeErrorOfMedian, 2)).squareRoot()
        return 2 * 2.0.squareRoot() * error * 100
    }
}
