import Foundation

/// What hwloc's `lstopo` printed for a snapshot (its default view: only what the process may use): the
/// PUs, and for each NUMA node the PUs of the object it is attached to. Read from `hwloc-expected.output`
/// (lstopo's indented tree) or `hwloc-expected.xml`.
struct HwlocExpected: Equatable {
    var pus: Set<Int> = []
    /// NUMA node os index → the PUs of the object it hangs from (its CPUs, or a memory-only node's).
    var nodes: [Int: Set<Int>] = [:]

    init?(folder: String) {
        if let text = try? String(contentsOfFile: folder + "/hwloc-expected.output", encoding: .utf8) {
            self.init(lstopo: text)
        } else if let text = try? String(contentsOfFile: folder + "/hwloc-expected.xml", encoding: .utf8) {
            self.init(xml: text)
        } else {
            return nil
        }
    }

    /// lstopo's tree: two spaces of indent per level; "PU L#3 (P#6)", "NUMANode(HBM) L#3 (P#4 ...)".
    init(lstopo text: String) {
        let lines = text.split(separator: "\n").prefix { !$0.hasPrefix("Special depth") && !$0.hasPrefix("Relative") }
        let tree: [(depth: Int, line: Substring)] = lines.map { line in
            (line.prefix { $0 == " " }.count / 2, line.drop { $0 == " " })
        }
        func osIndex(_ line: Substring) -> Int? {
            guard let range = line.range(of: "(P#") else { return nil }
            return Int(line[range.upperBound...].prefix { $0.isNumber })
        }
        for (index, entry) in tree.enumerated() {
            if entry.line.hasPrefix("PU "), let pu = osIndex(entry.line) { pus.insert(pu) }
            guard entry.line.hasPrefix("NUMANode"), let node = osIndex(entry.line) else { continue }
            // The parent: the nearest line above with less indent; its subtree's PUs are the node's.
            let parent = tree[..<index].lastIndex { $0.depth < entry.depth } ?? 0
            var cpus: Set<Int> = []
            for below in tree[(parent + 1)...] {
                if below.depth <= tree[parent].depth { break }
                if below.line.hasPrefix("PU "), let pu = osIndex(below.line) { cpus.insert(pu) }
            }
            nodes[node] = cpus
        }
    }

    /// hwloc's XML: PU and NUMANode objects with `os_index` and `cpuset` (already the allowed part).
    init(xml text: String) {
        for object in text.components(separatedBy: "<object ").dropFirst() {
            let tag = object.prefix { $0 != ">" }
            func attribute(_ name: String) -> String? {
                guard let range = tag.range(of: " \(name)=\"") ?? tag.range(of: "\(name)=\"") else { return nil }
                return String(tag[range.upperBound...].prefix { $0 != "\"" })
            }
            guard let type = attribute("type"), let index = attribute("os_index").flatMap(Int.init) else { continue }
            if type == "PU" { pus.insert(index) }
            if type == "NUMANode", let mask = attribute("cpuset") { nodes[index] = Self.cpus(ofMask: mask) }
        }
    }

    /// "0x0000003f" or "0x00000001,0xffffffff" (32-bit words, most significant first).
    static func cpus(ofMask mask: String) -> Set<Int> {
        var cpus: Set<Int> = []
        for (position, word) in mask.split(separator: ",").reversed().enumerated() {
            guard let bits = UInt64(word.dropFirst(2), radix: 16) else { continue }
            for bit in 0..<32 where bits & (1 << UInt64(bit)) != 0 { cpus.insert(position * 32 + bit) }
        }
        return cpus
    }
}
