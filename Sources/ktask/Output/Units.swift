import Foundation

/// Numbers as people read them: a unit that fits and 3-4 significant digits, never e-notation.
enum Units {
    /// A duration in s, ms, µs or ns: `65.50 s`, `1.234 s`, `12.34 ms`, `456.7 µs`.
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "-" }
        let units: [(String, Double)] = [("s", 1), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)]
        let magnitude = abs(seconds)
        let (name, scale) = units.first { magnitude >= $0.1 * 0.99995 } ?? units.last!
        return significant(seconds / scale) + " " + name
    }

    /// A rate with an SI prefix: `1.234 M items/s`, `12.50 GB/s`.
    static func rate(_ perSecond: Double, _ unit: String) -> String {
        guard perSecond.isFinite else { return "- \(unit)" }
        let prefixes: [(String, Double)] = [("T ", 1e12), ("G ", 1e9), ("M ", 1e6), ("k ", 1e3), ("", 1)]
        let (prefix, scale) = prefixes.first { abs(perSecond) >= $0.1 * 0.99995 } ?? prefixes.last!
        // Bytes take the prefix directly (MB/s); counted things keep a space (M items/s).
        return significant(perSecond / scale) + " " + (unit.hasPrefix("B") ? prefix.trimmingCharacters(in: .whitespaces) : prefix) + unit
    }

    /// Bytes in the binary units sizes are given in: `64 MiB`, `1.5 GiB`.
    static func bytes(_ count: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var value = Double(count), index = 0
        while abs(value) >= 1024 && index < units.count - 1 { value /= 1024; index += 1 }
        return (index == 0 || value == value.rounded() ? String(Int(value)) : significant(value)) + " " + units[index]
    }

    /// 3-4 significant digits without e-notation: 4 below 1000, whole numbers above.
    static func significant(_ value: Double) -> String {
        let magnitude = abs(value)
        let decimals = magnitude >= 1000 || magnitude == 0 ? 0 : max(0, 3 - Int(floor(log10(magnitude))))
        return String(format: "%.\(decimals)f", value)
    }

    /// A value for JSON rounded to the 4 significant digits a noisy measurement supports.
    static func measured(_ value: Double) -> Double {
        guard value.isFinite, value != 0 else { return value.isFinite ? value : 0 }
        return Double(String(format: "%.4g", value)) ?? value
    }
}

/// One table style for every subcommand: `# ` notes above, column titles, rows, `# ` notes below; columns
/// two spaces apart, text left-aligned.
struct TextTable {
    var notes: [String] = []
    let columns: [String]
    var rows: [[String]] = []
    var footnotes: [String] = []

    init(notes: [String] = [], columns: [String]) {
        self.notes = notes
        self.columns = columns
    }

    mutating func add(_ row: [String]) { rows.append(row) }

    func render() -> String {
        let widths = columns.indices.map { column in
            ([columns[column]] + rows.map { column < $0.count ? $0[column] : "" }).map(\.count).max() ?? 0
        }
        func line(_ cells: [String]) -> String {
            let padded = cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }
            // Trailing blanks dropped by hand: a regular expression here loaded ICU's regex tables in every
            // command that prints a table (about 1.5 ms of `ktask populate`'s 11 ms start to exit).
            let line = padded.joined(separator: "  ")
            return String(line[..<(line.lastIndex { !$0.isWhitespace }.map(line.index(after:)) ?? line.startIndex)])
        }
        var text = notes.map { "# \($0)\n" }.joined()
        text += line(columns) + "\n"
        text += rows.map { line($0) + "\n" }.joined()
        text += footnotes.map { "# \($0)\n" }.joined()
        return text
    }
}

/// An optional that JSON shows as `null` rather than leaving its key out.
struct Nullable<Wrapped: Encodable>: Encodable {
    let value: Wrapped?
    init(_ value: Wrapped?) { self.value = value }

    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        if let value { try container.encode(value) } else { try container.encodeNil() }
    }
}

/// The version of every JSON document the tool prints; raised when a key changes meaning or goes away.
let jsonSchemaVersion = 1
