import Foundation
import Testing
@testable import KTask
import KTaskWorkloads

@Suite("Tuning: the knee rule, the profile file, the thread cap per class of work", .serialized)
struct TuningTests {
    @Test("the knee is the last thread count before a thread adds less than the minimum gain")
    func kneeRule() {
        #expect(KTask.TuningProfile.knee(throughput: [], minimumGain: 0.1) == 1)
        #expect(KTask.TuningProfile.knee(throughput: [100], minimumGain: 0.1) == 1)
        #expect(KTask.TuningProfile.knee(throughput: [100, 200, 300, 400], minimumGain: 0.1) == 4)
        #expect(KTask.TuningProfile.knee(throughput: [100, 190, 250, 255], minimumGain: 0.1) == 3)
        #expect(KTask.TuningProfile.knee(throughput: [100, 95, 300], minimumGain: 0.1) == 1, "a loss stops the curve")
        #expect(KTask.TuningProfile.knee(throughput: [100, 105], minimumGain: 0) == 2)
    }

    func temporaryPath(_ name: String) -> String {
        NSTemporaryDirectory() + "ktask-tuning-\(getpid())-\(name)/profile.json"
    }

    @Test("a profile saves (creating its folder) and loads back the same")
    func roundTrip() throws {
        let path = temporaryPath("roundtrip")
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let profile = KTask.TuningProfile(classes: ["init": .init(maxThreads: 3, minimumGain: 0.1, cpuBudget: 16, itemsPerSecond: [1, 1.9, 2.5])])
        try profile.save(to: path)
        #expect(try KTask.TuningProfile.load(from: path) == profile)
        // snake_case like every JSON ktask writes.
        let text = try String(contentsOfFile: path, encoding: .utf8)
        for key in ["max_threads", "minimum_gain", "cpu_budget", "items_per_second"] { #expect(text.contains("\"\(key)\""), "\(text)") }
        #expect(!text.contains("maxThreads"))
    }

    @Test("a profile written before 0.3 (camelCase keys) still loads")
    func camelCaseProfile() throws {
        let path = temporaryPath("camel")
        let folder = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try #"{"version": 1, "classes": {"bufferPool": {"maxThreads": 3, "minimumGain": 0.1, "cpuBudget": 8, "itemsPerSecond": [1, 1.8, 2.4]}}}"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        let profile = try KTask.TuningProfile.load(from: path)
        #expect(profile.classes == ["bufferPool": .init(maxThreads: 3, minimumGain: 0.1, cpuBudget: 8, itemsPerSecond: [1, 1.8, 2.4])])
    }

    @Test("unreadable, malformed, other-version and out-of-range profiles are typed errors naming the file")
    func badProfiles() throws {
        let path = temporaryPath("bad")
        let folder = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect { try KTask.TuningProfile.load(from: path) } throws: { error in
            guard case KTask.Error.invalidProfile(path, let reason) = error else { return false }
            return reason.contains("cannot be read")
        }
        for (text, expected) in [("not json", "not a ktask profile"), (#"{"version": 9, "classes": {}}"#, "version 9"),
                                 (#"{"version": 1, "classes": {"x": {"maxThreads": 0, "minimumGain": 0.1, "cpuBudget": 2, "itemsPerSecond": []}}}"#, "max_threads >= 1")] {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            #expect { try KTask.TuningProfile.load(from: path) } throws: { error in
                guard case KTask.Error.invalidProfile(path, let reason) = error else { return false }
                return reason.contains(expected)
            }
        }
    }

    @Test("the profile's path: KTASK_PROFILE, else XDG_CONFIG_HOME, else HOME")
    func defaultPath() {
        #expect(KTask.TuningProfile.defaultPath(environment: ["KTASK_PROFILE": "/p.json", "HOME": "/h"]) == "/p.json")
        #expect(KTask.TuningProfile.defaultPath(environment: ["XDG_CONFIG_HOME": "/c", "HOME": "/h"]) == "/c/ktask/profile.json")
        #expect(KTask.TuningProfile.defaultPath(environment: ["XDG_CONFIG_HOME": "relative", "HOME": "/h"]) == "/h/.config/ktask/profile.json")
        #expect(KTask.TuningProfile.defaultPath(environment: [:]) == nil)
    }

    @Test("a job naming a measured class gets at most its threads; other classes are not capped", .enabled(if: CPUBudget.read().budget >= 2))
    func classCap() async throws {
        // In a child process: KTASK_PROFILE is process-wide. (Exit-test bodies capture nothing.)
        await #expect(processExitsWith: .success) {
            let path = NSTemporaryDirectory() + "ktask-tuning-cap-\(getpid()).json"
            defer { unlink(path) }
            // exit() skips defer: every failure removes the profile first.
            func fail(_ code: Int32) -> Never { unlink(path); exit(code) }
            try! KTask.TuningProfile(classes: ["bandwidth": .init(maxThreads: 1, minimumGain: 0.1, cpuBudget: 2, itemsPerSecond: [1, 1])])
                .save(to: path)
            setenv(KTask.TuningProfile.environmentVariable, path, 1)
            let pool = try! KTask.Pool(name: "kt-class", maxBusyHelpers: 1, isolateHelpers: false)
            let capped = try! KTask.run(0..<1024, options: KTask.Options(pool: pool, workClass: "bandwidth")) { _ in usleep(100) }
            let free = try! KTask.run(0..<1024, options: KTask.Options(pool: pool, workClass: "other")) { _ in usleep(100) }
            // The other class is planned on 2 threads (under load the nice-19 helper may still find its chunks gone).
            guard capped.ranInline, capped.threadLimit == .tuningProfile, !free.ranInline, free.threadLimit != .tuningProfile else { fail(1) }
            // A profile that goes bad under a running program is seen at the next job, as a typed error.
            try! "garbage".write(toFile: path, atomically: true, encoding: .utf8)
            do {
                _ = try KTask.run(0..<1024, options: KTask.Options(pool: pool, workClass: "bandwidth")) { _ in }
                fail(2)
            } catch KTask.Error.invalidProfile(path, _) {
            } catch { fail(3) }
        }
    }

    @Test("an empty class name is a typed error")
    func emptyClass() {
        #expect(throws: KTask.Error.emptyWorkClass) { try KTask.run(0..<10, options: KTask.Options(workClass: "")) { _ in } }
    }

    @Test("tune finds the knee of work capped at k threads", arguments: [1, 2])
    func tuneFindsKnee(permits: Int) throws {
        let budget = CPUBudget.read().budget
        try #require(budget >= 2, "needs 2 usable CPUs to see a knee at 2 (this process has \(budget))")
        let pool = try KTask.Pool(name: "kt-tune", maxBusyHelpers: 1, isolateHelpers: false)
        // Items of 1 ms and a 25% bar: other suites run meanwhile, and the wake-up delays they cause
        // (about 0.2 ms per item here) once made a 1-permit job look 11% faster on 2 threads.
        let runner = TuneRunner(workload: try RateLimitedWorkload(items: 300, permits: permits, itemDuration: .milliseconds(1)),
                                workClass: "limited", maxThreads: 2, runs: 5, minimumGain: 0.25,
                                options: KTask.Options(helperPriority: .inheritCaller, pool: pool))
        let result = try runner.run()
        #expect(result.knee == permits, "items/s \(result.points.map(\.itemsPerSecond))")
        #expect(result.profileEntry.maxThreads == permits)
        #expect(result.points.map(\.threads) == [1, 2])
    }
}
