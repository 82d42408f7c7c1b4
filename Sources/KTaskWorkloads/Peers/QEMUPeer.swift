import Foundation
import KTask

/// QEMU preallocating guest RAM, the bar for the prefault workload: `qemu-system-<arch> -machine none` with
/// one memory backend of the same size, page mode and thread count (`prealloc=on,prealloc-threads=N`),
/// timed from process start to exit (QEMU cannot report the preallocation alone; its start-up and exit
/// add about 30 ms here). `quit` on its monitor ends it once the backend is built.
final class QEMUPeer: SystemRunner {
    let executable: String
    let backend: String

    /// The QEMU binary for this machine's architecture, found on PATH.
    static func find() -> String? {
        #if arch(x86_64)
        let name = "qemu-system-x86_64"
        #elseif arch(arm64)
        let name = "qemu-system-aarch64"
        #else
        let name = "qemu-system"
        #endif
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    init(workload: any BenchWorkload) throws {
        guard let prefault = workload as? PrefaultWorkload else {
            throw PeerError.missing(system: "qemu", reason: "QEMU only preallocates guest memory: compare it with --workload prefault")
        }
        guard let executable = Self.find() else {
            throw PeerError.missing(system: "qemu", reason: "qemu-system is not installed (scripts/build-peers.sh installs Debian's qemu-system-x86)")
        }
        self.executable = executable
        let size = "size=\(prefault.bytes),prealloc=on"
        switch prefault.pageMode {
        // QEMU madvises every RAM block for THP, as the workload's thp mode does.
        case .transparentHuge: backend = "memory-backend-ram,id=ram0,\(size)"
        // QEMU madvises all guest RAM for THP and has no switch against it: 4 KiB pages only where THP is off.
        case .base:
            guard KTask.PageMode.preferred().mode == .base else {
                throw PeerError.missing(system: "qemu", reason: "QEMU asks for transparent huge pages for all guest RAM; "
                                        + "it gets 4 KiB pages only where THP is off (compare with --pages thp)")
            }
            backend = "memory-backend-ram,id=ram0,\(size)"
        case .hugetlb2M, .hugetlb1G:
            guard let mount = Self.hugetlbfsMount(pageSize: prefault.pageMode.pageSize) else {
                throw PeerError.missing(system: "qemu", reason: "no hugetlbfs mount with \(prefault.pageMode.pageSize >> 20) MiB pages "
                                        + "(mount -t hugetlbfs -o pagesize=\(prefault.pageMode.pageSize >> 20)M none /dev/hugepages)")
            }
            backend = "memory-backend-file,id=ram0,mem-path=\(mount),share=off,\(size)"
        }
    }

    /// A hugetlbfs mount point whose page size is `pageSize` (from /proc/mounts' pagesize option; a mount
    /// without one has the default huge page size, 2 MiB on x86-64).
    static func hugetlbfsMount(pageSize: Int) -> String? {
        guard let mounts = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return nil }
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 4, fields[2] == "hugetlbfs" else { continue }
            let option = fields[3].split(separator: ",").first { $0.hasPrefix("pagesize=") }
            let size = option.map { $0.dropFirst("pagesize=".count) } ?? "2M"
            if (size == "2M" && pageSize == 2 << 20) || (size == "1024M" && pageSize == 1 << 30) || (size == "1G" && pageSize == 1 << 30) {
                return String(fields[1])
            }
        }
        return nil
    }

    func runOnce(threads: Int) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["-machine", "none", "-nodefaults", "-display", "none", "-monitor", "stdio",
                             "-object", backend + ",prealloc-threads=\(threads)"]
        let input = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        let start = ContinuousClock.now
        try process.run()
        input.fileHandleForWriting.write(Data("quit\n".utf8))
        try? input.fileHandleForWriting.close()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let elapsed = ContinuousClock.now - start
        guard process.terminationStatus == 0 else {
            let text = String(decoding: message, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "exit status \(process.terminationStatus)"
            throw PeerError.failed(system: "qemu", reason: text)
        }
        return elapsed.seconds
    }
}
