import Foundation
import Testing

/// A task's /proc stat file: its name and the fields after it (`fields[0]` is field 3, the state).
func procStat(_ path: String) -> (comm: Substring, fields: [Substring])? {
    guard let stat = try? String(contentsOfFile: path, encoding: .utf8),
          let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return nil }
    return (stat[stat.index(after: open)..<close], stat[stat.index(close, offsetBy: 2)...].split(separator: " "))
}

/// The threads of process `pid` whose name starts with "ktask/" (helpers), each with its stat fields.
func helperThreads(of pid: Int32) -> [(tid: String, fields: [Substring])] {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []).compactMap { tid in
        guard let stat = procStat("/proc/\(pid)/task/\(tid)/stat"), stat.comm.hasPrefix("ktask/") else { return nil }
        return (tid, stat.fields)
    }
}

/// Counts the helper threads (`ktask/N`) of some processes that ran during each interval between two samples.
///
/// A helper counts when it was on a CPU for more than half of the time since it was last read (its run
/// time in /proc/PID/task/TID/schedstat, each thread timed on its own): two helpers that both did so ran
/// at the same time for part of it, whatever the load. State R in `stat` is not enough: it also means
/// waiting in the run queue, and under the load of other tests a nice-19 helper that has given its slot
/// back can wait there for many samples.
struct HelperSampler {
    private var last: [String: (runTime: UInt64, at: ContinuousClock.Instant)] = [:]

    /// Helpers of `pids` that ran more than half of the time since the previous call (the first call: 0).
    mutating func sample(_ pids: [Int32]) -> Int {
        var ran = 0, seen: [String: (runTime: UInt64, at: ContinuousClock.Instant)] = [:]
        for pid in pids {
            for (tid, _) in helperThreads(of: pid) {
                guard let schedstat = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/schedstat", encoding: .utf8),
                      let runTime = schedstat.split(separator: " ").first.flatMap({ UInt64($0) }) else { continue }
                let now = ContinuousClock.now, key = "\(pid)/\(tid)"
                seen[key] = (runTime, now)
                if let before = last[key], Double(runTime &- before.runTime) > (now - before.at) / .nanoseconds(2) { ran += 1 }
            }
        }
        last = seen
        return ran
    }
}

/// Runs `count` ktask processes at once with `environment`, sampling every 2 ms how many of their helpers
/// ran (`HelperSampler`); returns the samples by that number and the wall time of all of them.
func sampleConcurrent(_ count: Int, _ arguments: [String], environment: [String: String])
    throws -> (samples: [Int: Int], seconds: Double, statuses: [Int32])
{
    let executable = try ktaskExecutable()
    let start = Date()
    let processes = try (0..<count).map { _ in
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }
    var samples: [Int: Int] = [:], sampler = HelperSampler()
    while processes.contains(where: \.isRunning) {
        samples[sampler.sample(processes.map(\.processIdentifier)), default: 0] += 1
        usleep(2000)
    }
    for process in processes { process.waitUntilExit() }
    return (samples, Date().timeIntervalSince(start), processes.map(\.terminationStatus))
}

@Suite("Sharing the machine: machine-wide slots", .serialized)
struct ShareCLITests {
    static let onlineCPUs = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))

    @Test("three processes at once never run more helpers than the machine's slots (online CPUs − 1)",
          .enabled(if: onlineCPUs >= 2, "needs 2 CPUs: skipped"))
    func threeProcesses() throws {
        let folder = NSTemporaryDirectory() + "ktask-share-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Helpers at the callers' priority and outside the idle cgroup: at nice 19 in it they would hardly run
        // beside three callers on this machine's CPUs, slots or not, and the test could not tell the two apart.
        let arguments = ["bench", "--workload", "compute", "--threads", "\(Self.onlineCPUs)", "--size", "8M", "--runs", "3",
                         "--helper-priority", "caller"]
        let shared = try sampleConcurrent(3, arguments, environment: ["KTASK_SLOTS": folder, "KTASK_NO_HELPER_CGROUP": "1"])
        let alone = try sampleConcurrent(3, arguments, environment: ["KTASK_SLOTS": "off", "KTASK_NO_HELPER_CGROUP": "1"])
        #expect(shared.statuses == [0, 0, 0] && alone.statuses == [0, 0, 0])
        func overFraction(_ samples: [Int: Int]) -> Double {
            Double(samples.filter { $0.key > Self.onlineCPUs - 1 }.values.reduce(0, +)) / Double(max(1, samples.values.reduce(0, +)))
        }
        // With slots no two helpers run at once (a sample can only err by the few µs between reading two
        // threads); each process for itself puts two helpers on the CPUs now and then.
        #expect(overFraction(shared.samples) < 0.01, "with slots, helpers running at once by samples: \(shared.samples)")
        #expect(overFraction(alone.samples) > 2 * overFraction(shared.samples),
                "with slots \(shared.samples), without \(alone.samples)")
        print("three processes: with slots \(shared.samples) in \(shared.seconds) s, without \(alone.samples) in \(alone.seconds) s")
        let status = try runKTask(["info", "--format", "json"], environment: ["KTASK_SLOTS": folder])
        let slots = try #require((try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])?["machine_slots"] as? [String: Any])
        #expect(slots["folder"] as? String == folder && slots["slots"] as? Int == Self.onlineCPUs - 1 && slots["held"] as? Int == 0, "\(slots)")
    }
}

/// The processes descended from `root` (children, grandchildren, ...), from /proc/PID/stat's parent field.
func descendants(of root: Int32) -> [Int32] {
    var parents: [Int32: Int32] = [:]
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = Int32(entry), let fields = procStat("/proc/\(pid)/stat")?.fields else { continue }
        if fields.count > 1, let parent = Int32(fields[1]) { parents[pid] = parent }
    }
    var found: [Int32] = [], frontier: Set<Int32> = [root]
    while !frontier.isEmpty {
        let children = parents.filter { frontier.contains($0.value) }.map(\.key)
        found += children
        frontier = Set(children)
    }
    return found
}

let hasPython = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")

/// Starts ktask as make would: the test runner's children inherit a signal mask that blocks SIGINT and
/// SIGTERM, and python ignores SIGPIPE and SIGXFSZ; make's recipes have neither. python clears both,
/// turns core files off (no `core` file left behind), optionally moves itself into the cgroup whose
/// `tasks` file is given, and becomes ktask.
func startWithDefaultSignals(_ arguments: [String], environment: [String: String], cgroupTasks: String? = nil,
                             standardError: FileHandle = .nullDevice) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    process.arguments = ["-c", """
        import os, resource, signal, sys
        for name in ("SIGPIPE", "SIGXFSZ"): signal.signal(getattr(signal, name), signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if sys.argv[1]: open(sys.argv[1], "w").write(str(os.getpid()))
        os.execv(sys.argv[2], sys.argv[2:])
        """, cgroupTasks ?? "", try ktaskExecutable()] + arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    process.standardOutput = FileHandle.nullDevice
    process.standardError = standardError
    try process.run()
    return process
}

@Suite("Sharing the machine: the make jobserver", .serialized)
struct JobserverCLITests {
    /// A fifo jobserver holding `tokens` tokens, as make 4.4 makes one; returns its path and a descriptor
    /// that keeps it open.
    func fifo(tokens: Int) throws -> (path: String, fd: Int32) {
        let path = NSTemporaryDirectory() + "ktask-jobserver-\(getpid())-\(tokens)"
        unlink(path)
        try #require(mkfifo(path, 0o600) == 0)
        let fd = open(path, O_RDWR | O_NONBLOCK)
        try #require(fd >= 0)
        if tokens > 0 { _ = write(fd, Array(repeating: UInt8(ascii: "+"), count: tokens), tokens) }
        return (path, fd)
    }

    /// Tokens in the fifo now (read without waiting, then written back).
    func tokens(in fd: Int32) -> Int {
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = max(0, read(fd, &buffer, buffer.count))
        if count > 0 { _ = write(fd, buffer, count) }
        return count
    }

    @Test("a fifo jobserver: with no free token every job uses 1 thread, with 1 token 2; the fifo ends with the tokens it had",
          arguments: [0, 1])
    func fifoTokens(free: Int) throws {
        let jobserver = try fifo(tokens: free)
        defer { close(jobserver.fd); unlink(jobserver.path) }
        let run = try runKTask(["bench", "--workload", "compute", "--threads", "1,2", "--size", "4M", "--runs", "3", "--format", "json"],
                               environment: ["MAKEFLAGS": "-j2 --jobserver-auth=fifo:\(jobserver.path)", "KTASK_SLOTS": "off"])
        #expect(run.status == 0, "\(run.stderr)")
        let rows = try #require((try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])?["rows"] as? [[String: Any]])
        // Without a token no helper is had ("busy"); with one the helper is had, and works unless (under other
        // tests' load) the caller finished every chunk before the nice-19 helper woke.
        let limit = rows.last?["thread_limit"] as? String
        if free == 0 {
            #expect(rows.last?["threads_used"] as? Int == 1 && limit == "make jobserver tokens held by other jobs", "\(run.stdout)")
        } else {
            #expect(limit != "make jobserver tokens held by other jobs", "\(run.stdout)")
            #expect(rows.last?["threads_used"] as? Int == 2 || limit == "the caller finished before a helper joined", "\(run.stdout)")
        }
        #expect(tokens(in: jobserver.fd) == free, "every token read was written back")
    }

    @Test("killed by a signal whose default action ends it, while a helper holds a token, ktask writes it back first and dies of that signal",
          .enabled(if: hasPython, "needs python3 to start ktask with signals at their defaults: skipped"),
          arguments: [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGABRT, SIGSEGV, SIGBUS, SIGUSR1, SIGALRM, SIGXCPU])
    func signalReturnsTokens(signal: Int32) throws {
        let jobserver = try fifo(tokens: 1)
        defer { close(jobserver.fd); unlink(jobserver.path) }
        // Without the Swift runtime's crash handler (SIGQUIT, SIGABRT, SIGSEGV, SIGBUS...), which prints a
        // backtrace and lets a process that was sent the signal go on (see `swiftCrashHandlerReturns`).
        let process = try startWithDefaultSignals(["bench", "--workload", "compute", "--threads", "2", "--size", "100M", "--runs", "50"],
                                                  environment: ["MAKEFLAGS": "-j2 --jobserver-auth=fifo:\(jobserver.path)",
                                                                "KTASK_SLOTS": "off", "SWIFT_BACKTRACE": "enable=no"])
        guard waitUntilTokenHeld(jobserver.fd, by: process) else { return }
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == signal, "died of the signal, as before")
        #expect(tokens(in: jobserver.fd) == 1, "the token came back")
    }

    static let coreFilesInWorkingFolder = (try? String(contentsOfFile: "/proc/sys/kernel/core_pattern", encoding: .utf8))
        .map { !$0.contains("|") && !$0.contains("/") } == true

    @Test("a signal whose default action dumps core still does, after the token is back",
          .enabled(if: hasPython && coreFilesInWorkingFolder, "needs python3 and a core_pattern that writes into the working folder: skipped"),
          arguments: [SIGQUIT, SIGSEGV])
    func coreDumpStays(signal: Int32) throws {
        let jobserver = try fifo(tokens: 1)
        defer { close(jobserver.fd); unlink(jobserver.path) }
        let folder = NSTemporaryDirectory() + "ktask-core-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // python waits for the token to be taken, sends the signal and reports how ktask ended (the core bit
        // of the wait status); a ktask that does not end is killed after 20 s.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        process.arguments = ["-c", """
            import array, fcntl, os, resource, signal, sys, termios, time
            fifo = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
            child = os.fork()
            if child == 0:
                signal.pthread_sigmask(signal.SIG_SETMASK, [])
                resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                os.execv(sys.argv[3], sys.argv[3:])
            def waiting():
                count = array.array("i", [0]); fcntl.ioctl(fifo, termios.FIONREAD, count); return count[0]
            for _ in range(2000):
                if waiting() == 0: break
                time.sleep(0.005)
            os.kill(child, int(sys.argv[2]))
            for _ in range(2000):
                done, status = os.waitpid(child, os.WNOHANG)
                if done: break
                time.sleep(0.01)
            else:
                os.kill(child, signal.SIGKILL); _, status = os.waitpid(child, 0)
            print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1, int(os.WCOREDUMP(status)))
            """, jobserver.path, "\(signal)", try ktaskExecutable(), "bench", "--workload", "compute", "--threads", "2", "--size", "100M", "--runs", "50"]
        process.environment = ProcessInfo.processInfo.environment.merging(
            ["MAKEFLAGS": "-j2 --jobserver-auth=fifo:\(jobserver.path)", "KTASK_SLOTS": "off", "SWIFT_BACKTRACE": "enable=no"]) { $1 }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(text == "\(signal) 1\n", "the signal that ended ktask and the core bit: \(text)")
        #expect(tokens(in: jobserver.fd) == 1, "the token came back")
    }

    @Test("with the Swift runtime's crash handler first: it prints a backtrace and returns, the process goes on holding its token; a second SIGSEGV ends it and the token comes back",
          .enabled(if: hasPython, "needs python3 to start ktask with signals at their defaults: skipped"))
    func swiftCrashHandlerReturns() throws {
        let jobserver = try fifo(tokens: 1)
        defer { close(jobserver.fd); unlink(jobserver.path) }
        let errorsPath = NSTemporaryDirectory() + "ktask-crash-handler-\(getpid()).txt"
        try #require(FileManager.default.createFile(atPath: errorsPath, contents: nil))
        defer { unlink(errorsPath) }
        let errors = try FileHandle(forWritingTo: URL(fileURLWithPath: errorsPath))
        defer { try? errors.close() }
        let process = try startWithDefaultSignals(["bench", "--workload", "compute", "--threads", "2", "--size", "100M", "--runs", "50"],
                                                  environment: ["MAKEFLAGS": "-j2 --jobserver-auth=fifo:\(jobserver.path)", "KTASK_SLOTS": "off",
                                                                "SWIFT_BACKTRACE": "enable=yes,interactive=no,symbolicate=off"],
                                                  standardError: errors)
        guard waitUntilTokenHeld(jobserver.fd, by: process) else { return }
        let pid = process.processIdentifier
        func catchesSEGV() -> Bool? {
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigCgt:") }),
                  let mask = UInt64(line.dropFirst("SigCgt:".count).trimmingCharacters(in: .whitespaces), radix: 16) else { return nil }
            return mask & (1 << UInt64(SIGSEGV - 1)) != 0
        }
        kill(pid, SIGSEGV)
        // The crash handler sets SIGSEGV to its default before it prints; once it has returned, ktask's
        // handler is back in front of the default action.
        var printed = false, back = false
        for _ in 0..<2000 where process.isRunning && !back {
            if !printed { printed = (try? String(contentsOfFile: errorsPath, encoding: .utf8))?.contains("Program crashed") == true }
            else { back = catchesSEGV() == true }
            usleep(10_000)
        }
        #expect(back && process.isRunning && tokensNow(jobserver.fd) == 0, "after the backtrace the process goes on, holding its token")
        kill(pid, SIGSEGV)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGSEGV)
        #expect(tokens(in: jobserver.fd) == 1, "the token came back")
    }

    /// Waits until a helper of `process` holds the fifo's token; kills it and records an issue if none does.
    func waitUntilTokenHeld(_ fd: Int32, by process: Process) -> Bool {
        for _ in 0..<2000 where process.isRunning {
            if tokensNow(fd) == 0 { return true }
            usleep(1000)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        Issue.record("the helper never took the token")
        return false
    }

    /// Tokens in the fifo without taking them (FIONREAD).
    func tokensNow(_ fd: Int32) -> Int {
        var count: Int32 = 0
        return ioctl(fd, UInt(FIONREAD), &count) == 0 ? Int(count) : -1
    }

    @Test("descriptors MAKEFLAGS names but the process does not have: no jobserver, one warning, the job runs")
    func closedDescriptors() throws {
        let run = try runKTask(["bench", "--workload", "compute", "--threads", "1,2", "--size", "1M", "--runs", "1"],
                               environment: ["MAKEFLAGS": " -j2 --jobserver-auth=97,98", "KTASK_SLOTS": "off"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.components(separatedBy: "not open pipes").count == 2, "one warning: \(run.stderr)")
    }

    @Test("fifo: naming a regular file: refused with one warning, the file neither read nor written, the job runs")
    func fifoRegularFileRefused() throws {
        let path = NSTemporaryDirectory() + "ktask-not-a-fifo-\(getpid())"
        try "ABCD".write(toFile: path, atomically: false, encoding: .utf8)
        defer { unlink(path) }
        var before = stat()
        stat(path, &before)
        let run = try runKTask(["bench", "--workload", "compute", "--threads", "1,2", "--size", "1M", "--runs", "1"],
                               environment: ["MAKEFLAGS": "-j2 --jobserver-auth=fifo:\(path)", "KTASK_SLOTS": "off"])
        var after = stat()
        stat(path, &after)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.components(separatedBy: "is not a fifo").count == 2, "one warning: \(run.stderr)")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "ABCD")
        #expect(after.st_atim.tv_sec == before.st_atim.tv_sec && after.st_atim.tv_nsec == before.st_atim.tv_nsec, "not read")
    }

    @Test("R,W naming the read end of another pipe (the program's own) and make's write end: refused, nothing read from either",
          .enabled(if: hasPython, "needs python3 to pass ktask two pipes: skipped"))
    func pipesOfTwoInodesRefused() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", """
            import array, fcntl, os, subprocess, sys, termios
            make_read, make_write = os.pipe()
            own_read, own_write = os.pipe()
            os.write(make_write, b"+"); os.write(own_write, b"ABCD")
            env = dict(os.environ, MAKEFLAGS=" -j2 --jobserver-auth=%d,%d" % (own_read, make_write), KTASK_SLOTS="off")
            run = subprocess.run(sys.argv[1:], env=env, pass_fds=(own_read, make_write), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            def waiting(fd):
                count = array.array("i", [0]); fcntl.ioctl(fd, termios.FIONREAD, count); return count[0]
            print(run.returncode, waiting(own_read), waiting(make_read))
            sys.stdout.write(run.stderr.decode())
            """, try ktaskExecutable(), "bench", "--workload", "compute", "--threads", "1,2", "--size", "1M", "--runs", "1"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(text.hasPrefix("0 4 1\n"), "exit status, bytes left in the program's pipe (4) and in make's (1): \(text)")
        #expect(text.contains("not the two ends of one pipe"), "\(text)")
    }

    @Test("make -j2 running three ktask recipes: at most one helper beyond the callers, and make gets every token back",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/make"), "needs GNU make: skipped"))
    func makeJobserver() throws {
        let folder = NSTemporaryDirectory() + "ktask-make-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try """
            all: a.json b.json c.json
            %.json:
            \t+$(KTASK) bench --workload compute --threads 1,2 --size 8M --runs 3 --helper-priority caller --format json > $@
            """.write(toFile: folder + "/Makefile", atomically: true, encoding: .utf8)
        let make = Process()
        make.executableURL = URL(fileURLWithPath: "/usr/bin/make")
        make.arguments = ["-j2", "-C", folder, "KTASK=\(try ktaskExecutable())"]
        // Only make's tokens bound the helpers (no slots); helpers at the callers' priority and outside the idle
        // cgroup, so that a second helper would run (see threeProcesses).
        make.environment = ProcessInfo.processInfo.environment.merging(["KTASK_SLOTS": "off", "KTASK_NO_HELPER_CGROUP": "1"]) { $1 }
        let errors = Pipe()
        make.standardError = errors
        make.standardOutput = FileHandle.nullDevice
        try make.run()
        var samples: [Int: Int] = [:], sampler = HelperSampler()
        while make.isRunning {
            samples[sampler.sample(descendants(of: make.processIdentifier)), default: 0] += 1
            usleep(2000)
        }
        make.waitUntilExit()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(make.terminationStatus == 0, "\(stderr)")
        #expect(!stderr.contains("jobserver") && !stderr.contains("INTERNAL"), "make saw its tokens short: \(stderr)")
        for target in ["a", "b", "c"] {
            let rows = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(folder)/\(target).json"))) as? [String: Any])?["rows"]
            #expect(rows != nil, "\(target).json")
        }
        let total = samples.values.reduce(0, +)
        let over = samples.filter { $0.key > 1 }.values.reduce(0, +)
        #expect(total > 50 && over * 100 <= total, "helpers running at once, by samples: \(samples)")
        print("make -j2, three ktask recipes: helpers running at once by samples \(samples)")
    }
}
