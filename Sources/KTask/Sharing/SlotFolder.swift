#if canImport(Glibc)
import Glibc
#endif

/// Opens a slots folder and its files without trusting what is already there: each is opened once, without
/// following a symbolic link, and judged from `fstat` of that descriptor, never by its name again. Only what
/// this call has just created (`mkdir`, `O_CREAT|O_EXCL`) has its mode set; anything else that does not pass
/// is refused with the reason, and left as it is.
enum SlotFolder {
    typealias Reason = MachineSlots.Reason

    /// The folder's access (who may take its slots) and one open file per slot. `mayMake`: make the folder
    /// when it is missing (0755 by root, for every user; 0700 by anyone else, for that user).
    static func prepare(_ folder: String, slots count: Int, mayMake: Bool) -> Result<(String, [MachineSlots.SlotFile]), Reason> {
        let euid = geteuid()
        let mode: mode_t = euid == 0 ? 0o755 : 0o700
        var made = false
        if mayMake {
            if mkdir(folder, mode) == 0 { made = true } else if errno != EEXIST {
                return .failure(Reason(text: "\(folder) cannot be made (\(describe(errno)))"))
            }
        }
        let fd = open(folder, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return .failure(openFailure(folder, errno)) }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { return .failure(Reason(text: "\(folder) cannot be read (\(describe(errno)))")) }
        if let problem = folderProblem(status) { return .failure(Reason(text: "\(folder) \(problem): refused")) }
        // Past the umask, so that other users may reach root's files; only a folder this call made.
        if made && status.st_uid == euid && fchmod(fd, mode) == 0 { status.st_mode = S_IFDIR | mode }
        return openSlots(in: fd, folder, count: count, owner: status.st_uid).map { (access(status), $0) }
    }

    /// Why a folder cannot hold trusted slots, or nil: it must be a folder owned by root or this user that no
    /// one else may write to.
    static func folderProblem(_ status: stat) -> String? {
        guard status.st_mode & S_IFMT == S_IFDIR else { return "is not a folder" }
        guard status.st_uid == 0 || status.st_uid == geteuid() else { return "is owned by uid \(status.st_uid), not root or this user" }
        guard status.st_mode & 0o022 == 0 else {
            return "is writable by group or others (mode \(String(status.st_mode & 0o7777, radix: 8)); earlier ktask builds made it 1777: remove it, root's next run makes it 0755)"
        }
        return nil
    }

    /// Why a slot file cannot be trusted, or nil: a regular file with one link, owned by the folder's owner,
    /// that no one else may write to (a hard link could be any file of that owner's; a symbolic link is never
    /// opened).
    static func fileProblem(_ status: stat, owner: uid_t) -> String? {
        guard status.st_mode & S_IFMT == S_IFREG else { return "is not a regular file" }
        guard status.st_nlink == 1 else { return "has \(status.st_nlink) links (a hard link)" }
        guard status.st_uid == owner else { return "is owned by uid \(status.st_uid), not the folder's owner (uid \(owner))" }
        guard status.st_mode & 0o022 == 0 else { return "is writable by group or others (mode \(String(status.st_mode & 0o7777, radix: 8)))" }
        return nil
    }

    /// `slot.0` … `slot.(count−1)`. The folder's owner makes missing ones; another user uses the ones there
    /// are, up to `count` (root made them for its own count of CPUs).
    static func openSlots(in folder: Int32, _ path: String, count: Int, owner: uid_t) -> Result<[MachineSlots.SlotFile], Reason> {
        var files: [MachineSlots.SlotFile] = []
        for slot in 0..<count {
            switch openSlot("slot.\(slot)", in: folder, owner: owner, mayCreate: geteuid() == owner) {
            case .success(let file?): files.append(file)
            case .success(nil): return files.isEmpty && count > 0
                ? .failure(Reason(text: "\(path) has no slot files (root makes them at its first ktask run)")) : .success(files)
            case .failure(let reason):
                for file in files { close(file.fd) }
                return .failure(Reason(text: "\(path)/slot.\(slot) \(reason.text): refused"))
            }
        }
        return .success(files)
    }

    /// One slot file, opened read-only (enough for flock; nothing is ever written); nil when it is missing
    /// and this user may not make it.
    static func openSlot(_ name: String, in folder: Int32, owner: uid_t, mayCreate: Bool) -> Result<MachineSlots.SlotFile?, Reason> {
        var fd: Int32 = -1
        var made = false
        if mayCreate {
            fd = openat(folder, name, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o444)
            made = fd >= 0
            if fd < 0 && errno != EEXIST { return .failure(Reason(text: "cannot be made (\(describe(errno)))")) }
        }
        if fd < 0 {
            // O_NONBLOCK: a FIFO put there must not hang the open (fstat then refuses it).
            fd = openat(folder, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            if fd < 0 && errno == ENOENT && !mayCreate { return .success(nil) }
            guard fd >= 0 else { return .failure(Reason(text: errno == ELOOP ? "is a symbolic link" : "cannot be opened (\(describe(errno)))")) }
        }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            close(fd)
            return .failure(Reason(text: "cannot be read (\(describe(errno)))"))
        }
        if made {
            fchmod(fd, 0o444)  // past the umask: other users open it read-only
        } else if let problem = fileProblem(status, owner: owner) {
            close(fd)
            return .failure(Reason(text: problem))
        }
        return .success(MachineSlots.SlotFile(fd: fd, device: UInt64(status.st_dev), inode: UInt64(status.st_ino)))
    }

    /// Who may take a folder's slots, from its owner and mode.
    static func access(_ status: stat) -> String {
        let owner = status.st_uid == 0 ? "root" : "uid \(status.st_uid)"
        if status.st_mode & 0o001 != 0 { return "every user (folder owned by \(owner), mode \(String(status.st_mode & 0o7777, radix: 8)))" }
        if status.st_mode & 0o010 != 0 { return "members of group \(groupName(status.st_gid)) (folder mode \(String(status.st_mode & 0o7777, radix: 8)))" }
        return "\(owner) only (folder mode \(String(status.st_mode & 0o7777, radix: 8)))"
    }

    /// Why a folder could not be opened; for one this user may not enter, the group it is restricted to.
    static func openFailure(_ folder: String, _ error: Int32) -> Reason {
        switch error {
        case ENOENT: return Reason(text: "\(folder) does not exist (only root makes it)")
        case ELOOP, ENOTDIR: return Reason(text: "\(folder) is a symbolic link or not a folder: refused")
        case EACCES:
            var status = stat()
            let group = stat(folder, &status) == 0 ? ": slots restricted to group \(groupName(status.st_gid))" : ""
            return Reason(text: "\(folder) cannot be opened (\(describe(error)))\(group)")
        default: return Reason(text: "\(folder) cannot be opened (\(describe(error)))")
        }
    }

    static func groupName(_ gid: gid_t) -> String {
        guard let group = getgrgid(gid), let name = group.pointee.gr_name else { return "\(gid)" }
        return String(cString: name)
    }

    static func describe(_ error: Int32) -> String { String(cString: strerror(error)) }
}
