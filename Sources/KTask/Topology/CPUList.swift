/// A set of CPU numbers as Linux writes it in sysfs and procfs: "0-3,8,10-11".
package struct CPUList: Sendable, Equatable, CustomStringConvertible {
    /// The CPU numbers, ascending and without repeats.
    package let cpus: [Int]

    package init<S: Sequence<Int>>(_ cpus: S) {
        self.cpus = Array(Set(cpus)).sorted()
    }

    /// A list already ascending and without repeats (no sort, no set).
    init(sortedUnique cpus: [Int]) { self.cpus = cpus }

    /// Parses the kernel's list format. Trailing newlines and NUL bytes are ignored; an empty string
    /// is the empty set. Returns nil for anything else that is not a list.
    package init?(parsing text: String) {
        let trimmed = text.trimmingCharacters(in: " \n\t\0")
        var cpus: [Int] = []
        if !trimmed.isEmpty {
            for part in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
                let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
                guard (1...2).contains(bounds.count),
                      let low = Int(bounds[0]), low >= 0,
                      let high = Int(bounds[bounds.count - 1]), high >= low, high < 1 << 22
                else { return nil }
                cpus.append(contentsOf: low...high)
            }
        }
        self.init(cpus)
    }

    /// Parses a kernel bitmask ("cpumap"): 32-bit hex words separated by commas, most significant
    /// first ("00000000,0000ffff"). Returns nil for anything else.
    package init?(parsingMask text: String) {
        let trimmed = text.trimmingCharacters(in: " \n\t\0")
        guard !trimmed.isEmpty else { return nil }
        var cpus: [Int] = []
        for (position, word) in trimmed.split(separator: ",", omittingEmptySubsequences: false).reversed().enumerated() {
            guard !word.isEmpty, word.count <= 8, let bits = UInt32(word, radix: 16) else { return nil }
            for bit in 0..<32 where bits & (1 << UInt32(bit)) != 0 { cpus.append(position * 32 + bit) }
        }
        self.init(cpus)
    }

    package var count: Int { cpus.count }
    package var isEmpty: Bool { cpus.isEmpty }

    package func intersection(_ other: CPUList) -> CPUList {
        CPUList(Set(cpus).intersection(other.cpus))
    }

    package func contains(_ cpu: Int) -> Bool { cpus.contains(cpu) }

    /// The kernel's compact form: runs of consecutive CPUs as "a-b".
    package var description: String {
        var parts: [String] = []
        var index = 0
        while index < cpus.count {
            var end = index
            while end + 1 < cpus.count && cpus[end + 1] == cpus[end] + 1 { end += 1 }
            parts.append(end == index ? "\(cpus[index])" : "\(cpus[index])-\(cpus[end])")
            index = end + 1
        }
        return parts.joined(separator: ",")
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, set.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}
