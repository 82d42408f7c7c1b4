import Foundation

/// A peer written in C or C++ (`Peers/`), run as a process of its own that stays up for the whole
/// comparison, so that its thread pool stays warm between runs as ktask's does. One line per run:
/// "THREADS CHUNK" in, "SECONDS CHECK" (or "error MESSAGE") out; see `Peers/peer_workloads.h`.
final class ExternalPeer: SystemRunner {
    let system: ComparedSystem
    private let workload: any BenchWorkload
    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private var buffered = Data()

    /// Starts the peer program for `workload`; throws ``PeerError`` if it cannot start or disagrees on the items.
    init(system: ComparedSystem, executable: String, workload: any BenchWorkload, kind: WorkloadKind, size: Int) throws {
        self.system = system
        self.workload = workload
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [kind.rawValue, String(size)] + ((workload as? PrefaultWorkload).map { [$0.pageMode.rawValue] } ?? [])
        process.standardInput = input
        process.standardOutput = output
        do { try process.run() } catch { throw PeerError.failed(system: system.rawValue, reason: "could not start \(executable): \(error)") }
        let ready = try readLine()
        guard ready == "ready \(workload.items)" else {
            throw PeerError.failed(system: system.rawValue, reason: "expected \"ready \(workload.items)\", got \"\(ready)\"")
        }
    }

    deinit {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    func runOnce(threads: Int) throws -> Double {
        let chunk = try workload.chunkSize(threads: threads)
        input.fileHandleForWriting.write(Data("\(threads) \(chunk)\n".utf8))
        let line = try readLine()
        let fields = line.split(separator: " ", maxSplits: 1).map(String.init)
        guard fields.count == 2, fields[0] != "error", let seconds = Double(fields[0]) else {
            throw PeerError.failed(system: system.rawValue, reason: line)
        }
        if let compute = workload as? ComputeWorkload {
            guard let sum = UInt64(fields[1]) else { throw PeerError.failed(system: system.rawValue, reason: line) }
            try compute.check(sum: sum)
        } else if fields[1] != "ok" {
            throw PeerError.failed(system: system.rawValue, reason: line)
        }
        return seconds
    }

    private func readLine() throws -> String {
        while true {
            if let newline = buffered.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffered[buffered.startIndex..<newline], as: UTF8.self)
                buffered.removeSubrange(buffered.startIndex...newline)
                return line
            }
            let more = output.fileHandleForReading.availableData
            guard !more.isEmpty else {
                throw PeerError.failed(system: system.rawValue, reason: "the program exited before answering")
            }
            buffered.append(more)
        }
    }
}

/// Why a peer has no row in a comparison.
package enum PeerError: Error, CustomStringConvertible {
    /// The peer's program is not there (e.g. `scripts/build-peers.sh` has not run, or could not build it).
    case missing(system: String, reason: String)
    /// The peer started but failed or gave a wrong result.
    case failed(system: String, reason: String)

    package var description: String {
        switch self {
        case .missing(let system, let reason): "\(system) is missing: \(reason)"
        case .failed(let system, let reason): "\(system) failed: \(reason)"
        }
    }
}
