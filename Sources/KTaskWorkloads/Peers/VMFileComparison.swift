import CKTaskShims
import Foundation
import KTask
#if canImport(Glibc)
import Glibc
#endif

/// The two ways to start a VM whose RAM is a shared file that `ktask compare --workload vm-file` times.
package enum VMStartPath: String, CaseIterable, Sendable {
    /// `ktask populate --write` allocates the file, then QEMU maps it with `share=on,prealloc=off`.
    case ktaskThenQEMU = "ktask+qemu"
    /// QEMU allocates the file itself: `share=on,prealloc=on,prealloc-threads=N`.
    case qemuPrealloc = "qemu-prealloc"
}

/// One path at one thread count.
package struct VMFileRow: Sendable {
    package let path: VMStartPath
    package let threads: Int
    /// The whole path: its processes' times from start to exit, summed.
    package let seconds: Sample
    /// `ktask populate`'s process alone (nil for qemu-prealloc).
    package let populateSeconds: Sample?
    /// The QEMU process alone (for qemu-prealloc, all of `seconds`).
    package let qemuSeconds: Sample
    /// This path's median ÷ ktask+qemu's at the same thread count: above 1, ktask's path was faster.
    package let ratioVsKTask: Double
    /// How far `ratioVsKTask` would move in a second run, in percent (0 for ktask's row, infinite with one run).
    package let ratioUncertaintyPercent: Double
    /// The median over rounds of this path's time ÷ ktask+qemu's in the same round.
    package let pairedRatioVsKTask: Double
}

/// A finished vm-file comparison.
package struct VMFileResult: Sendable {
    package let size: Int
    package let pageMode: KTask.PageMode
    package let runs: Int
    /// Seconds waited, untimed, after each run's file was removed.
    package let settleSeconds: Double
    /// Where the files were made ("tmpfs /dev/shm"), or nil when no run could be made.
    package let location: String?
    /// The two commands each run executes, with placeholders for the thread count and file.
    package let ktaskCommand: String
    package let qemuCommand: String
    package let rows: [VMFileRow]
    /// Paths without rows, and why (with the command that fixes it where one does).
    package let missing: [(path: VMStartPath, reason: String)]
    package let stealSeconds: Double?
}

/// Why a vm-file comparison stopped.
package enum VMFileComparisonError: Error, CustomStringConvertible {
    /// The scratch folder for the file could not be made or removed.
    case scratchFolder(path: String, errno: Int32)
    /// A process of ktask's path failed: the comparison has no baseline without it.
    case ktaskPathFailed(step: String, reason: String)
    /// A path exited successfully but left part of the file unallocated.
    case notAllocated(path: VMStartPath, allocated: Int, expected: Int)
    case processStart(ProcessStartError)

    package var description: String {
        switch self {
        case .scratchFolder(let path, let code): "cannot make or remove the scratch folder \(path): \(String(cString: strerror(code)))"
        case .ktaskPathFailed(let step, let reason): "ktask's path failed in \(step): \(reason)"
        case .notAllocated(let path, let allocated, let expected):
            "\(path.rawValue) left the file with \(allocated) of \(expected) bytes allocated"
        case .processStart(let error): error.description
        }
    }
}

/// Times a VM start on a RAM file both ways, as processes: ktask populate then QEMU with `prealloc=off`,
/// against QEMU with `prealloc=on`, each run on a fresh file (so that tmpfs and hugetlbfs pages are freed
/// between runs) in a scratch folder that is removed however the process ends.
package struct VMFileComparison {
    package let size: Int
    package let pageMode: KTask.PageMode
    package let threadCounts: [Int]
    package let runs: Int
    /// The `ktask` executable whose `populate` is timed.
    package let ktaskExecutable: String
    /// Seconds to wait, untimed, after each run's file is removed: on a VM whose freed memory goes back to
    /// the host (free page reporting, 2 s after it is freed), a run that starts at once finds part of it
    /// still backed and part not, and its time depends on the race; after the wait every run finds none.
    package let settleSeconds: Double

    package init(size: Int, pageMode: KTask.PageMode, threadCounts: [Int], runs: Int, ktaskExecutable: String, settleSeconds: Double = 0) {
        self.settleSeconds = settleSeconds
        self.size = size
        self.pageMode = pageMode
        self.threadCounts = threadCounts
        self.runs = runs
        self.ktaskExecutable = ktaskExecutable
    }

    /// The file's name in the scratch folder.
    static let fileName = "guest-ram"

    package var ktaskCommand: String { "ktask populate --write --threads N --size \(size) FILE" }
    package var qemuCommand: String { "\(Self.qemuName) " + Self.qemuArguments(file: "FILE", size: size, preallocThreads: nil).joined(separator: " ") }

    private static var qemuName: String { QEMUPeer.find().map { ($0 as NSString).lastPathComponent } ?? "qemu-system-x86_64" }

    /// QEMU with nothing but one shared file backend (`-machine none`), ended by `quit` on its monitor;
    /// `preallocThreads` nil: `prealloc=off` (the memory is there already).
    static func qemuArguments(file: String, size: Int, preallocThreads: Int?) -> [String] {
        // QEMU's option syntax doubles a comma inside a value.
        let path = file.replacingOccurrences(of: ",", with: ",,")
        let prealloc = preallocThreads.map { "prealloc=on,prealloc-threads=\($0)" } ?? "prealloc=off"
        return ["-machine", "none", "-nodefaults", "-display", "none", "-monitor", "stdio",
                "-object", "memory-backend-file,id=ram0,mem-path=\(path),size=\(size),share=on,\(prealloc)"]
    }

    /// Where this page mode's file goes and whether it fits there: (folder, description), or the reason
    /// and the command that makes room.
    func location() -> Result<(folder: String, description: String), VMFileUnavailable> {
        if pageMode == .base {
            var status = statvfs()
            guard statvfs("/dev/shm", &status) == 0 else { return .failure(VMFileUnavailable("/dev/shm is not mounted")) }
            let free = Int(status.f_bavail) * Int(status.f_frsize)
            guard free >= size else {
                return .failure(VMFileUnavailable("/dev/shm has \(free >> 20) MiB free, \(size >> 20) MiB needed "
                                                  + "(mount -o remount,size=\((size >> 30) + 1)G /dev/shm, or a smaller --size)"))
            }
            return .success(("/dev/shm", "tmpfs /dev/shm"))
        }
        let pageSize = pageMode.pageSize, megabytes = pageSize >> 20
        let label = megabytes >= 1024 ? "\(megabytes >> 10) GiB" : "\(megabytes) MiB"
        guard let mount = QEMUPeer.hugetlbfsMount(pageSize: pageSize) else {
            let (option, point) = megabytes >= 1024 ? ("1G", "/dev/hugepages1G") : ("2M", "/dev/hugepages")
            return .failure(VMFileUnavailable("no hugetlbfs mount with \(label) pages "
                                              + "(mkdir -p \(point) && mount -t hugetlbfs -o pagesize=\(option) none \(point))"))
        }
        let sysfs = "/sys/kernel/mm/hugepages/hugepages-\(pageSize >> 10)kB"
        func count(_ name: String) -> Int { firstLine(of: sysfs + "/" + name).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0 }
        // Free pages not already promised to a mapping: what one run can take.
        let available = max(0, count("free_hugepages") - count("resv_hugepages")), needed = size / pageSize
        guard available >= needed else {
            return .failure(VMFileUnavailable("\(available) free \(label) huge pages, \(needed) needed "
                                              + "(echo \(count("nr_hugepages") + needed - available) > \(sysfs)/nr_hugepages)"))
        }
        return .success((mount, "hugetlbfs \(mount)"))
    }

    /// Runs the comparison; `progress` hears (run, of runs, path, threads) before each run (run 0: warm-up).
    package func run(progress: (Int, Int, VMStartPath, Int) -> Void = { _, _, _, _ in }) throws -> VMFileResult {
        func result(location: String?, rows: [VMFileRow], missing: [(path: VMStartPath, reason: String)], steal: Double?) -> VMFileResult {
            VMFileResult(size: size, pageMode: pageMode, runs: runs, settleSeconds: settleSeconds, location: location, ktaskCommand: ktaskCommand,
                         qemuCommand: qemuCommand, rows: rows, missing: missing, stealSeconds: steal)
        }
        // Both paths need QEMU and room for the file: without either, neither runs.
        guard let qemu = QEMUPeer.find() else {
            return result(location: nil, rows: [], missing: VMStartPath.allCases.map {
                ($0, "qemu-system is not installed (scripts/build-peers.sh installs Debian's qemu-system-x86)")
            }, steal: nil)
        }
        let place: (folder: String, description: String)
        switch location() {
        case .success(let found): place = found
        case .failure(let unavailable):
            return result(location: nil, rows: [], missing: VMStartPath.allCases.map { ($0, unavailable.reason) }, steal: nil)
        }

        let scratch = try ScratchFolder(in: place.folder, fileName: Self.fileName)
        defer { try? scratch.remove() }
        var missing: [(path: VMStartPath, reason: String)] = []
        var paths = VMStartPath.allCases
        var measured = Measurements()
        /// One run, or nil where qemu-prealloc was dropped (with its reason) for good.
        func timed(_ path: VMStartPath, threads: Int) throws -> (populate: Double?, qemu: Double)? {
            switch try runOnce(path, threads: threads, qemu: qemu, file: scratch.filePath) {
            case .timed(let populate, let qemu): return (populate, qemu)
            case .dropped(let reason):
                missing.append((path, reason))
                paths.removeAll { $0 == path }
                measured.forget(path)
                return nil
            }
        }

        // One untimed run of each first: the programs' files come into the page cache.
        for path in paths {
            progress(0, runs, path, threadCounts.last!)
            _ = try timed(path, threads: threadCounts.last!)
        }
        let stealBefore = StealTime.total()
        for run in 1...runs {
            for threads in threadCounts {
                // Which path goes first alternates run by run: what one run leaves behind (memory the host
                // takes back, page cache) does not always fall on the same one.
                var round: [VMStartPath: (populate: Double?, qemu: Double)] = [:]
                for path in run % 2 == 1 ? paths : paths.reversed() {
                    progress(run, runs, path, threads)
                    round[path] = try timed(path, threads: threads)
                }
                measured.record(round, threads: threads)
            }
        }
        let steal = StealTime.total().flatMap { after in stealBefore.map { after - $0 } }
        try scratch.remove()
        return result(location: place.description, rows: measured.rows(threadCounts: threadCounts), missing: missing, steal: steal)
    }

    /// What one run of a path came to.
    private enum RunOutcome {
        case timed(populate: Double?, qemu: Double)
        /// qemu-prealloc failed or left pages unallocated: dropped from the comparison with this reason.
        case dropped(String)
    }

    /// One run of `path` on a fresh `file`. ktask's path failing ends the comparison (it is every ratio's
    /// baseline); qemu-prealloc failing drops it.
    private func runOnce(_ path: VMStartPath, threads: Int, qemu: String, file: String) throws -> RunOutcome {
        guard unlink(file) == 0 || errno == ENOENT else { throw VMFileComparisonError.scratchFolder(path: file, errno: errno) }
        defer {
            CKTask_scratch_set_child(0)
            unlink(file)
            if settleSeconds > 0 { usleep(useconds_t(settleSeconds * 1e6)) }
        }
        let watch: (pid_t) -> Void = { CKTask_scratch_set_child($0) }
        var populateSeconds: Double?
        let qemuRun: TimedProcess
        do {
            switch path {
            case .ktaskThenQEMU:
                let populate = try TimedProcess.run(ktaskExecutable, ["populate", "--write", "--threads", "\(threads)", "--size", "\(size)", file],
                                                    started: watch)
                guard populate.status == 0 else { throw VMFileComparisonError.ktaskPathFailed(step: "ktask populate", reason: populate.failureReason) }
                populateSeconds = populate.seconds
                qemuRun = try TimedProcess.run(qemu, Self.qemuArguments(file: file, size: size, preallocThreads: nil), input: "quit\n", started: watch)
                guard qemuRun.status == 0 else { throw VMFileComparisonError.ktaskPathFailed(step: "qemu (prealloc=off)", reason: qemuRun.failureReason) }
            case .qemuPrealloc:
                qemuRun = try TimedProcess.run(qemu, Self.qemuArguments(file: file, size: size, preallocThreads: threads), input: "quit\n", started: watch)
                guard qemuRun.status == 0 else { return .dropped("qemu failed: \(qemuRun.failureReason)") }
            }
        } catch let error as ProcessStartError {
            throw VMFileComparisonError.processStart(error)
        }
        // Both must leave every page allocated (st_blocks counts tmpfs and hugetlbfs pages): QEMU with
        // prealloc=off on a file ktask did not fill would allocate nothing.
        var status = stat()
        let allocated = stat(file, &status) == 0 ? Int(status.st_blocks) * 512 : 0
        guard allocated >= size else {
            let error = VMFileComparisonError.notAllocated(path: path, allocated: allocated, expected: size)
            if path == .ktaskThenQEMU { throw error }
            return .dropped(error.description)
        }
        return .timed(populate: populateSeconds, qemu: qemuRun.seconds)
    }

    /// Every timed run, by path and thread count, and the rows they make.
    private struct Measurements {
        var totals: [VMStartPath: [Int: [Double]]] = [:]
        var populates: [Int: [Double]] = [:]
        var qemus: [VMStartPath: [Int: [Double]]] = [:]
        var pairedRatios: [VMStartPath: [Int: [Double]]] = [:]

        /// One round at `threads`: each path's time, and its ratio to ktask's path in the same round.
        mutating func record(_ round: [VMStartPath: (populate: Double?, qemu: Double)], threads: Int) {
            guard let ktask = round[.ktaskThenQEMU] else { return }
            let ktaskTotal = (ktask.populate ?? 0) + ktask.qemu
            for (path, times) in round {
                let total = (times.populate ?? 0) + times.qemu
                totals[path, default: [:]][threads, default: []].append(total)
                qemus[path, default: [:]][threads, default: []].append(times.qemu)
                if let populate = times.populate { populates[threads, default: []].append(populate) }
                pairedRatios[path, default: [:]][threads, default: []].append(total / ktaskTotal)
            }
        }

        mutating func forget(_ path: VMStartPath) {
            (totals[path], qemus[path], pairedRatios[path]) = (nil, nil, nil)
        }

        func rows(threadCounts: [Int]) -> [VMFileRow] {
            var rows: [VMFileRow] = []
            for threads in threadCounts {
                guard let ktaskTimes = totals[.ktaskThenQEMU]?[threads] else { continue }
                let ktask = Sample(ktaskTimes)
                for path in VMStartPath.allCases {
                    guard let values = totals[path]?[threads] else { continue }
                    let sample = Sample(values)
                    rows.append(VMFileRow(path: path, threads: threads, seconds: sample,
                                          populateSeconds: path == .ktaskThenQEMU ? Sample(populates[threads] ?? []) : nil,
                                          qemuSeconds: Sample(qemus[path]?[threads] ?? []),
                                          ratioVsKTask: sample.median / ktask.median,
                                          ratioUncertaintyPercent: path == .ktaskThenQEMU ? 0 : Sample.ratioUncertaintyPercent(sample, ktask),
                                          pairedRatioVsKTask: Sample(pairedRatios[path]?[threads] ?? []).median))
                }
            }
            return rows
        }
    }
}

/// Why a page mode's file cannot be made here, with the command that makes room.
package struct VMFileUnavailable: Error {
    package let reason: String
    init(_ reason: String) { self.reason = reason }
}

/// A folder of this process's own (mkdtemp, mode 0700) for one file at a time; it and its file are
/// removed by ``remove()``, or by the fatal-signal module if the process ends first (Ctrl-C, SIGTERM, exit).
final class ScratchFolder {
    let path: String
    let filePath: String
    private var removed = false

    init(in parent: String, fileName: String) throws(VMFileComparisonError) {
        var template = Array((parent + "/ktask-vm-file-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw .scratchFolder(path: parent, errno: errno)
        }
        path = String(cString: made)
        filePath = path + "/" + fileName
        guard CKTask_scratch_arm(path, fileName) == 0 else {
            let code = errno
            rmdir(path)
            throw .scratchFolder(path: path, errno: code)
        }
    }

    func remove() throws(VMFileComparisonError) {
        guard !removed else { return }
        removed = true
        guard CKTask_scratch_remove() == 0 else { throw .scratchFolder(path: path, errno: errno) }
    }
}
