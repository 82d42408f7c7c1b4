import CKTaskShims
import Foundation
import Testing
@testable import KTask

#if canImport(Glibc)
import Glibc
#endif

@Suite("Why a job got the threads it got", .serialized)
struct ThreadLimitTests {
    @Test("maxThreads, too little work, the pool's cap, a busy pool")
    func reasons() throws {
        #expect(try KTask.run(0..<1000, options: KTask.Options(maxThreads: 1)) { _ in }.threadLimit == .maxThreads)
        #expect(try KTask.run(0..<10, options: KTask.Options(minChunk: 100)) { _ in }.threadLimit == .tooLittleWork)
        let none = try KTask.Pool(name: "kt-lim0", maxBusyHelpers: 0, isolateHelpers: false)
        // Items of 100 µs: the caller's first shows the rest is worth a helper, which the cap then refuses.
        #expect(try KTask.run(0..<100, options: KTask.Options(maxThreads: 2, pool: none)) { _ in usleep(100) }.threadLimit == .poolCap)
        let one = try KTask.Pool(name: "kt-lim1", maxBusyHelpers: 1, isolateHelpers: false)
        // A job holding the pool's one helper makes a second job's helper come up short: the caller's first
        // item (20 ms) shows the rest is worth a helper; while it sleeps on item 2, item 1 runs a second job,
        // whose items (2 ms) are worth a helper too.
        let inner = Locked<KTask.ThreadLimit?>(nil)
        try KTask.run(0..<3, options: KTask.Options(maxThreads: 2, pool: one)) { chunk in
            guard chunk.lowerBound == 1 else { usleep(20_000); return }
            inner.withLock { $0 = try? KTask.run(0..<4, options: KTask.Options(maxThreads: 2, pool: one)) { _ in usleep(2_000) }.threadLimit }
        }
        #expect([.helpersBusy, .cpuBudget].contains(inner.current), "\(String(describing: inner.current))")
    }

    @Test("KTASK_MAX_THREADS=1 is named")
    func environment() async {
        await #expect(processExitsWith: .success) {
            setenv("KTASK_MAX_THREADS", "1", 1)
            let report = try runJob(0..<100_000, options: KTask.Options(maxThreads: 2)) { _ in }
            exit(report.threadsUsed == 1 && report.threadLimit == .environment ? 0 : 1)
        }
    }

    @Test("a one-CPU affinity mask is named as the CPU budget")
    func affinity() async {
        await #expect(processExitsWith: .success) {
            guard Affinity.pinCurrentThread(to: CPUList([0])) else { exit(2) }
            // Chunks of 100 µs: the caller's first shows the rest is worth a helper, and the budget is read.
            let report = try runJob(0..<100_000, options: KTask.Options(maxThreads: 2)) { _ in usleep(100) }
            exit(report.threadsUsed == 1 && report.threadLimit == .cpuBudget ? 0 : 1)
        }
    }

    @Test("a taskset or renice of the calling thread by someone else is seen by its jobs within 10 ms",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset")
                       && FileManager.default.isExecutableFile(atPath: "/usr/bin/renice")
                       && sysconf(Int32(_SC_NPROCESSORS_ONLN)) >= 2, "needs taskset, renice and 2 CPUs: skipped"))
    func outsideChangesSeenWithinTheCacheBound() async {
        await #expect(processExitsWith: .success) {
            let options = KTask.Options(maxThreads: 2, helperPriority: .inheritCaller)
            // 50 µs an item, 0.1 s in all: worth a helper.
            func job() throws -> KTask.Report { try runJob(0..<2000, options: options) { chunk in usleep(UInt32(chunk.count) * 50) } }
            // The calling thread's nice and affinity are now cached (``ThreadPriority/cacheNanoseconds``).
            let nice = Int(ThreadPriority.currentThreadNice())
            // A helper may come too late on a busy machine: a few tries.
            func helped() throws -> KTask.Report {
                var report = try job()
                for _ in 0..<20 where report.threadsUsed < 2 { usleep(10_000); report = try job() }
                return report
            }
            let before = try helped()
            guard before.threadsUsed == 2, before.helperNice == nice else { exit(2) }
            let tid = String(CKTask_gettid())
            func run(_ tool: String, _ arguments: [String]) -> Bool {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: tool)
                process.arguments = arguments
                process.standardOutput = FileHandle.nullDevice
                guard (try? process.run()) != nil else { return false }
                process.waitUntilExit()
                return process.terminationStatus == 0
            }
            guard run("/usr/bin/taskset", ["-p", "-c", "0", tid]),
                  run("/usr/bin/renice", ["-n", String(min(19, nice + 5)), "-p", tid]) else { exit(3) }
            usleep(20_000)
            let after = try job()
            guard after.threadsUsed == 1 && after.threadLimit == .cpuBudget else { exit(4) }
            // Back on both CPUs, the helper inherits the new nice.
            guard run("/usr/bin/taskset", ["-p", "-c", "0-1", tid]) else { exit(3) }
            usleep(20_000)
            let reniced = try helped()
            exit(reniced.threadsUsed == 2 && reniced.helperNice == min(19, nice + 5) ? 0 : 5)
        }
    }
}
