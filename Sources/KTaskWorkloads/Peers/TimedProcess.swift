import CKTaskShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One program run from start to exit, timed around `posix_spawn` and `waitpid` (no run loop between the
/// exit and the clock: Foundation's `Process` learns of an exit on another thread).
struct TimedProcess {
    /// Seconds from just before the spawn to just after the exit was reaped.
    let seconds: Double
    /// The exit status, or 128 + the signal that ended it.
    let status: Int32
    /// The start of what it wrote to stderr (up to 64 KiB).
    let errorOutput: String

    /// The first line of stderr, or the exit status: what a failure is reported with.
    var failureReason: String {
        errorOutput.split(separator: "\n").first.map(String.init) ?? "exit status \(status)"
    }

    /// Runs `executable` with `arguments` (argv[0] is the executable), stdout to /dev/null, stdin from
    /// `input` (then end of file; /dev/null when nil), stderr collected. `started` hears the child's pid
    /// as soon as it runs (so that a fatal signal can kill it).
    static func run(_ executable: String, _ arguments: [String], input: String? = nil,
                    started: (pid_t) -> Void = { _ in }) throws(ProcessStartError) -> TimedProcess {
        var errorPipe: [Int32] = [-1, -1], inputPipe: [Int32] = [-1, -1]
        guard makePipe(&errorPipe) else { throw .pipe(errno: errno) }
        defer { for end in errorPipe where end >= 0 { close(end) } }
        if let input {
            guard makePipe(&inputPipe) else { throw .pipe(errno: errno) }
            // A few bytes fit the pipe's buffer: written before the start, read by the child at its pace.
            _ = input.utf8CString.withUnsafeBufferPointer { write(inputPipe[1], $0.baseAddress, $0.count - 1) }
            close(inputPipe[1])
            inputPipe[1] = -1
        }
        defer { if inputPipe[0] >= 0 { close(inputPipe[0]) } }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if input != nil {
            posix_spawn_file_actions_adddup2(&actions, inputPipe[0], STDIN_FILENO)
        } else {
            posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, errorPipe[1], STDERR_FILENO)

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        let start = ContinuousClock.now
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard spawned == 0 else { throw .spawn(program: executable, errno: spawned) }
        started(pid)
        close(errorPipe[1])
        errorPipe[1] = -1

        // End of file on stderr comes when the child exits (it passes the pipe to no one that outlives it).
        var collected = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(errorPipe[0], $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            if collected.count < 64 << 10 { collected.append(contentsOf: buffer[..<count]) }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw .wait(errno: errno) }
        }
        let seconds = (ContinuousClock.now - start).seconds
        // WIFEXITED / WTERMSIG by hand: Glibc's macros are not imported into Swift.
        let signal = status & 0x7f
        let exitStatus = signal == 0 ? (status >> 8) & 0xff : 128 + signal
        return TimedProcess(seconds: seconds, status: exitStatus, errorOutput: String(decoding: collected, as: UTF8.self))
    }

    /// A pipe whose ends close on exec (pipe2 is _GNU_SOURCE, which Glibc in Swift lacks): the child gets
    /// only the ends it is given as 0 and 2. Nothing else in this process starts programs meanwhile.
    private static func makePipe(_ ends: inout [Int32]) -> Bool {
        guard pipe(&ends) == 0 else { return false }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        return true
    }
}

/// Why a program could not be run at all (as opposed to running and failing).
package enum ProcessStartError: Error, CustomStringConvertible {
    case pipe(errno: Int32)
    case spawn(program: String, errno: Int32)
    case wait(errno: Int32)

    package var description: String {
        switch self {
        case .pipe(let code): "cannot make a pipe for a child process: \(String(cString: strerror(code)))"
        case .spawn(let program, let code): "cannot start \(program): \(String(cString: strerror(code)))"
        case .wait(let code): "cannot wait for a child process: \(String(cString: strerror(code)))"
        }
    }
}
