/// Summary statistics of repeated timings.
public struct Sample: Sendable, Equatable {
    public let values: [Double]

    public init(_ values: [Double]) { self.values = values }

    public var mean: Double { values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count) }

    public var median: Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    public var min: Double { values.min() ?? 0 }
    public var max: Double { values.max() ?? 0 }

    /// Sample standard deviation (n − 1).
    public var standardDeviation: Double {
        guard values.count > 1 else { return 0 }
        let mean = self.mean
        let squares = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        return (squares / Double(values.count - 1)).squareRoot()
    }

    /// Standard deviation as a percentage of the mean: the seed table's "± %".
    public var standardDeviationPercent: Double { mean > 0 ? standardDeviation / mean * 100 : 0 }
}
