import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One environment variable as this process has it: the text, what ktask made of it, and whether it is
/// malformed.
package struct Setting<Value: Sendable>: Sendable {
    package let name: String
    /// The variable's text; nil when unset.
    package let raw: String?
    /// What ktask uses: the parsed value, or the default when unset or malformed.
    package let value: Value
    /// Set when the text is malformed: the library uses `value` (what ``Settings`` documents for it) after one warning
    /// for the process; the `ktask` tool refuses to run.
    let problem: KTask.Error?
    /// Something worth knowing that is no error (a relative `XDG_RUNTIME_DIR` is ignored, as the XDG spec says).
    package let note: String?
    /// What ktask made of it, in words (`ktask info`).
    package let meaning: String

    /// Parses `raw` (nil: unset, `unset` in force); a thrown error makes it malformed, with `malformed` in force.
    init(_ name: String, raw: String?, unset: Value, malformed: Value, describe: (Value) -> String,
         parse: (String) throws(KTask.Error) -> (value: Value, note: String?)) {
        self.name = name
        self.raw = raw
        var parsed = (value: unset, note: String?.none)
        var problem: KTask.Error?
        if let raw {
            do throws(KTask.Error) { parsed = try parse(raw) } catch {
                problem = error
                parsed.value = malformed
            }
        }
        value = parsed.value
        note = parsed.note
        self.problem = problem
        meaning = (problem == nil ? "" : "ignored: ") + describe(parsed.value)
    }

    /// Without the value's type, for listing.
    package var summary: SettingSummary {
        SettingSummary(name: name, raw: raw, meaning: meaning, problem: problem, note: note)
    }
}

/// A setting as `ktask info` lists it.
package struct SettingSummary: Sendable {
    package let name: String
    package let raw: String?
    package let meaning: String
    let problem: KTask.Error?
    package let note: String?
    /// "environment" when the variable is set (even to ""), else "default".
    package var source: String { raw == nil ? "default" : "environment" }
}

/// Every environment variable ktask reads, read once per process at first use (like libgomp's
/// `OMP_NUM_THREADS`) and validated once. Lazily: a C constructor that sets variables before `main` (the
/// tests' `CKTaskTestEnvironment`) or a program that sets them before its first job is seen; a change after
/// that is not.
///
/// A malformed value is ignored by the library, with one warning for the process to the first job's
/// logger (``reportProblems(to:)``); the `ktask` tool refuses it (exit 2). Each property says what
/// "malformed" means and what the library uses instead. `MAKEFLAGS`, `XDG_RUNTIME_DIR`, `XDG_CONFIG_HOME`
/// and `HOME` are never malformed: what ktask cannot use in them is a note, since make and the desktop
/// session set them, and ktask must run inside every make recipe and session; nor is `KTASK_PROFILE` (any
/// path names a file, or none).
package struct Settings: Sendable {
    /// This process's settings.
    package static let current = Settings(environment: processEnvironment())

    /// The variables read, in the order `ktask info` lists them.
    package static let names = [HelperCap.environmentVariable, HelperCap.nodeEnvironmentVariable, slotsVariable,
                                KTask.TuningProfile.environmentVariable, noHelperCgroupVariable, "MAKEFLAGS", sysfsRootVariable,
                                "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "HOME"]
    static let slotsVariable = "KTASK_SLOTS"
    static let noHelperCgroupVariable = "KTASK_NO_HELPER_CGROUP"
    static let sysfsRootVariable = "KTASK_SYSFS_ROOT"

    /// The variables' text (only those set), as read: what the parsers were given.
    package let environment: [String: String]

    /// `KTASK_MAX_THREADS`: threads per job, the caller included; nil: none set, or 0. Malformed (not a whole
    /// number ≥ 0): ignored, as if unset.
    package let maxThreads: Setting<HelperCap?>
    /// `KTASK_NODE_MAX_THREADS`: busy helpers on any one node; nil: none set, or 0. Malformed: as if unset.
    let nodeMaxThreads: Setting<HelperCap?>
    /// `KTASK_SLOTS`: `on`, `""` or unset (the shared folder, else the user's), `off` or `0`, or an absolute
    /// folder. Malformed (anything else, e.g. a relative folder): off, as before — it asked for something
    /// other than the shared slots, and off joins no budget it was not asked to.
    package let slots: Setting<SlotsChoice>
    /// `KTASK_PROFILE`: the tuning profile's path (relative to the working folder if relative); `""`: unset.
    /// Never malformed: a missing file is no profile.
    package let profile: Setting<String?>
    /// `KTASK_NO_HELPER_CGROUP`: true keeps helpers out of the idle cgroup (nice only). `1`, `true`, `yes`,
    /// `on` or `""` (set, as before, when any value counted): true; `0`, `false`, `no`, `off`: false (any case).
    /// Malformed (anything else): true, as any value did before — the choice that writes no cgroup.
    let noHelperCgroup: Setting<Bool>
    /// `MAKEFLAGS`: make's jobserver (``Jobserver/parse(makeflags:)``). Never malformed: a form ktask does not
    /// read is a note, and no jobserver (the tool must run in any recipe, and a newer make may add forms).
    /// Descriptors that are not open (make passes them only to `+` recipes) are found when connecting.
    let makeflags: Setting<Jobserver.Auth?>
    /// `KTASK_SYSFS_ROOT`: where `ktask info` reads sysfs and procfs (the library always reads the live
    /// machine); `""`: unset. Malformed (not absolute, so it would depend on the working folder): as if unset.
    package let sysfsRoot: Setting<String?>
    /// `XDG_RUNTIME_DIR`: the user's slot folder's parent; a relative one is ignored (a note), as the XDG
    /// Base Directory spec says.
    let runtimeDirectory: Setting<String?>
    /// `XDG_CONFIG_HOME`: the default profile's folder's parent; a relative one is ignored (a note).
    let configHome: Setting<String?>
    /// `HOME`: `~/.config/ktask/profile.json` where `XDG_CONFIG_HOME` is unset; `""`: unset.
    let home: Setting<String?>

    /// Where the machine-wide slots are (``MachineSlots``).
    package enum SlotsChoice: Sendable, Equatable {
        /// `/run/ktask`, else `$XDG_RUNTIME_DIR/ktask`.
        case sharedFolder
        case off
        case folder(String)
    }

    /// Parses `environment` (variable → text, unset ones absent): for tests, and for ``current``.
    package init(environment: [String: String]) {
        self.environment = environment.filter { Self.names.contains($0.key) }
        /// `malformed`: what the library uses instead of a malformed value; by default the same as unset.
        func read<Value>(_ name: String, unset: Value, malformed: Value? = nil, describe: (Value) -> String,
                         parse: (String) throws(KTask.Error) -> (value: Value, note: String?)) -> Setting<Value> {
            Setting(name, raw: environment[name], unset: unset, malformed: malformed ?? unset, describe: describe, parse: parse)
        }
        func noNote<Value>(_ parse: @escaping (String) throws(KTask.Error) -> Value) -> (String) throws(KTask.Error) -> (value: Value, note: String?) {
            { text throws(KTask.Error) in (try parse(text), nil) }
        }
        maxThreads = read(HelperCap.environmentVariable, unset: nil, describe: Self.describeThreads,
                          parse: noNote(HelperCap.parse(environmentValue:)))
        nodeMaxThreads = read(HelperCap.nodeEnvironmentVariable, unset: nil, describe: Self.describeNodeHelpers,
                              parse: noNote(HelperCap.parse(nodeEnvironmentValue:)))
        slots = read(Self.slotsVariable, unset: .sharedFolder, malformed: .off, describe: Self.describeSlots, parse: noNote(Self.parse(slots:)))
        profile = read(KTask.TuningProfile.environmentVariable, unset: nil, describe: { path in
            path.map { "the tuning profile is \($0)" } ?? "the tuning profile is in XDG_CONFIG_HOME or HOME"
        }, parse: { text in (text.isEmpty ? nil : text, text.hasPrefix("/") || text.isEmpty ? nil : "relative to the working folder") })
        noHelperCgroup = read(Self.noHelperCgroupVariable, unset: false, malformed: true, describe: { off in
            off ? "helpers stay out of the idle cgroup (nice only)" : "helpers run in an idle cgroup where the process may make one"
        }, parse: noNote(Self.parse(noHelperCgroup:)))
        makeflags = read("MAKEFLAGS", unset: nil, describe: { auth in
            switch auth {
            case .fifo(let path): "make's jobserver is fifo:\(path)"
            case .pipe(let read, let write): "make's jobserver is descriptors \(read),\(write)"
            case nil: "no make jobserver"
            }
        }, parse: { text in
            let parsed = Jobserver.parse(makeflags: text)
            return (parsed.auth, parsed.unreadable.map { "--jobserver-auth=\($0) is not a form ktask reads (fifo:PATH or R,W)" })
        })
        sysfsRoot = read(Self.sysfsRootVariable, unset: nil, describe: { root in
            "ktask info reads sysfs and procfs under \(root ?? "/")"
        }, parse: noNote(Self.parse(sysfsRoot:)))
        runtimeDirectory = read("XDG_RUNTIME_DIR", unset: nil, describe: { folder in
            folder.map { "user slots may be in \($0)/ktask" } ?? "no user slot folder"
        }, parse: Self.absoluteOrNote)
        configHome = read("XDG_CONFIG_HOME", unset: nil, describe: { folder in
            folder.map { "the default profile is \($0)/ktask/profile.json" } ?? "the default profile is under HOME"
        }, parse: Self.absoluteOrNote)
        home = read("HOME", unset: nil, describe: { folder in
            folder.map { "the default profile is \($0)/.config/ktask/profile.json unless XDG_CONFIG_HOME is set" } ?? "no home folder"
        }, parse: { text in (text.isEmpty ? nil : text, nil) })
    }

    /// Every setting, in ``names``' order.
    package var all: [SettingSummary] {
        [maxThreads.summary, nodeMaxThreads.summary, slots.summary, profile.summary, noHelperCgroup.summary,
         makeflags.summary, sysfsRoot.summary, runtimeDirectory.summary, configHome.summary, home.summary]
    }

    /// The malformed variables' errors, in ``names``' order.
    package var problems: [KTask.Error] { all.compactMap(\.problem) }

    // MARK: Parsers

    /// `KTASK_SLOTS`.
    package static func parse(slots text: String) throws(KTask.Error) -> SlotsChoice {
        switch text {
        case "", "on": return .sharedFolder
        case "off", "0": return .off
        case _ where text.hasPrefix("/"): return .folder(text)
        default:
            throw .invalidEnvironmentVariable(name: slotsVariable, value: text,
                                              allowed: "on (or empty), off (or 0), or an absolute folder for slots of a group's own")
        }
    }

    /// `KTASK_NO_HELPER_CGROUP`: whether helpers stay out of the idle cgroup.
    package static func parse(noHelperCgroup text: String) throws(KTask.Error) -> Bool {
        switch text.lowercased() {
        case "", "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default:
            throw .invalidEnvironmentVariable(name: noHelperCgroupVariable, value: text,
                                              allowed: "1, true, yes, on or empty (no idle cgroup), or 0, false, no, off")
        }
    }

    /// `KTASK_SYSFS_ROOT`: an absolute folder; "" is unset.
    package static func parse(sysfsRoot text: String) throws(KTask.Error) -> String? {
        if text.isEmpty { return nil }
        guard text.hasPrefix("/") else {
            throw .invalidEnvironmentVariable(name: sysfsRootVariable, value: text,
                                              allowed: "an absolute folder holding sys/ and proc/ (a machine snapshot)")
        }
        return text
    }

    /// An XDG base folder: absolute, else ignored with a note; "" is unset.
    static func absoluteOrNote(_ text: String) -> (value: String?, note: String?) {
        if text.isEmpty { return (nil, nil) }
        return text.hasPrefix("/") ? (text, nil) : (nil, "not an absolute path: ignored (XDG Base Directory spec)")
    }

    static func describeThreads(_ cap: HelperCap?) -> String {
        cap.map { "at most \($0.maxBusyHelpers + 1) thread(s) per job, the caller included" }
            ?? "no cap from the environment (the CPU budget, or none while saving energy)"
    }

    static func describeNodeHelpers(_ cap: HelperCap?) -> String {
        cap.map { "at most \($0.maxBusyHelpers) busy helper(s) on any one node" } ?? "no per-node cap from the environment (a node's usable CPUs)"
    }

    static func describeSlots(_ choice: SlotsChoice) -> String {
        switch choice {
        case .sharedFolder: "helper slots shared in \(MachineSlots.sharedFolder), else in $XDG_RUNTIME_DIR/ktask"
        case .off: "helper slots off"
        case .folder(let folder): "helper slots in \(folder)"
        }
    }

    // MARK: The process's settings

    /// Every malformed variable and what is used instead, in one line; nil when none is.
    private static let problemsWarning: String? = {
        let malformed = current.all.filter { $0.problem != nil }
        return malformed.isEmpty ? nil : malformed.map { "\($0.problem!.description) (\($0.meaning))" }.joined(separator: "; ")
    }()
    /// Set once the problems were reported: one warning per process.
    private static let reportedProblems = Atomic<Bool>(false)

    /// Warns once per process, to `log` (the first job's logger, else standard error), of every malformed
    /// variable and what is used instead. Called where each job reads its caps: without problems, one load.
    static func reportProblems(to log: JobLog) {
        guard let problemsWarning, !reportedProblems.exchange(true, ordering: .relaxed) else { return }
        log.warning(problemsWarning)
    }

    private static func processEnvironment() -> [String: String] {
        var environment: [String: String] = [:]
        for name in names {
            if let value = getenv(name) { environment[name] = String(cString: value) }
        }
        return environment
    }
}
