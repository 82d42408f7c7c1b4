import CKTaskShims
import Foundation
import Synchronization
import Testing
@testable import KTask

@Suite("Helper pool: cap, parking, retirement, priority, names", .serialized)
struct HelperPoolTests {
    @Test("a thread id kept per thread is read again in a child forked without exec")
    func threadIDAfterFork() {
        let parent = CKTask_gettid()
        #expect(parent == CKTask_gettid(), "kept")
        let child = fork()
        if child == 0 {
            // The child's only thread: its id is the child's pid, not the forking thread's id in the parent.
            _exit(CKTask_gettid() == getpid() ? 0 : 1)
        }
        var status: Int32 = 0
        waitpid(child, &status, 0)
        #expect(child > 0 && status == 0, "the child read its parent's thread id")
    }

    @Test("the cap on busy helpers holds under 32 concurrent jobs")
    func capHoldsUnderConcurrentJobs() throws {
        let cap = 3
        let pool = try KTask.Pool(name: "kt-cap", maxBusyHelpers: cap, isolateHelpers: false)
        let helpersInChunks = Atomic<Int>(0)
        let mostHelpersInChunks = Atomic<Int>(0)
        let mostBusySeen = Atomic<Int>(0)
        let failures = Locked<[String]>([])
        onThreads(32) { _ in
            let callerTID = ThreadSnapshot.currentTID
            let chunks = Locked<[Range<Int>]>([])
            do {
                // Helpers at the callers' priority: at nice 19 they may get no CPU at all while other suites
                // run beside this one, and the cap would go untested.
                try KTask.run(0..<64, options: KTask.Options(maxThreads: 4, helperPriority: .inheritCaller, pool: pool)) { chunk in
                    chunks.withLock { $0.append(chunk) }
                    let onHelper = ThreadSnapshot.currentTID != callerTID
                    if onHelper {
                        let now = helpersInChunks.add(1, ordering: .relaxed).newValue
                        mostHelpersInChunks.max(now, ordering: .relaxed)
                    }
                    mostBusySeen.max(pool.state.busyHelpers, ordering: .relaxed)
                    usleep(500)
                    if onHelper { helpersInChunks.subtract(1, ordering: .relaxed) }
                }
                let problems = tilingProblems(chunks.current, range: 0..<64, align: 1, minChunk: 1)
                failures.withLock { $0 += problems }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        #expect(failures.current.isEmpty, "\(failures.current.prefix(3))")
        #expect(mostHelpersInChunks.load(ordering: .relaxed) <= cap)
        #expect(mostBusySeen.load(ordering: .relaxed) <= cap)
        #expect(mostHelpersInChunks.load(ordering: .relaxed) >= 1, "no helper ever ran: the test proves nothing")
        // Helpers are back in the pool before their jobs return.
        #expect(pool.state.busyHelpers == 0)
        #expect(pool.state.idleThreads == pool.state.liveThreads)
    }

    @Test("helpers run at nice 19 and are named NAME/N; the caller's nice is untouched")
    func helpersAtLowestPriorityAndNamed() throws {
        let pool = try KTask.Pool(name: "kt-nice", maxBusyHelpers: 1, isolateHelpers: false)
        let callerTID = ThreadSnapshot.currentTID
        let callerNiceBefore = try #require(ThreadSnapshot.read(tid: callerTID)).nice
        let seenOnHelpers = Locked<[ThreadSnapshot]>([])
        // A nice-19 helper gets no CPU while other processes keep both busy: a few jobs, until one joins.
        for _ in 0..<10 where seenOnHelpers.current.isEmpty {
            try KTask.run(0..<8, options: KTask.Options(maxThreads: 2, pool: pool)) { _ in
                let tid = ThreadSnapshot.currentTID
                if tid != callerTID, let me = ThreadSnapshot.read(tid: tid) { seenOnHelpers.withLock { $0.append(me) } }
                usleep(5_000)
            }
        }
        let helpers = seenOnHelpers.current
        try #require(!helpers.isEmpty, "no chunk ran on a helper")
        for helper in helpers {
            #expect(helper.nice == 19)
            #expect(helper.name.hasPrefix("kt-nice/"))
        }
        #expect(ThreadSnapshot.read(tid: callerTID)?.nice == callerNiceBefore)
        // Parked, the helper stays at 19.
        for parked in ThreadSnapshot.all(namedWithPrefix: "kt-nice/") { #expect(parked.nice == 19) }
    }

    @Test("where the process may, helpers sit in an idle child cgroup; the caller stays in its own")
    func helpersInIdleCgroup() throws {
        let isolation = HelperIsolation.current
        let pool = try KTask.Pool(name: "kt-cg", maxBusyHelpers: 1)
        let callerTID = ThreadSnapshot.currentTID
        // An idle-cgroup helper runs only on idle CPU, and other tests keep the CPUs busy (under a sanitizer,
        // or CI's parallel suites, for tens of seconds): the caller holds its first chunk until a helper has
        // run one, and each helper notes its cgroup while it works.
        let noted = Mutex<Set<String>>([])
        try KTask.run(0..<8, options: KTask.Options(maxThreads: 2, pool: pool)) { _ in
            let tid = ThreadSnapshot.currentTID
            if tid == callerTID {
                for _ in 0..<600 where noted.withLock({ $0.isEmpty }) { usleep(50_000) }
            } else if let group = cpuCgroup(tid) {
                noted.withLock { _ = $0.insert(group) }
            }
            usleep(2_000)
        }
        let helperGroups = noted.withLock { $0 }
        switch isolation.kind {
        case .idleCgroup, .lowWeightCgroup:
            try #require(!helperGroups.isEmpty, "no helper thread started")
            #expect(helperGroups.allSatisfy { $0.hasSuffix("/\(HelperIsolation.childName)") })
            #expect(cpuCgroup(callerTID).map { !$0.hasSuffix(HelperIsolation.childName) } ?? true)
            if isolation.kind == .idleCgroup {
                let idle = try String(contentsOfFile: "\(isolation.detail)/cpu.idle", encoding: .utf8)
                #expect(idle.trimmingCharacters(in: .whitespacesAndNewlines) == "1")
            }
        case .niceOnly:
            #expect(!isolation.detail.isEmpty, "nice only must say why")
        }
    }

    @Test("helper priority can be a given nice value or the caller's")
    func helperPriorityOptions() throws {
        let pool = try KTask.Pool(name: "kt-prio", maxBusyHelpers: 1, isolateHelpers: false)
        let callerTID = ThreadSnapshot.currentTID
        func helperNices(_ priority: KTask.HelperPriority) throws -> Set<Int> {
            let nices = Locked<Set<Int>>([])
            try KTask.run(0..<8, options: KTask.Options(maxThreads: 2, helperPriority: priority, pool: pool)) { _ in
                let tid = ThreadSnapshot.currentTID
                if tid != callerTID, let me = ThreadSnapshot.read(tid: tid) { nices.withLock { _ = $0.insert(me.nice) } }
                usleep(5_000)
            }
            return nices.current
        }
        #expect(try helperNices(.nice(10)) == [10])
        #expect(try helperNices(.lowest) == [19])
        let callerNice = try #require(ThreadSnapshot.read(tid: callerTID)).nice
        // Back from 19 to the caller's nice needs privilege (CI runs as root).
        if getuid() == 0 { #expect(try helperNices(.inheritCaller) == [callerNice]) }
    }

    @Test("a waiting caller lends its priority to an unfinished helper, which returns to nice 19 afterwards",
          .enabled(if: KTask.StarvationGuard.mayRaisePriority(to: ThreadPriority.currentThreadNice()),
                   "needs root, CAP_SYS_NICE or RLIMIT_NICE to raise a helper's priority: skipped"))
    func priorityBoost() throws {
        let pool = try KTask.Pool(name: "kt-boost", maxBusyHelpers: 1, isolateHelpers: false)
        let callerTID = ThreadSnapshot.currentTID
        let callerNice = try #require(ThreadSnapshot.read(tid: callerTID)).nice
        let nicesSeenByHelper = Locked<[Int]>([])
        let report = try KTask.run(0..<8, options: KTask.Options(maxThreads: 2, starvationGuard: .priorityBoost, pool: pool)) { _ in
            let tid = ThreadSnapshot.currentTID
            guard tid != callerTID else { usleep(5_000); return }
            // The helper's chunk outlasts the caller's share: it sees its nice change while it runs.
            let start = ThreadSnapshot.read(tid: tid)?.nice ?? -100
            var now = start
            for _ in 0..<400 where now == start {
                usleep(5_000)
                now = ThreadSnapshot.read(tid: tid)?.nice ?? -100
            }
            nicesSeenByHelper.withLock { $0 += [start, now] }
        }
        #expect(report.starvationGuard == .priorityBoost)
        try #require(report.threadsUsed == 2, "the helper never joined")
        #expect(report.boostedHelpers >= 1)
        #expect(nicesSeenByHelper.current.first == 19)
        #expect(nicesSeenByHelper.current.contains(callerNice))
        // Back in the pool, the helper is at 19 again (given back right after the job heard it was done);
        // the caller's nice never changed.
        var parked = ThreadSnapshot.all(namedWithPrefix: "kt-boost/")
        for _ in 0..<100 where !parked.allSatisfy({ $0.nice == 19 }) {
            usleep(1_000)
            parked = ThreadSnapshot.all(namedWithPrefix: "kt-boost/")
        }
        #expect(!parked.isEmpty && parked.allSatisfy { $0.nice == 19 })
        #expect(ThreadSnapshot.read(tid: callerTID)?.nice == callerNice)
    }

    @Test("with smaller helper chunks, helpers claim grains of about 1/64 chunk and the caller whole chunks")
    func smallerHelperChunks() throws {
        let pool = try KTask.Pool(name: "kt-small", maxBusyHelpers: 1, isolateHelpers: false)
        let callerTID = ThreadSnapshot.currentTID
        let sizes = Locked<(caller: Set<Int>, helper: Set<Int>)>(([], []))
        let chunks = Locked<[Range<Int>]>([])
        let report = try KTask.run(0..<1_048_576, options: KTask.Options(maxThreads: 2, starvationGuard: .smallerHelperChunks, pool: pool)) { chunk in
            chunks.withLock { $0.append(chunk) }
            if ThreadSnapshot.currentTID == callerTID { sizes.withLock { _ = $0.caller.insert(chunk.count) } }
            else { sizes.withLock { _ = $0.helper.insert(chunk.count) } }
            usleep(100)
        }
        #expect(report.starvationGuard == .smallerHelperChunks)
        #expect(tilingProblems(chunks.current, range: 0..<1_048_576, align: 1, minChunk: 1).isEmpty)
        #expect(sizes.current.caller.max() == report.chunkSize)
        // A helper that joined late may only have had a shorter piece at the range's end.
        if let helperSize = sizes.current.helper.max() { #expect(helperSize <= report.chunkSize / 64) }
    }

    @Test("idle helpers are parked: asleep and using no CPU")
    func idleHelpersAreParked() throws {
        let pool = try KTask.Pool(name: "kt-idle", maxBusyHelpers: 1, idleTimeout: .seconds(60), isolateHelpers: false)
        try KTask.run(0..<8, options: KTask.Options(maxThreads: 2, pool: pool)) { _ in usleep(2_000) }
        let before = ThreadSnapshot.all(namedWithPrefix: "kt-idle/")
        try #require(!before.isEmpty, "no helper thread was started")
        Thread.sleep(forTimeInterval: 0.5)
        for helper in before {
            let after = try #require(ThreadSnapshot.read(tid: helper.tid))
            #expect(after.state == "S")
            #expect(after.cpuTicks == helper.cpuTicks, "an idle helper used CPU")
        }
        #expect(pool.state.idleThreads == before.count)
    }

    @Test("helpers idle past the timeout exit")
    func idleHelpersRetire() throws {
        let pool = try KTask.Pool(name: "kt-retire", maxBusyHelpers: 1, idleTimeout: .milliseconds(100), isolateHelpers: false)
        try KTask.run(0..<8, options: KTask.Options(maxThreads: 2, pool: pool)) { _ in usleep(2_000) }
        #expect(pool.state.liveThreads == 1)
        var waited = 0.0
        while (pool.state.liveThreads > 0 || !ThreadSnapshot.all(namedWithPrefix: "kt-retire/").isEmpty) && waited < 5 {
            Thread.sleep(forTimeInterval: 0.05)
            waited += 0.05
        }
        #expect(pool.state.liveThreads == 0)
        #expect(ThreadSnapshot.all(namedWithPrefix: "kt-retire/").isEmpty)
        // A later job starts a fresh helper.
        let report = try KTask.run(0..<8, options: KTask.Options(maxThreads: 2, pool: pool)) { _ in usleep(2_000) }
        #expect(report.threadsUsed == 2)
    }

    @Test("a parked helper is reused rather than a new thread started")
    func helpersAreReused() throws {
        let pool = try KTask.Pool(name: "kt-reuse", maxBusyHelpers: 1, isolateHelpers: false)
        for _ in 0..<20 {
            try KTask.run(0..<8, options: KTask.Options(maxThreads: 2, pool: pool)) { _ in usleep(200) }
        }
        #expect(pool.state.liveThreads == 1)
        #expect(ThreadSnapshot.all(namedWithPrefix: "kt-reuse/").count == 1)
    }
}

@Suite("The helpers' idle cgroup: created when needed, gone when the last process exits", .serialized)
struct IdleCgroupLifecycleTests {
    static let cpuHierarchy = "/sys/fs/cgroup/cpu"

    @Test("planning writes nothing; the first helper creates the child cgroup; it is removed when the process exits",
          .enabled(if: geteuid() == 0 && FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cpu/cgroup.procs"),
                   "needs root and the cgroup v1 cpu controller: skipped"))
    func lifecycle() async throws {
        let group = "\(Self.cpuHierarchy)/ktask-life-\(getpid())"
        #expect(mkdir(group, 0o755) == 0)
        defer { rmdir(group) }
        await #expect(processExitsWith: .success) {
            let group = "/sys/fs/cgroup/cpu/ktask-life-\(getppid())"
            guard writeFile("\(group)/cgroup.procs", "\(getpid())") else { exit(10) }
            let child = "\(group)/\(HelperIsolation.childName)"
            // Reading what would be used creates nothing.
            guard HelperIsolation.planned.detail == child, access(child, F_OK) != 0 else { exit(11) }
            let pool = try KTask.Pool(name: "kt-life", maxBusyHelpers: 1)
            try runJob(0..<8, options: KTask.Options(maxThreads: 2, pool: pool)) { _ in usleep(2_000) }
            // The helper thread creates it when it starts; on a busy machine that can come after the job.
            var tasks = ""
            for _ in 0..<500 where tasks.isEmpty {
                tasks = (try? String(contentsOfFile: "\(child)/tasks", encoding: .utf8)) ?? ""
                usleep(10_000)
            }
            guard !tasks.isEmpty else { exit(13) }
            exit(0)  // atexit: threads back, child removed
        }
        #expect(access("\(group)/\(HelperIsolation.childName)", F_OK) != 0, "the idle cgroup outlived the process")
    }

    @Test("a child cgroup another process removed at its exit is made again for the next helper (not run outside it)",
          .enabled(if: geteuid() == 0 && FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cpu/cgroup.procs"),
                   "needs root and the cgroup v1 cpu controller: skipped"))
    func recreatedAfterRemoval() async throws {
        let group = "\(Self.cpuHierarchy)/ktask-again-\(getpid())"
        #expect(mkdir(group, 0o755) == 0)
        defer { rmdir(group) }
        await #expect(processExitsWith: .success) {
            let group = "/sys/fs/cgroup/cpu/ktask-again-\(getppid())"
            guard writeFile("\(group)/cgroup.procs", "\(getpid())") else { exit(10) }
            let child = "\(group)/\(HelperIsolation.childName)"
            // Helpers retire 100 ms after their job, leaving the child empty.
            let pool = try KTask.Pool(name: "kt-again", maxBusyHelpers: 1, idleTimeout: .milliseconds(100))
            /// Runs a job whose caller waits for a helper to run a chunk; returns the helper's cpu cgroup.
            func helperGroup() throws -> String? {
                let caller = ThreadSnapshot.currentTID
                let seen = Mutex<String?>(nil)
                try runJob(0..<8, options: KTask.Options(maxThreads: 2, pool: pool)) { _ in
                    let tid = ThreadSnapshot.currentTID
                    if tid == caller {
                        for _ in 0..<600 where seen.withLock({ $0 == nil }) { usleep(50_000) }
                    } else if let group = cpuCgroup(tid) {
                        seen.withLock { $0 = group }
                    }
                }
                return seen.withLock { $0 }
            }
            guard try helperGroup()?.hasSuffix("/\(HelperIsolation.childName)") == true else { exit(11) }
            // Another ktask process of this cgroup exits and removes the (now empty) child.
            var removed = false
            for _ in 0..<300 where !removed {
                usleep(10_000)
                removed = rmdir(child) == 0
            }
            guard removed else { exit(12) }
            guard try helperGroup()?.hasSuffix("/\(HelperIsolation.childName)") == true else { exit(13) }
            exit(0)
        }
        #expect(access("\(group)/\(HelperIsolation.childName)", F_OK) != 0, "the idle cgroup outlived the process")
    }
}
