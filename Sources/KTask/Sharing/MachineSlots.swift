import CKTaskShims

#if canImport(Glibc)
import Glibc
#endif

/// The machine-wide cap on busy helpers, shared by every ktask process (the kernel's ktask capped helpers
/// system-wide): one slot per online CPU but one — the rule a single process uses, where each caller is its
/// own implicit slot. Slot *i* is the file `slot.i` of one folder, held with `flock(LOCK_EX|LOCK_NB)` on a
/// read-only descriptor: the kernel drops the lock when the process dies (kill -9, OOM), so a dead holder's
/// slot is free at once, with no cleanup step and no daemon. A helper holds a slot only while it works.
///
/// Trust: the shared folder `/run/ktask` is made by root only, mode 0755, and holds root-made read-only files
/// (0444). Any user may open them read-only and lock them — a read-only open can take a flock — but no user
/// can create, write or fill anything there. A folder or file that does not pass these checks is refused
/// (never changed: ktask changes the mode only of what it has just created). An admin restricts the slots to
/// one group by making the folder 0750 (or 0710) root:GROUP, e.g. with systemd-tmpfiles. `/proc/locks` shows
/// every flock with its pid, so anyone can see who holds slots (``holders()``).
///
/// Where: `/run/ktask` when it can be used, else `$XDG_RUNTIME_DIR/ktask` (one user's processes only; made
/// 0700). `/tmp` is never used: any user may create a name there first, and per-user slots coordinate only
/// one user's processes. `KTASK_SLOTS=off` turns them off; `KTASK_SLOTS=/a/folder` uses that folder (made
/// 0755 by root, 0700 by another user).
package final class MachineSlots: @unchecked Sendable {
    /// The slots, opened once per process (at the first job that wants a helper), from ``Settings``.
    private static let opened = open()

    /// The slots of this machine; nil when off or no folder could be used (``offReason`` says why).
    package static var shared: MachineSlots? { try? opened.get() }

    /// Why the machine-wide slots are off, or nil when they are on (they turn off on a lock error).
    package static var offReason: String? {
        switch opened {
        case .failure(let reason): return reason.text
        case .success(let slots): return slots.offReason
        }
    }

    struct Reason: Error { package let text: String }

    /// The folder everyone's ktask processes share.
    static let sharedFolder = "/run/ktask"

    /// Who may do what with the slots, in one line (`ktask info`).
    package static let trustModel = "root alone makes \(sharedFolder) (0755) and its read-only slot files; a user takes a slot by "
        + "locking one (flock) and can write nothing there; holders are shown with the pid that took the lock and its uid; any "
        + "user can hold every slot (other jobs then run on their callers alone): an admin limits slots to one group with a 0750 "
        + "root:GROUP folder (systemd-tmpfiles)"

    /// The folder the slot files are in.
    package let folder: String
    package let count: Int
    /// Who may take these slots, from the folder's owner and mode.
    package let access: String
    /// Why the folders tried before this one were not used (e.g. a refused or group-restricted `/run/ktask`):
    /// slots in a user's own folder coordinate only that user's processes, which `ktask info` says.
    package let skipped: [String]
    /// One read-only descriptor per slot, and each file's device and inode (to find it in /proc/locks).
    private var files: [SlotFile]
    /// The fork generation that opened `files`: a child forked without exec has the same open file
    /// descriptions, on which a flock the parent holds succeeds again, so it opens its own (``reopenIfForked()``).
    private var openedIn = CKTask_fork_generation()
    /// Guards `files`, `openedIn`, `held`, `nextStart` and `lockError`.
    private let lock = PThreadMutex()
    /// Slots this process holds (a second flock on the same descriptor would succeed: tracked here).
    private var held: [Bool]
    private var nextStart: Int
    /// Set on a lock error other than "held": the slots are off for this process from then on.
    private var lockError: String?

    struct SlotFile {
        let fd: Int32
        let device: UInt64
        let inode: UInt64
    }

    private init(folder: String, access: String, files: [SlotFile], skipped: [String]) {
        self.folder = folder
        self.skipped = skipped
        self.access = access
        self.files = files
        count = files.count
        held = Array(repeating: false, count: files.count)
        nextStart = Int(getpid()) % max(1, files.count)
    }

    deinit {
        for file in files { close(file.fd) }
    }

    /// Why these slots were turned off (a lock error), or nil.
    package var offReason: String? { lock.withLock { lockError } }

    /// The slots for these settings (the process keeps the files open; its locks go with it when it exits).
    /// `environment` (``Settings/current``'s by default) and `sharedFolder` are parameters for tests.
    static func open(environment: [String: String] = Settings.current.environment,
                     onlineCPUs: Int = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))),
                     sharedFolder: String = sharedFolder) -> Result<MachineSlots, Reason> {
        let settings = Settings(environment: environment)
        // Malformed: off, as the settings say (the library's warning names it; the tool refuses it).
        if let problem = settings.slots.problem { return .failure(Reason(text: "off: \(problem.description)")) }
        let count = max(0, onlineCPUs - 1)
        var candidates: [(folder: String, mayMake: Bool)] = []
        var reasons: [String] = []
        switch settings.slots.value {
        case .off:
            return .failure(Reason(text: "off (KTASK_SLOTS=off)"))
        case .folder(let folder):
            candidates = [(folder, true)]
        case .sharedFolder:
            // Only root makes the shared folder (a user's would be that user's alone).
            candidates.append((sharedFolder, geteuid() == 0))
            if let runtime = settings.runtimeDirectory.value {
                // Only this user's own runtime folder: under `su` root keeps the user's variable, and would
                // otherwise make root's files in that user's folder.
                if let problem = runtimeFolderProblem(runtime) { reasons.append(problem) } else { candidates.append((runtime + "/ktask", true)) }
            }
        }
        for (folder, mayMake) in candidates {
            switch SlotFolder.prepare(folder, slots: count, mayMake: mayMake) {
            case .success(let (access, files)): return .success(MachineSlots(folder: folder, access: access, files: files, skipped: reasons))
            case .failure(let reason): reasons.append(reason.text)
            }
        }
        return .failure(Reason(text: "off: " + reasons.joined(separator: "; ")))
    }

    /// Why `$XDG_RUNTIME_DIR` is not this user's to use, or nil: it must be a folder (not a link) that this
    /// effective user owns and no one else may write to.
    static func runtimeFolderProblem(_ runtime: String) -> String? {
        var status = stat()
        guard lstat(runtime, &status) == 0 else { return "XDG_RUNTIME_DIR \(runtime) cannot be read (\(String(cString: strerror(errno))))" }
        guard status.st_mode & S_IFMT == S_IFDIR, status.st_uid == geteuid(), status.st_mode & 0o022 == 0 else {
            return "XDG_RUNTIME_DIR \(runtime) is not a folder of uid \(geteuid())'s own: not used"
        }
        return nil
    }

    /// What a take found.
    package enum Take: Equatable {
        case slot(Int)
        /// Every slot is held (by this or other processes).
        case allHeld
        /// The slots are off for this process; `newReason` is set by the take that turned them off.
        case off(newReason: String?)
    }

    /// Takes a free slot without waiting.
    package func take() -> Take {
        lock.withLock {
            reopenIfForked()
            if lockError != nil { return .off(newReason: nil) }
            guard count > 0 else { return .allHeld }
            // Start one further each time, so that processes spread over the files.
            let start = nextStart
            nextStart = (nextStart + 1) % count
            for probe in 0..<count {
                let slot = (start + probe) % count
                guard !held[slot] else { continue }
                if flock(files[slot].fd, LOCK_EX | LOCK_NB) == 0 {
                    held[slot] = true
                    return .slot(slot)
                }
                // Only EWOULDBLOCK means another holder; anything else is a lock that cannot be trusted.
                let error = errno
                guard error == EWOULDBLOCK else {
                    lockError = "off: locking \(folder)/slot.\(slot) failed (\(String(cString: strerror(error)))), so this "
                        + "process takes helpers as if there were no machine-wide slots"
                    return .off(newReason: lockError)
                }
            }
            return .allHeld
        }
    }

    /// In a child forked without exec (the lock held): the inherited descriptions are the parent's — a flock
    /// on them would count the parent's slots twice, an unlock would free them under the parent, and the
    /// child's copies would keep them locked after the parent died — so the child closes its copies and opens
    /// the files anew, holding nothing.
    private func reopenIfForked() {
        let generation = CKTask_fork_generation()  // an atfork counter: no system call per take
        guard generation != openedIn else { return }
        openedIn = generation
        for file in files { close(file.fd) }
        held = Array(repeating: false, count: count)
        switch SlotFolder.prepare(folder, slots: count, mayMake: false) {
        case .success(let (_, reopened)) where reopened.count == count:
            files = reopened
        case .success(let (_, reopened)):
            for file in reopened { close(file.fd) }
            (files, lockError) = ([], "off: after fork, \(folder) has \(reopened.count) of its \(count) slot files")
        case .failure(let reason):
            (files, lockError) = ([], "off: after fork, \(reason.text)")
        }
    }

    /// Gives a slot back.
    package func give(_ slot: Int) {
        lock.withLock {
            reopenIfForked()
            guard held[slot] else { return }
            _ = flock(files[slot].fd, LOCK_UN)
            held[slot] = false
        }
    }

    /// A process that holds slots now.
    package struct Holder: Equatable, Sendable {
        package let pid: Int
        /// Its real user id, from /proc/PID/status; nil when that cannot be read (hidepid).
        package let uid: Int?
        package let slots: [Int]
    }

    /// Slots held now by any process (this one's included).
    func heldCount() -> Int { Set(holders().flatMap(\.slots)).count }

    /// The processes that hold slots now, from `/proc/locks` (world-readable: every flock with its pid and
    /// its file's device and inode), each with its uid. Read line by line to its end, keeping only the slot
    /// files' lines: any user can add locks of their own to it, and a size limit would hide the holders.
    /// `locksFile` is a parameter for tests only.
    package func holders(locksFile: String = "/proc/locks") -> [Holder] {
        var slotsByPID: [Int: [Int]] = [:]
        let files = lock.withLock { self.files }
        forEachLine(of: locksFile) { line in
            guard let lock = FlockLine(line), let slot = files.firstIndex(where: { $0.device == lock.device && $0.inode == lock.inode })
            else { return }
            slotsByPID[lock.pid, default: []].append(slot)
        }
        return slotsByPID.keys.sorted().map { pid in
            Holder(pid: pid, uid: Self.realUID(of: pid), slots: slotsByPID[pid, default: []].sorted())
        }
    }

    /// The real uid on the `Uid:` line of /proc/PID/status.
    static func realUID(of pid: Int) -> Int? {
        guard let status = SystemRoot.live.read("/proc/\(pid)/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else { return nil }
        return line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.flatMap { Int($0) }
    }
}

/// One held flock of `/proc/locks`: `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF` (device in hex).
struct FlockLine {
    let pid: Int
    let device: UInt64
    let inode: UInt64

    init?(_ line: Substring) {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        // Waiters are listed as "1: -> FLOCK ...": they hold nothing.
        guard fields.count >= 6, fields[1] == "FLOCK", let pid = Int(fields[4]) else { return nil }
        let parts = fields[5].split(separator: ":")
        guard parts.count == 3, let major = UInt64(parts[0], radix: 16), let minor = UInt64(parts[1], radix: 16),
              let inode = UInt64(parts[2]) else { return nil }
        self.pid = pid
        self.inode = inode
        device = Self.device(major: major, minor: minor)
    }

    /// glibc's makedev: the st_dev of a device with this major and minor.
    static func device(major: UInt64, minor: UInt64) -> UInt64 {
        (major & 0xfff) << 8 | (major & ~0xfff) << 32 | (minor & 0xff) | (minor & ~0xff) << 12
    }
}
