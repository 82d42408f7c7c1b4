import Foundation
import Testing

@Suite("ktask tune and the profile in ktask info")
struct TuneCLITests {
    struct TuneDocument: Decodable {
        struct Point: Decodable { let threads: Int; let items_per_s: Double }
        let work_class: String
        let knee: Int
        let points: [Point]
        let saved_to: String?
    }

    struct InfoDocument: Decodable {
        struct Profile: Decodable { let path: String; let classes: [String: Int] }
        let tuning_profile: Profile?
    }

    @Test("tune finds the knee of work capped at one thread, saves it, and info shows it")
    func tuneSavesKnee() throws {
        let folder = NSTemporaryDirectory() + "ktask-tune-cli-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/profile.json"
        let result = try runKTask(["tune", "--workload", "rate-limited", "--permits", "1", "--size", "600", "--runs", "2",
                                   "--work-class", "device-queue", "--output", path, "--format", "json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try JSONDecoder().decode(TuneDocument.self, from: Data(result.stdout.utf8))
        #expect(document.knee == 1, "\(document.points.map(\.items_per_s))")
        #expect(document.work_class == "device-queue")
        #expect(document.saved_to == path)
        let info = try runKTask(["info", "--format", "json"], environment: ["KTASK_PROFILE": path])
        #expect(info.status == 0, "\(info.stderr)")
        let machine = try JSONDecoder().decode(InfoDocument.self, from: Data(info.stdout.utf8))
        #expect(machine.tuning_profile?.path == path)
        #expect(machine.tuning_profile?.classes == ["device-queue": 1])
        // A second class is added beside the first.
        let second = try runKTask(["tune", "--workload", "rate-limited", "--size", "200", "--runs", "1", "--max-threads", "1",
                                   "--output", path])
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stdout.contains("knee: 1 thread(s) for class \"rate-limited\""))
        let again = try JSONDecoder().decode(InfoDocument.self, from: Data(try runKTask(["info", "--format", "json"],
                                                                                        environment: ["KTASK_PROFILE": path]).stdout.utf8))
        #expect(again.tuning_profile?.classes == ["device-queue": 1, "rate-limited": 1])
    }

    @Test("a broken profile: info and tune fail with a message naming the file")
    func brokenProfile() throws {
        let path = NSTemporaryDirectory() + "ktask-broken-profile-\(getpid()).json"
        try "{".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let info = try runKTask(["info"], environment: ["KTASK_PROFILE": path])
        #expect(info.status == 2, "a setting the user gave: a usage error")
        #expect(info.stderr.contains(path) && info.stderr.contains("ktask tune"), "\(info.stderr)")
        let tune = try runKTask(["tune", "--workload", "rate-limited", "--size", "100", "--runs", "1", "--output", path])
        #expect(tune.status == 2)
        #expect(tune.stderr.contains(path))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "{", "the broken file is left as it was")
    }

    @Test("bad tune flags are usage errors", arguments: [
        ["tune", "--min-gain", "2"], ["tune", "--runs", "0"], ["tune", "--max-threads", "0"], ["tune", "--max-threads", "100000"],
        ["tune", "--permits", "0"], ["tune", "--work-class", ""],
    ])
    func badFlags(arguments: [String]) throws {
        let result = try runKTask(arguments + ["--output", "/nonexistent/never-written.json"])
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }
}
