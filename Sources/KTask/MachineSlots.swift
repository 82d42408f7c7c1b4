import CKTaskShims
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The machine-wide cap on busy helpers, shared by every ktask process (the kernel's ktask capped helpers
/// system-wide): one slot per online CPU but one — the rule a single process uses, where each caller is its
/// own implicit slot. A slot is byte *i* of one file, held with an open-file-description lock: the kernel
/// drops the lock when the process closes the file or dies (kill -9, OOM), so a dead holder's slots are
/// free at once, with no cleanup step and no daemon. A helper holds a slot only while it works on a job.
///
/// Where: `/run/ktask/slots` when that folder can be used (root makes it, mode 1777, the file 0666, so any
/// user's process can take a slot), else `$XDG_RUNTIME_DIR/ktask/slots`, else `/tmp/ktask-<uid>/slots` in a
/// folder this user owns with mode 0700 (one another user controls is refused). `KTASK_SLOTS=off` turns it
/// off; `KTASK_SLOTS=/a/folder` uses that folder (a group of processes with a budget of its own).
package final class MachineSlots: Sendable {
    /// The slots file, opened once per process (read at the first job, like the other variables).
    private static let opened = open()

    /// The slots of this machine; nil when off or no folder could be used (``offReason`` says why).
    package static var shared: MachineSlots? { try? opened.get() }

    /// Why the machine-wide slots are off, or nil when they are on.
    package static var offReason: String? {
        if case .failure(let reason) = opened { return reason.text }
        return nil
    }

    package struct Reason: Error { package let text: String }

    /// The folder the slots file is in.
    package let folder: String
    package var path: String { folder + "/slots" }
    package let count: Int
    private let fd: Int32
    /// Slots this process holds (a lock on the same description would succeed twice: tracked here).
    private let held: Mutex<[Bool]>
    private let nextStart: Atomic<Int>

    private init(folder: String, count: Int, fd: Int32) {
        self.folder = folder
        self.count = count
        self.fd = fd
        held = Mutex(Array(repeating: false, count: count))
        nextStart = Atomic(Int(getpid()) % max(1, count))
    }

    /// The slots file for this process's settings, opened once (the process keeps it open; its locks go
    /// with it when it exits).
    static func open(environment: [String: String] = environment(),
                     onlineCPUs: Int = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) -> Result<MachineSlots, Reason> {
        let setting = environment["KTASK_SLOTS"] ?? ""
        if setting == "off" || setting == "0" { return .failure(Reason(text: "off (KTASK_SLOTS=off)")) }
        let count = max(0, onlineCPUs - 1)
        var candidates: [(folder: String, shared: Bool)] = []
        if setting.hasPrefix("/") {
            candidates = [(setting, false)]
        } else if !setting.isEmpty && setting != "on" {
            return .failure(Reason(text: "off: KTASK_SLOTS=\(setting) is not off, on or an absolute folder"))
        } else {
            candidates.append(("/run/ktask", true))
            if let runtime = environment["XDG_RUNTIME_DIR"], runtime.hasPrefix("/") { candidates.append((runtime + "/ktask", false)) }
            candidates.append(("/tmp/ktask-\(getuid())", false))
        }
        var reasons: [String] = []
        for (folder, shared) in candidates {
            switch prepare(folder: folder, shared: shared) {
            case .success(let fd): return .success(MachineSlots(folder: folder, count: count, fd: fd))
            case .failure(let reason): reasons.append(reason.text)
            }
        }
        return .failure(Reason(text: "off: " + reasons.joined(separator: "; ")))
    }

    /// The variables the slots read, as this process has them (read once, like the other limits).
    static func environment() -> [String: String] {
        var environment: [String: String] = [:]
        for name in ["KTASK_SLOTS", "XDG_RUNTIME_DIR"] {
            if let value = getenv(name) { environment[name] = String(cString: value) }
        }
        return environment
    }

    /// Makes (or checks) the folder and opens its slots file.
    static func prepare(folder: String, shared: Bool) -> Result<Int32, Reason> {
        let mode: mode_t = shared ? 0o1777 : 0o700
        if mkdir(folder, mode) == 0 {
            chmod(folder, mode)  // past the umask
        } else if errno != EEXIST {
            return .failure(Reason(text: "\(folder) cannot be made (\(String(cString: strerror(errno))))"))
        }
        var status = stat()
        guard lstat(folder, &status) == 0, status.st_mode & S_IFMT == S_IFDIR else {
            return .failure(Reason(text: "\(folder) is not a folder"))
        }
        if shared {
            // Root's folder for all users: owned by root, sticky so no user removes another's file.
            guard status.st_uid == 0, status.st_mode & 0o1000 != 0 else {
                return .failure(Reason(text: "\(folder) is not root's sticky folder"))
            }
        } else if status.st_uid != getuid() || status.st_mode & 0o022 != 0 {
            return .failure(Reason(text: "\(folder) is owned by another user or writable by others: refused"))
        }
        let file = folder + "/slots"
        let fd = Glibc.open(file, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, shared ? 0o666 : 0o600)
        guard fd >= 0 else { return .failure(Reason(text: "\(file) cannot be opened (\(String(cString: strerror(errno))))")) }
        if shared { fchmod(fd, 0o666) }
        return .success(fd)
    }

    /// Takes a free slot without waiting; nil when every slot is held (by this or other processes).
    package func take() -> Int? {
        guard count > 0 else { return nil }
        return held.withLock { held in
            // Start where the last take left off, so that processes spread over the bytes.
            let start = nextStart.wrappingAdd(1, ordering: .relaxed).oldValue
            for probe in 0..<count {
                let slot = (start + probe) % count
                guard !held[slot] else { continue }
                if CKTask_ofd_lock_byte(fd, slot, 1) == 0 {
                    held[slot] = true
                    return slot
                }
            }
            return nil
        }
    }

    /// Gives a slot back.
    package func give(_ slot: Int) {
        held.withLock { held in
            guard held[slot] else { return }
            _ = CKTask_ofd_lock_byte(fd, slot, 0)
            held[slot] = false
        }
    }

    /// Slots held now by any process (this one's included).
    package func heldCount() -> Int {
        let own = held.withLock { $0.filter { $0 }.count }
        return own + (0..<count).filter { CKTask_ofd_byte_locked(fd, $0) == 1 }.count
    }

    /// The processes that hold slots now, from each process's open files (`/proc/PID/fdinfo` lists the OFD
    /// locks taken through a file description); readable ones only.
    package func holders() -> [Int] {
        let proc = SystemRoot.live
        return (proc.list("/proc") ?? []).compactMap(Int.init).filter { pid in
            (proc.list("/proc/\(pid)/fd") ?? []).contains { fd in
                readLink("/proc/\(pid)/fd/\(fd)") == path && proc.read("/proc/\(pid)/fdinfo/\(fd)")?.contains("OFDLCK") == true
            }
        }.sorted()
    }

    private func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink(path, &buffer, buffer.count - 1)
        guard length > 0 else { return nil }
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
