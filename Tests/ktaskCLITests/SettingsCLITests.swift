import Foundation
import Testing

/// The tool refuses every malformed variable, never make's or the desktop session's, and shows them all.
@Suite("ktask: environment variables")
struct SettingsCLITests {
    @Test("a malformed variable is refused with exit 2, naming it, its value and what is allowed", arguments: [
        ("KTASK_SLOTS", "sometimes", "off (or 0)"),
        ("KTASK_NO_HELPER_CGROUP", "maybe", "0, false, no, off"),
        ("KTASK_SYSFS_ROOT", "snapshot", "an absolute folder"),
        ("KTASK_NODE_MAX_THREADS", "-1", "helper threads per node"),
        ("KTASK_MAX_THREADS", "lots", "the calling thread counts as one"),
    ])
    func refused(name: String, value: String, allowed: String) throws {
        let result = try runKTask(["info"], environment: [name: value])
        #expect(result.status == 2, "\(result.stdout)")
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.hasPrefix("ktask: \(name)=\"\(value)\" is not valid; allowed: ") && result.stderr.contains(allowed),
                "\(result.stderr)")
    }

    @Test("every malformed variable is named, in one line")
    func refusedTogether() throws {
        let result = try runKTask(["bench", "--workload", "compute", "--size", "1M", "--runs", "1"],
                                  environment: ["KTASK_SLOTS": "relative/folder", "KTASK_MAX_THREADS": "two"])
        #expect(result.status == 2)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("KTASK_SLOTS=\"relative/folder\"") && lines[0].contains("KTASK_MAX_THREADS=\"two\""),
                "\(result.stderr)")
    }

    @Test("never refused: a MAKEFLAGS jobserver ktask cannot read, a relative XDG folder (notes in info)")
    func notesNotRefusals() throws {
        let result = try runKTask(["info"], environment: ["MAKEFLAGS": " -j2 --jobserver-auth=sem:build", "XDG_RUNTIME_DIR": "run",
                                                          "XDG_CONFIG_HOME": "config"])
        #expect(result.status == 0, "\(result.stderr)")
        let settings = result.stdout.split(separator: "\n").filter { $0.hasPrefix("  ") }
        #expect(settings.contains { $0.hasPrefix("  MAKEFLAGS=\" -j2 --jobserver-auth=sem:build\" (environment): no make jobserver; note: "
                                                  + "--jobserver-auth=sem:build is not a form ktask reads") }, "\(result.stdout)")
        #expect(settings.contains { $0.hasPrefix("  XDG_RUNTIME_DIR=\"run\" (environment): no user slot folder; note: not an absolute path") },
                "\(result.stdout)")
        #expect(result.stdout.contains("make jobserver: none: MAKEFLAGS' --jobserver-auth=sem:build"), "\(result.stdout)")
    }

    @Test("info lists every variable: its value or unset, environment or default, and what ktask made of it")
    func infoListsSettings() throws {
        let names = ["KTASK_MAX_THREADS", "KTASK_NODE_MAX_THREADS", "KTASK_SLOTS", "KTASK_PROFILE", "KTASK_NO_HELPER_CGROUP", "MAKEFLAGS",
                     "KTASK_SYSFS_ROOT", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "HOME"]
        // Unset for certain: env -u.
        let ktask = try ktaskExecutable()
        let table = try runCommand("/usr/bin/env", ["-u", "KTASK_SYSFS_ROOT", "KTASK_MAX_THREADS=3", ktask, "info"])
        #expect(table.status == 0, "\(table.stderr)")
        let lines = table.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains("settings (read once per process):"), "\(table.stdout)")
        for name in names { #expect(lines.contains { $0.hasPrefix("  \(name)=") || $0.hasPrefix("  \(name) unset") }, "\(name): \(table.stdout)") }
        #expect(lines.contains("  KTASK_MAX_THREADS=\"3\" (environment): at most 3 thread(s) per job, the caller included"), "\(table.stdout)")
        #expect(lines.contains("  KTASK_SYSFS_ROOT unset (default): ktask info reads sysfs and procfs under /"), "\(table.stdout)")

        let json = try runCommand("/usr/bin/env", ["-u", "KTASK_SYSFS_ROOT", "KTASK_MAX_THREADS=3", ktask, "info", "--format", "json"])
        let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json.stdout)")
        let settings = try #require(document["settings"] as? [[String: Any]], "\(json.stdout)")
        #expect(settings.compactMap { $0["name"] as? String } == names)
        let maxThreads = try #require(settings.first { $0["name"] as? String == "KTASK_MAX_THREADS" })
        #expect(maxThreads["value"] as? String == "3" && maxThreads["source"] as? String == "environment")
        #expect((maxThreads["meaning"] as? String)?.hasPrefix("at most 3 thread(s)") == true && maxThreads["note"] is NSNull)
        let root = try #require(settings.first { $0["name"] as? String == "KTASK_SYSFS_ROOT" })
        #expect(root["value"] is NSNull && root["source"] as? String == "default")
    }

    @Test("KTASK_SYSFS_ROOT is info's default root")
    func sysfsRoot() throws {
        let folder = try makeScratchFolder("sysfs-root")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let result = try runKTask(["info", "--format", "json"], environment: ["KTASK_SYSFS_ROOT": folder])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
        #expect(document["root"] as? String == folder)
    }
}
