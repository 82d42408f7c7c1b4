import Foundation
import Testing
@testable import KTask

/// The one snapshot of the environment variables ktask reads: each parsed, malformed ones found.
@Suite("Settings: the environment, read once")
struct SettingsTests {
    /// The error a malformed variable gets, if any.
    func problem(_ name: String, _ value: String) -> KTask.Error? {
        Settings(environment: [name: value]).all.first { $0.name == name }?.problem
    }

    @Test("unset: every variable from its default, none malformed")
    func unset() {
        let settings = Settings(environment: [:])
        #expect(settings.all.map(\.name) == Settings.names)
        #expect(settings.all.allSatisfy { $0.raw == nil && $0.source == "default" && $0.problem == nil && $0.note == nil })
        #expect(settings.maxThreads.value == nil && settings.nodeMaxThreads.value == nil)
        #expect(settings.slots.value == .sharedFolder && !settings.noHelperCgroup.value)
        #expect(settings.makeflags.value == nil && settings.sysfsRoot.value == nil && settings.profile.value == nil)
        #expect(settings.problems.isEmpty)
    }

    @Test("only the variables ktask reads are kept")
    func onlyKnownNames() {
        #expect(Settings(environment: ["PATH": "/bin", "KTASK_SLOTS": "off"]).environment == ["KTASK_SLOTS": "off"])
    }

    @Test("KTASK_MAX_THREADS and KTASK_NODE_MAX_THREADS: whole numbers, 0 for no limit; malformed ones are ignored")
    func threadCaps() {
        let settings = Settings(environment: ["KTASK_MAX_THREADS": "4", "KTASK_NODE_MAX_THREADS": "0"])
        #expect(settings.maxThreads.value == HelperCap(maxBusyHelpers: 3, source: .environment))
        #expect(settings.maxThreads.summary.source == "environment" && settings.maxThreads.meaning.contains("at most 4 thread(s)"))
        #expect(settings.nodeMaxThreads.value == nil && settings.nodeMaxThreads.problem == nil)
        let malformed = Settings(environment: ["KTASK_MAX_THREADS": "lots", "KTASK_NODE_MAX_THREADS": "-1"])
        #expect(malformed.maxThreads.value == nil && malformed.nodeMaxThreads.value == nil, "ignored: as if unset")
        #expect(malformed.problems.map(\.description).count == 2)
        #expect(malformed.maxThreads.meaning.hasPrefix("ignored: no cap from the environment"))
    }

    @Test("KTASK_SLOTS: on, off, 0, empty or an absolute folder", arguments: [
        ("", Settings.SlotsChoice.sharedFolder), ("on", .sharedFolder), ("off", .off), ("0", .off), ("/srv/slots", .folder("/srv/slots")),
    ])
    func slots(text: String, expected: Settings.SlotsChoice) {
        let setting = Settings(environment: ["KTASK_SLOTS": text]).slots
        #expect(setting.value == expected && setting.problem == nil)
    }

    @Test("KTASK_SLOTS malformed: off, with the error that names what is allowed", arguments: ["sometimes", "slots", "OFF", "1"])
    func malformedSlots(text: String) {
        let setting = Settings(environment: ["KTASK_SLOTS": text]).slots
        #expect(setting.value == .off && setting.meaning == "ignored: helper slots off")
        #expect(setting.problem == .invalidEnvironmentVariable(
            name: "KTASK_SLOTS", value: text, allowed: "on (or empty), off (or 0), or an absolute folder for slots of a group's own"))
        #expect(throws: MachineSlots.Reason.self) { try MachineSlots.open(environment: ["KTASK_SLOTS": text], onlineCPUs: 4).get() }
    }

    @Test("KTASK_NO_HELPER_CGROUP: booleans in any case, empty is set; malformed keeps helpers out of the cgroup", arguments: [
        ("1", true), ("", true), ("TRUE", true), ("yes", true), ("on", true), ("0", false), ("false", false), ("No", false), ("off", false),
    ])
    func noHelperCgroup(text: String, expected: Bool) {
        let setting = Settings(environment: ["KTASK_NO_HELPER_CGROUP": text]).noHelperCgroup
        #expect(setting.value == expected && setting.problem == nil)
        if expected { #expect(HelperIsolation.plan(root: .live, noHelperCgroup: setting).kind == .niceOnly) }
    }

    @Test("KTASK_NO_HELPER_CGROUP malformed: nice only, as any value was before")
    func malformedNoHelperCgroup() {
        let setting = Settings(environment: ["KTASK_NO_HELPER_CGROUP": "maybe"]).noHelperCgroup
        #expect(setting.value && setting.problem != nil)
        #expect(HelperIsolation.plan(root: .live, noHelperCgroup: setting).detail == "KTASK_NO_HELPER_CGROUP=maybe")
    }

    @Test("KTASK_SYSFS_ROOT: an absolute folder; empty is unset; a relative one is malformed")
    func sysfsRoot() {
        #expect(Settings(environment: ["KTASK_SYSFS_ROOT": "/snap"]).sysfsRoot.value == "/snap")
        #expect(Settings(environment: ["KTASK_SYSFS_ROOT": ""]).sysfsRoot.value == nil)
        #expect(problem("KTASK_SYSFS_ROOT", "snap") == .invalidEnvironmentVariable(
            name: "KTASK_SYSFS_ROOT", value: "snap", allowed: "an absolute folder holding sys/ and proc/ (a machine snapshot)"))
    }

    @Test("MAKEFLAGS is never malformed: a form ktask cannot read is a note, and no jobserver", arguments: [
        " -j2 --jobserver-auth=sem:ktask", " -j2 --jobserver-auth=fifo:", " --jobserver-auth=3",
    ])
    func makeflagsNote(text: String) {
        let setting = Settings(environment: ["MAKEFLAGS": text]).makeflags
        #expect(setting.value == nil && setting.problem == nil)
        #expect(setting.note?.contains("is not a form ktask reads") == true, "\(setting.note ?? "no note")")
    }

    @Test("MAKEFLAGS naming a jobserver, none, or make's negative descriptors: no note")
    func makeflags() {
        #expect(Settings(environment: ["MAKEFLAGS": " -j2 --jobserver-auth=fifo:/tmp/GMfifo1"]).makeflags.value == .fifo("/tmp/GMfifo1"))
        for text in [" -j2 --jobserver-auth=97,98", "-j4", " -j --jobserver-auth=-2,-2"] {
            #expect(Settings(environment: ["MAKEFLAGS": text]).makeflags.note == nil, "\(text)")
        }
    }

    @Test("XDG_RUNTIME_DIR and XDG_CONFIG_HOME: a relative one is ignored with a note, never malformed")
    func xdg() {
        let settings = Settings(environment: ["XDG_RUNTIME_DIR": "run/user", "XDG_CONFIG_HOME": "config", "HOME": "/h"])
        #expect(settings.runtimeDirectory.value == nil && settings.configHome.value == nil && settings.problems.isEmpty)
        #expect(settings.runtimeDirectory.note?.contains("not an absolute path") == true)
        #expect(KTask.TuningProfile.defaultPath(settings) == "/h/.config/ktask/profile.json")
        #expect(Settings(environment: ["XDG_RUNTIME_DIR": "/run/user/1"]).runtimeDirectory.value == "/run/user/1")
    }

    @Test("KTASK_PROFILE: any path, empty is unset, never malformed")
    func profile() {
        #expect(Settings(environment: ["KTASK_PROFILE": "/p.json"]).profile.value == "/p.json")
        #expect(Settings(environment: ["KTASK_PROFILE": ""]).profile.value == nil)
        let relative = Settings(environment: ["KTASK_PROFILE": "p.json"]).profile
        #expect(relative.value == "p.json" && relative.problem == nil && relative.note == "relative to the working folder")
    }

    @Test("every malformed variable is one warning for the process, to the first job's logger; the jobs run with slots off")
    func oneWarningForAll() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            setenv("KTASK_SLOTS", "sometimes", 1)
            setenv("KTASK_NO_HELPER_CGROUP", "maybe", 1)
            setenv("KTASK_NODE_MAX_THREADS", "many", 1)
            for _ in 0..<3 {
                guard (try? runJob(0..<1_000_000) { _ in }) != nil else { exit(1) }
            }
            exit(MachineSlots.shared == nil && MachineSlots.offReason?.contains("KTASK_SLOTS=\"sometimes\"") == true ? 0 : 2)
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        let warnings = stderr.split(separator: "\n").filter { $0.hasPrefix("ktask: warning:") }
        #expect(warnings.count == 1, "\(stderr)")
        for named in ["KTASK_SLOTS=\"sometimes\"", "KTASK_NO_HELPER_CGROUP=\"maybe\"", "KTASK_NODE_MAX_THREADS=\"many\""] {
            #expect(warnings.first?.contains(named) == true, "\(named): \(stderr)")
        }
    }

    @Test("read once: a variable set after the first job is not seen")
    func readOnce() async {
        await #expect(processExitsWith: .success) {
            setenv("KTASK_MAX_THREADS", "1", 1)
            guard let first = try? runJob(0..<1_000_000, { _ in }), first.threadsUsed == 1 else { exit(1) }
            setenv("KTASK_MAX_THREADS", "0", 1)
            exit(Settings.current.maxThreads.value == HelperCap(maxBusyHelpers: 0, source: .environment) ? 0 : 2)
        }
    }
}
