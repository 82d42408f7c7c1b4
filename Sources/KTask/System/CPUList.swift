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
        // A bitset: repeated or overlapping ranges cost nothing more (40 × "0-4194303" is 4M CPUs, once).
        var bits: [UInt64] = []
        if !trimmed.isEmpty {
            for part in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
                let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
                guard (1...2).contains(bounds.count),
                      let low = Int(bounds[0]), low >= 0,
                      let high = Int(bounds[bounds.count - 1]), high >= low, high < Self.limit
                else { return nil }
                if bits.count <= high / 64 { bits += repeatElement(0, count: high / 64 + 1 - bits.count) }
                for cpu in low...high { bits[cpu / 64] |= 1 << UInt64(cpu % 64) }
            }
        }
        var cpus: [Int] = []
        for (index, word) in bits.enumerated() {
            var rest = word
            while rest != 0 {
                cpus.append(index * 64 + rest.trailingZeroBitCount)
                rest &= rest - 1
            }
        }
        self.init(sortedUnique: cpus)
    }

    /// Parses a kernel bitmask ("cpumap"): 32-bit hex words separated by commas, most significant
    /// first ("00000000,0000ffff"). Returns nil for anything else.
    package init?(parsingMask text: String) {
        let trimmed = text.trimmingCharacters(in: " \n\t\0")
        guard !trimmed.isEmpty else { return nil }
        var cpus: [Int] = []
        let words = trimmed.split(separator: ",", omittingEmptySubsequences: false)
        guard words.count <= Self.limit / 32 else { return nil }
        for (position, word) in words.reversed().enumerated() {
            guard !word.isEmpty, word.count <= 8, let bits = UInt32(word, radix: 16) else { return nil }
            for bit in 0..<32 where bits & (1 << UInt32(bit)) != 0 { cpus.append(position * 32 + bit) }
        }
        self.init(cpus)
    }

    /// The highest CPU number accepted (the kernel's NR_CPUS is at most 8192; this leaves room).
    static let limit = 1 << 22

    package var count: Int { cpus.count }
    package var isEmpty: Bool { cpus.isEmpty }

    package func intersection(_ other: CPUList) -> CPUList {
        // Both are sorted: one merge pass, no set.
        var result: [Int] = []
        var (left, right) = (0, 0)
        while left < cpus.count && right < other.cpus.count {
            if cpus[left] < other.cpus[right] { left += 1 }
            else if cpus[left] > other.cpus[right] { right += 1 }
            else { result.append(cpus[left]); left += 1; right += 1 }
        }
        return CPUList(sortedUnique: result)
    }

    package func contains(_ cpu: Int) -> Bool {
        // Binary search: the list is sorted (a linear scan made `present − online` quadratic).
        var low = 0, high = cpus.count
        while low < high {
            let middle = (low + high) / 2
            if cpus[middle] < cpu { low = middle + 1 } else { high = middle }
        }
        return low < cpus.count && cpus[low] == cpu
    }

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
