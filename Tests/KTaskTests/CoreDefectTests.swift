import Foundation
import Synchronization
import Testing
@testable import KTask

/// Each test here failed (or crashed the test process) before the core was reshaped.
@Suite("Core defects: a job never outlives its helpers, limits agree, input is checked whatever the size", .serialized)
struct CoreDefectTests {
    /// Adaptive mode under the priority boost: the caller's last claim took stock of its helpers, then
    /// the controller dispatched one more, which still held the job after `run` returned (and crashed
    /// in it). `KTASK_REPRO_RUNS` raises the count (e.g. 1000 in a release build).
    @Test("a job does not return while a helper it dispatched can still touch it (adaptive mode, priority boost)")
    func noHelperOutlivesItsJob() throws {
        let runs = ProcessInfo.processInfo.environment["KTASK_REPRO_RUNS"].flatMap(Int.init) ?? 300
        let pool = try KTask.Pool(maxBusyHelpers: 1, isolateHelpers: false)
        let options = KTask.Options(minChunk: 1, maxThreads: 2, helperPriority: .lowest, pool: pool,
                                   adaptiveThreads: KTask.AdaptiveThreads(minimumGain: 0.1, window: .milliseconds(10)))
        for run in 0..<runs {
            let covered = Atomic<Int>(0)
            try KTask.run(0..<9, options: options) { chunk in
                usleep(2_000)
                covered.add(chunk.count, ordering: .relaxed)
            }
            #expect(covered.load(ordering: .relaxed) == 9)
            let busy = pool.state.busyHelpers
            #expect(busy == 0, "run \(run): a helper was still busy with the job after it returned")
            if busy != 0 { break }
        }
    }

    @Test("the CPUs helpers are pinned to per node are inside the affinity mask")
    func nodeCPUsWithinAffinity() async {
        await #expect(processExitsWith: .success) {
            let online = CPUBudget.read().topology.online
            guard online.count >= 2, let last = online.cpus.last else { exit(0) }  // nothing to restrict with one CPU
            guard Affinity.pinCurrentThread(to: CPUList([last])) else { exit(2) }
            let limits = SystemLimits.current(nodeCPUs: .always)
            let outside = limits.nodes.flatMap(\.cpus.cpus).filter { $0 != last }
            exit(outside.isEmpty && limits.budget == 1 && limits.nodes.contains { $0.cpus == CPUList([last]) } ? 0 : 1)
        }
    }

    @Test("the engine and ktask info fall back the same way when online ∩ affinity ∩ cpuset is empty")
    func emptyIntersectionFallbacks() {
        let online = CPUList(0...3)
        #expect(CPUBudget.usable(online: online, affinity: CPUList([0, 1]), cpuset: CPUList([2, 3])).cpus == CPUList([0, 1]))
        #expect(CPUBudget.usable(online: online, affinity: CPUList([9]), cpuset: CPUList([2])).cpus == online)
        #expect(CPUBudget.usable(online: online, affinity: CPUList([1, 2]), cpuset: CPUList([2, 3])).cpus == CPUList([2]))
        #expect(CPUBudget.usable(online: online, affinity: CPUList([1, 2]), cpuset: CPUList([2, 3])).fallback == nil)
        #expect(CPUBudget.usable(online: online, affinity: CPUList([0, 1]), cpuset: CPUList([2, 3])).fallback != nil)
    }

    @Test("an unknown node is an error whatever the job's size or thread count")
    func unknownNodeWhateverTheSize() {
        let nodes = SystemLimits.current().nodeIDs
        let unknown = (nodes.max() ?? 0) + 7
        for (range, maxThreads) in [(0..<1, nil), (0..<1000, 1), (0..<1000, nil), (0..<0, nil)] as [(Range<Int>, Int?)] {
            #expect(throws: KTask.Error.unknownNode(unknown, available: nodes), "\(range), maxThreads \(String(describing: maxThreads))") {
                try KTask.run(range, options: KTask.Options(maxThreads: maxThreads, placement: .nodes([unknown]))) { _ in }
            }
        }
        #expect(throws: KTask.Error.unknownNode(unknown, available: nodes)) {
            try KTask.run(perNode: [KTask.NodeRange(node: nodes[0], range: 0..<100), KTask.NodeRange(node: unknown, range: 0..<0)]) { _ in }
        }
    }

    /// Runs a job on a fresh pool from synchronous code inside the current task.
    static func runBlocking(pool: KTask.Pool, calls: Locked<Int>) throws {
        try KTask.run(0..<1000, options: KTask.Options(maxThreads: 2, pool: pool)) { _ in calls.withLock { $0 += 1 } }
    }

    @Test("the blocking API in an already-cancelled task runs no chunk and wakes no helper, as a cancelled token")
    func cancelledTaskRunsNothing() async throws {
        let pool = try KTask.Pool(name: "kt-precx", maxBusyHelpers: 1, isolateHelpers: false)
        let calls = Locked<Int>(0)
        let task = Task.detached {
            withUnsafeCurrentTask { $0?.cancel() }
            try Self.runBlocking(pool: pool, calls: calls)
        }
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(calls.current == 0)
        #expect(pool.state.liveThreads == 0, "a helper was started for a job cancelled before it began")
    }

    @Test("a process that may start no thread warns once, not for every job; its jobs still run on the caller",
          .enabled(if: geteuid() == 0 && FileManager.default.fileExists(atPath: "/sys/fs/cgroup/pids/cgroup.procs"),
                   "needs root and the cgroup v1 pids controller to forbid new threads: skipped"))
    func threadStartWarnsOnce() async throws {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            // A pids cgroup of its own whose pids.max is the threads the process has: no thread starts.
            let group = "/sys/fs/cgroup/pids/ktask-test-\(getpid())"
            guard mkdir(group, 0o755) == 0 else { exit(10) }
            let threads = try String(contentsOfFile: "/proc/self/status", encoding: .utf8).split(separator: "\n")
                .first { $0.hasPrefix("Threads:") }.flatMap { Int($0.dropFirst("Threads:".count).trimmingCharacters(in: .whitespaces)) } ?? 1
            guard writeFile("\(group)/cgroup.procs", "\(getpid())"), writeFile("\(group)/pids.max", "\(threads)") else { exit(11) }
            let pool = try KTask.Pool(name: "kt-pids", maxBusyHelpers: 1, isolateHelpers: false)
            var allInline = true
            for _ in 0..<5 {
                let report = try runJob(0..<64, options: KTask.Options(maxThreads: 2, pool: pool)) { _ in }
                allInline = allInline && report.threadsUsed == 1
            }
            // exit() runs no defer: leave the group and remove it first.
            _ = writeFile("/sys/fs/cgroup/pids/cgroup.procs", "\(getpid())")
            rmdir(group)
            exit(allInline ? 0 : 12)
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.components(separatedBy: "could not start").count - 1 == 1, "\(stderr)")
    }

    @Test("huge idle timeouts and thread counts saturate instead of trapping")
    func noOverflowTraps() throws {
        let pool = try KTask.Pool(name: "kt-huge", maxBusyHelpers: 1, idleTimeout: .seconds(10_000_000_000), isolateHelpers: false)
        #expect(pool.idleTimeoutNanoseconds == Int64.max)
        try KTask.run(0..<8, options: KTask.Options(maxThreads: 2, pool: pool)) { _ in usleep(1_000) }
        #expect(try KTask.plannedChunkSize(items: 100, minChunk: 1, align: 1, threads: Int.max / 2) == 1)
        #expect(try KTask.plannedChunkSize(items: Int.max, minChunk: 3, align: 8, threads: Int.max) == 8)
    }
}

#if canImport(Glibc)
import Glibc
#endif
