import CKTaskShims

#if canImport(Glibc)
import Glibc
#endif

/// A GNU make jobserver client: under `make -jN`, each extra helper takes a token first, so that ktask's
/// helpers and make's other jobs share make's N slots. Follows the GNU make manual's "Sharing Job Slots
/// with GNU make" (POSIX Jobserver Interaction):
/// - the jobserver is named by `--jobserver-auth=` in `MAKEFLAGS` (make 4.2+; `--jobserver-fds=` before
///   it), the last one winning: `fifo:PATH` (make 4.4+) or `R,W`, two inherited pipe descriptors (make passes
///   them only to recipes marked `+` or running `$(MAKE)`; closed or negative ones mean no jobserver);
/// - "your program must have one implicit slot": the calling thread; each further thread needs a token,
///   one byte read from the jobserver;
/// - "you must write back the same character you read", exactly once, also on failure and on a signal
///   ("you should catch [signals] and write back tokens before exiting"): the accounting is in C, where
///   the fatal-signal handler (`signals.c`) can do it, on every signal whose default action ends the
///   process, after any handler the host installed before (tokens stay held when that handler returns and
///   the process goes on). A host handler that calls `_exit` skips every hook: its tokens are lost, as
///   with SIGKILL. A forked child writes none back (the hook and handlers it inherits do nothing there);
/// - only the two ends of one pipe, or a FIFO, are used as the jobserver: nothing else named is read or
///   written;
/// - a read that would block means no free token: ktask never waits (the descriptor is reopened
///   non-blocking through /proc/self/fd, so make's own description is left as it is); the write end is
///   used through a copy (`F_DUPFD_CLOEXEC`), so a host that closes make's descriptor and reuses its
///   number never gets token bytes in that file.
package final class Jobserver: Sendable {
    /// How the jobserver is reached.
    package enum Auth: Equatable, Sendable {
        case fifo(String)
        case pipe(read: Int32, write: Int32)
    }

    /// What MAKEFLAGS says: the jobserver (nil: none), whether make runs a dry run (`n` in the first word:
    /// it changes nothing for ktask, whose recipe make runs anyway when it is marked `+`), and the last
    /// option's value when it is no form ktask reads (nil for negative descriptors, make's "none").
    package static func parse(makeflags: String) -> (auth: Auth?, dryRun: Bool, unreadable: String?) {
        let words = makeflags.split(separator: " ")
        let first = words.first.map(String.init) ?? ""
        let dryRun = !first.hasPrefix("-") && first.contains("n")
        var auth: Auth?
        var unreadable: String?
        for word in words {
            let value: Substring
            if word.hasPrefix("--jobserver-auth=") { value = word.dropFirst("--jobserver-auth=".count) }
            else if word.hasPrefix("--jobserver-fds=") { value = word.dropFirst("--jobserver-fds=".count) }
            else { continue }
            // The last option decides, also when it names no jobserver.
            (auth, unreadable) = (nil, nil)
            if value.hasPrefix("fifo:") {
                let path = String(value.dropFirst("fifo:".count))
                if path.isEmpty { unreadable = String(value) } else { auth = .fifo(path) }
            } else {
                let parts = value.split(separator: ",", omittingEmptySubsequences: false)
                if parts.count == 2, let read = Int32(parts[0]), let write = Int32(parts[1]) {
                    // Negative: make's "no jobserver".
                    if read >= 0 && write >= 0 { auth = .pipe(read: read, write: write) }
                } else {
                    unreadable = String(value)
                }
            }
        }
        return (auth, dryRun, unreadable)
    }

    /// This process's jobserver, opened at the first job; nil without one.
    package static var shared: Jobserver? { connection.jobserver }
    /// What `ktask info` says about it.
    package static var status: String {
        shared.map { "\($0.description) (\(CKTask_jobserver_held()) token(s) held)" } ?? connection.note ?? "none"
    }
    /// The jobserver, or why MAKEFLAGS names one that cannot be used; connected once, from ``Settings``.
    private static let connection = connect()

    package let description: String

    private init(description: String) { self.description = description }

    static func connect(_ makeflags: Setting<Auth?> = Settings.current.makeflags) -> (jobserver: Jobserver?, note: String?) {
        // A form ktask does not read: never refused (make, not the user, wrote it), but not silent either.
        if let note = makeflags.note { return unusable("MAKEFLAGS' " + note) }
        guard let auth = makeflags.value else { return (nil, nil) }
        switch auth {
        case .fifo(let path): return connect(fifo: path)
        case .pipe(let read, let write): return connect(read: read, write: write)
        }
    }

    /// `fifo:PATH`: opened once, read side first, without following a link or waiting; only a FIFO is used
    /// (anything else is never read or written), and the write side is opened through that same descriptor,
    /// so that the path cannot be swapped in between.
    private static func connect(fifo path: String) -> (jobserver: Jobserver?, note: String?) {
        // Not even opened when it is no FIFO now (opening a device can act); the open's fstat decides.
        var named = stat()
        if lstat(path, &named) == 0 && named.st_mode & S_IFMT != S_IFIFO { return unusable("fifo:\(path) is not a fifo") }
        let reader = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)
        guard reader >= 0 else { return unusable("fifo \(path) cannot be opened (\(String(cString: strerror(errno))))") }
        var status = stat()
        guard fstat(reader, &status) == 0, status.st_mode & S_IFMT == S_IFIFO else {
            close(reader)
            return unusable("fifo:\(path) is not a fifo")
        }
        let writer = open("/proc/self/fd/\(reader)", O_WRONLY | O_CLOEXEC)
        guard writer >= 0 else { close(reader); return unusable("fifo \(path) cannot be opened for writing") }
        CKTask_jobserver_setup(reader, writer)
        return (Jobserver(description: "make jobserver fifo:\(path)"), nil)
    }

    /// `R,W`: two inherited descriptors, used only when they are the read and write ends of one pipe (or
    /// fifo): one inode, the first open for reading, the second for writing. Anything else (a program's own
    /// pipe or log) is never read or written.
    private static func connect(read: Int32, write: Int32) -> (jobserver: Jobserver?, note: String?) {
        // Closed descriptors (make passes them only to `+` recipes) or ones that are not pipes: no jobserver.
        var readStatus = stat(), writeStatus = stat()
        guard fstat(read, &readStatus) == 0, fstat(write, &writeStatus) == 0,
              readStatus.st_mode & S_IFMT == S_IFIFO, writeStatus.st_mode & S_IFMT == S_IFIFO else {
            return unusable("MAKEFLAGS names jobserver descriptors \(read),\(write), but they are not open pipes "
                            + "(mark the recipe with + to share make's job slots)")
        }
        guard readStatus.st_dev == writeStatus.st_dev, readStatus.st_ino == writeStatus.st_ino else {
            return unusable("jobserver descriptors \(read),\(write) are not the two ends of one pipe")
        }
        let (readMode, writeMode) = (fcntl(read, F_GETFL) & O_ACCMODE, fcntl(write, F_GETFL) & O_ACCMODE)
        guard readMode == O_RDONLY || readMode == O_RDWR, writeMode == O_WRONLY || writeMode == O_RDWR else {
            return unusable("jobserver descriptor \(read) is not open for reading or \(write) not for writing")
        }
        // A description of our own, non-blocking: make's stays as make set it.
        let reader = open("/proc/self/fd/\(read)", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard reader >= 0 else { return unusable("jobserver descriptor \(read) cannot be reopened non-blocking") }
        // A number of our own for the write end: the host may close what it inherited and reuse the number
        // (for a log), which must never receive token bytes.
        let writer = fcntl(write, F_DUPFD_CLOEXEC, 0)
        guard writer >= 0 else { close(reader); return unusable("jobserver descriptor \(write) cannot be duplicated") }
        CKTask_jobserver_setup(reader, writer)
        return (Jobserver(description: "make jobserver pipe \(read),\(write)"), nil)
    }

    /// No usable jobserver: one warning for the process, and helpers run as if there were none.
    private static func unusable(_ why: String) -> (jobserver: Jobserver?, note: String?) {
        JobLog(logger: nil).warning(why + "; running without it")
        return (nil, "none: " + why)
    }

    /// A token, without waiting; nil when make has none free.
    func take() -> UInt8? {
        let token = CKTask_jobserver_take()
        return token >= 0 ? UInt8(token) : nil
    }

    /// Writes a token back.
    func give(_ token: UInt8) { CKTask_jobserver_give(token) }
}
