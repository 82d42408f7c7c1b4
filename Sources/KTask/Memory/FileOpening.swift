import CKTaskShims

#if canImport(Glibc)
import Glibc
#endif

/// A file opened for populating by the rules that make root safe on a shared machine: one open of the
/// name, never through a symbolic link, never waiting (a FIFO), and every decision taken from that
/// descriptor (`fstat`, `fstatfs`), never from a second look at the name, which another user could swap
/// in between.
struct FileOpening {
    let descriptor: Int32
    /// The folder, open (O_PATH): a file this call created is removed through it, not by name from the root.
    let folder: Int32
    let name: String
    let status: stat
    /// Made by this open (O_CREAT|O_EXCL).
    let created: Bool
    /// Opened O_RDWR.
    let readWrite: Bool

    /// Opens `path`: read-write when `write` (falling back to read-only when only `size` asked for it and
    /// the file is read-only to the caller, `requireWrite` false), created when missing and `create`.
    static func open(_ path: String, write: Bool, requireWrite: Bool, create: Bool) throws(KTask.Error) -> FileOpening {
        func unusable(_ reason: String) -> KTask.Error { .fileUnusable(path: path, reason: reason) }
        let (folderPath, name) = split(path)
        guard !name.isEmpty, name != ".", name != ".." else { throw unusable("is a folder; give a file") }
        let folder = CKTask_openat(AT_FDCWD, folderPath, CKTask_O_PATH() | O_DIRECTORY | O_CLOEXEC, 0)
        guard folder >= 0 else {
            throw unusable(errno == ENOENT ? "does not exist (nor does its folder \(folderPath))"
                           : "its folder \(folderPath) cannot be opened: \(String(cString: strerror(errno)))")
        }
        do {
            return try open(name, in: folder, write: write, requireWrite: requireWrite, create: create, unusable: unusable)
        } catch {
            Glibc.close(folder)
            throw error
        }
    }

    /// The open itself, in `folder`. Links are followed only in this process's own descriptor folder
    /// (`/proc/self/fd/N`, a descriptor this process holds, as a VM's memfd is passed): the kernel makes
    /// those and no user can plant one; another process's (`/proc/PID/fd`) could be anyone's once the pid is
    /// reused.
    private static func open(_ name: String, in folder: Int32, write: Bool, requireWrite: Bool, create: Bool,
                             unusable: (String) -> KTask.Error) throws(KTask.Error) -> FileOpening {
        let follow = isOwnDescriptorFolder(folder)
        var access = write ? O_RDWR : O_RDONLY
        var noAtime = CKTask_O_NOATIME()  // dropped on EPERM: allowed only to the owner (or CAP_FOWNER)
        for _ in 0..<8 {
            let common = (follow ? 0 : O_NOFOLLOW) | O_NONBLOCK | O_CLOEXEC
            let fd = CKTask_openat(folder, name, access | common | noAtime, 0)
            if fd >= 0 { return try opened(fd, folder: folder, name: name, created: false, readWrite: access == O_RDWR, unusable: unusable) }
            let code = errno
            if code == EPERM && noAtime != 0 { noAtime = 0; continue }
            if (code == EACCES || code == EROFS || code == ETXTBSY) && access == O_RDWR && !requireWrite { access = O_RDONLY; continue }
            if code == ENOENT && create {
                // Decided before anything is made: a file on disk is never created (not even for a moment).
                guard [0x0102_1994, 0x9584_58f6].contains(filesystemType(folder)) else {  // TMPFS_MAGIC, HUGETLBFS_MAGIC
                    throw unusable("does not exist, and its folder is on a disk filesystem: only tmpfs or hugetlbfs files are created")
                }
                let made = CKTask_openat(folder, name, O_RDWR | O_CREAT | O_EXCL | common, 0o600)
                if made >= 0 { return try opened(made, folder: folder, name: name, created: true, readWrite: true, unusable: unusable) }
                if errno == EEXIST { continue }  // made by someone else meanwhile: open it by the same rules
                throw unusable("cannot be created: \(String(cString: strerror(errno)))")
            }
            throw unusable(reason(openErrno: code, write: access == O_RDWR))
        }
        throw unusable("keeps appearing and disappearing while being opened; try again")
    }

    /// Checks what was opened: a regular file, and nothing else, is kept.
    private static func opened(_ fd: Int32, folder: Int32, name: String, created: Bool, readWrite: Bool,
                               unusable: (String) -> KTask.Error) throws(KTask.Error) -> FileOpening {
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw unusable("cannot be examined: \(reason)")
        }
        let type = status.st_mode & S_IFMT
        guard type == S_IFREG else {
            Glibc.close(fd)
            throw unusable(type == S_IFDIR ? "is a folder; give a file" : "is not a regular file (a FIFO, device or socket is never populated)")
        }
        return FileOpening(descriptor: fd, folder: folder, name: name, status: status, created: created, readWrite: readWrite)
    }

    static func reason(openErrno code: Int32, write: Bool) -> String {
        switch code {
        case ENOENT: "does not exist; give `size` to create a tmpfs or hugetlbfs file"
        case ELOOP: "is a symbolic link; give the file itself (links are not followed, so another user cannot redirect the populate)"
        case EISDIR: "is a folder; give a file"
        case ENXIO, EWOULDBLOCK: "is not a regular file (a FIFO, device or socket is never populated)"
        case EACCES, EPERM: "no permission to \(write ? "write" : "read") it"
        default: String(cString: strerror(code))
        }
    }

    /// The folder (`.` for a bare name, `/` for a file in the root) and the last component, trailing
    /// slashes dropped.
    static func split(_ path: String) -> (folder: String, name: String) {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return (".", String(trimmed)) }
        let folder = slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
        return (folder, String(trimmed[trimmed.index(after: slash)...]))
    }

    /// Whether `folder` is this process's (or thread's) `/proc/.../fd`, by device and inode.
    static func isOwnDescriptorFolder(_ folder: Int32) -> Bool {
        var opened = stat(), own = stat()
        guard fstat(folder, &opened) == 0 else { return false }
        return (["/proc/self/fd", "/proc/thread-self/fd"] as [String]).contains { path in
            stat(path, &own) == 0 && own.st_dev == opened.st_dev && own.st_ino == opened.st_ino
        }
    }

    /// fstatfs's filesystem type of a descriptor; 0 where it cannot tell.
    static func filesystemType(_ fd: Int32) -> UInt {
        var type = 0, blockSize = 0
        return CKTask_fstatfs(fd, &type, &blockSize) == 0 ? UInt(bitPattern: type) : 0
    }

    /// Removes the file this open created, if the name still leads to it (another user cannot rename it
    /// in a sticky folder; elsewhere the name is checked against the descriptor's inode first). Its memory
    /// is freed through the descriptor either way.
    func removeCreated() {
        guard created else { return }
        _ = ftruncate(descriptor, 0)
        var now = stat()
        guard fstatat(folder, name, &now, AT_SYMLINK_NOFOLLOW) == 0,
              now.st_dev == status.st_dev, now.st_ino == status.st_ino else { return }
        unlinkat(folder, name, 0)
    }

    func close() {
        Glibc.close(descriptor)
        Glibc.close(folder)
    }
}
