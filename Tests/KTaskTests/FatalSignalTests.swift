import CKTaskShims
import Foundation
import Testing
@testable import KTask

/// What the host's own SIGINT handler saw (written by the handler, read after it ran, in an exit test's process).
nonisolated(unsafe) private var hostSignalNumber: Int32 = 0
nonisolated(unsafe) private var hostSenderPID: Int32 = 0
nonisolated(unsafe) private var hostCalls = 0

/// In this (exit test's) process: a fifo jobserver with `tokens` tokens named in MAKEFLAGS and connected,
/// then its path removed (nothing is left behind if the process dies); returns a descriptor that keeps it.
private func connectJobserver(tokens: Int) -> Int32 {
    let path = NSTemporaryDirectory() + "ktask-fatal-\(getpid())"
    unlink(path)
    guard mkfifo(path, 0o600) == 0 else { exit(90) }
    let holder = open(path, O_RDWR | O_NONBLOCK)
    guard holder >= 0 else { exit(91) }
    _ = write(holder, Array(repeating: UInt8(ascii: "+"), count: tokens), tokens)
    setenv("MAKEFLAGS", " -j2 --jobserver-auth=fifo:\(path)", 1)
    let connected = Jobserver.shared != nil
    unlink(path)
    guard connected else { exit(92) }
    return holder
}

/// Tokens in the fifo now, without taking them (FIONREAD).
private func tokensWaiting(_ fd: Int32) -> Int32 {
    var count: Int32 = 0
    return ioctl(fd, UInt(FIONREAD), &count) == 0 ? count : -1
}

/// fork(2), which Swift does not import: the tests need a child that inherits the atexit hook and handlers.
private func forkProcess() -> pid_t {
    typealias Fork = @convention(c) () -> pid_t
    guard let symbol = dlsym(nil, "fork") else { exit(93) }
    return unsafeBitCast(symbol, to: Fork.self)()
}

/// The thread that the second fatal signal goes to in `overlappingSignals` (another thread's pthread_t).
nonisolated(unsafe) private var idleThread: pthread_t?

/// In an exit test's process: the fifo the parent made (named by `label` and the parent's pid) as the
/// jobserver, 3 tokens held, the fifo filled so that the handler's first write blocks; then SIGTERM on
/// this thread, and while its handler waits to write, SIGINT to this thread or to another one; then
/// the filler is read away. Every token must reach the fifo before the process dies.
private func overlappingSignals(label: String, secondToSameThread: Bool) -> Never {
    let path = NSTemporaryDirectory() + "ktask-\(label)-\(getppid())"
    setenv("MAKEFLAGS", " -j4 --jobserver-auth=fifo:" + path, 1)
    guard let jobserver = Jobserver.shared else { exit(2) }
    for _ in 0..<3 where jobserver.take() == nil { exit(3) }
    let filler = open(path, O_RDWR | O_NONBLOCK)
    guard filler >= 0 else { exit(4) }
    var filled = 0, byte = UInt8(ascii: "f")
    while write(filler, &byte, 1) == 1 { filled += 1 }
    var both = sigset_t()
    sigemptyset(&both)
    sigaddset(&both, SIGTERM)
    sigaddset(&both, SIGINT)
    pthread_sigmask(SIG_UNBLOCK, &both, nil)
    if !secondToSameThread {
        Thread.detachNewThread {
            idleThread = pthread_self()
            while true { sleep(1) }
        }
    }
    let first = pthread_self(), fillerBytes = filled
    Thread.detachNewThread {
        usleep(300_000)
        let target = secondToSameThread ? first : idleThread!
        pthread_kill(target, SIGINT)
        usleep(300_000)
        var drained = 0, chunk = [UInt8](repeating: 0, count: 4096)
        while drained < fillerBytes {
            let got = read(filler, &chunk, min(chunk.count, fillerBytes - drained))
            if got > 0 { drained += got } else { usleep(1000) }
        }
        while true { sleep(1) }
    }
    raise(SIGTERM)
    exit(5)
}

/// Runs `overlappingSignals` in an exit test and returns the tokens (`+`) that reached the fifo.
private func tokensAfterOverlappingSignals(label: String, _ body: () async -> Void) async throws -> Int32 {
    let path = NSTemporaryDirectory() + "ktask-\(label)-\(getpid())"
    unlink(path)
    try #require(mkfifo(path, 0o600) == 0)
    defer { unlink(path) }
    let holder = open(path, O_RDWR | O_NONBLOCK)
    try #require(holder >= 0)
    defer { close(holder) }
    var tokens = [UInt8](repeating: UInt8(ascii: "+"), count: 3)
    try #require(write(holder, &tokens, 3) == 3)
    await body()
    // Count the tokens only: filler the child did not read away is no token.
    var tokensBack: Int32 = 0, chunk = [UInt8](repeating: 0, count: 4096)
    while case let got = read(holder, &chunk, chunk.count), got > 0 {
        tokensBack += Int32(chunk[..<got].filter { $0 == UInt8(ascii: "+") }.count)
    }
    return tokensBack
}

/// The fatal-signal handlers that give make's tokens back: in front of the host's handlers, never in their way.
@Suite("Fatal signals: chaining to the host's handlers, forked children", .serialized, .timeLimit(.minutes(2)))
struct FatalSignalTests {
    @Test("an earlier SA_SIGINFO|SA_RESTART handler gets the real siginfo, a blocked read() is restarted, and as it returns the token stays held")
    func chainsExactly() async {
        await #expect(processExitsWith: .success) {
            var host = sigaction()
            host.__sigaction_handler.sa_sigaction = { signal, info, _ in
                hostSignalNumber = info?.pointee.si_signo ?? -1
                hostSenderPID = info?.pointee._sifields._kill.si_pid ?? -1
                hostCalls += 1
            }
            host.sa_flags = SA_SIGINFO | SA_RESTART
            sigemptyset(&host.sa_mask)
            guard sigaction(SIGINT, &host, nil) == 0 else { exit(2) }
            let holder = connectJobserver(tokens: 1)
            guard Jobserver.shared?.take() != nil else { exit(3) }
            var ends: [Int32] = [0, 0]
            guard pipe(&ends) == 0 else { exit(4) }
            var interrupt = sigset_t()
            sigemptyset(&interrupt)
            sigaddset(&interrupt, SIGINT)
            pthread_sigmask(SIG_UNBLOCK, &interrupt, nil)
            // SIGINT to this thread while it waits in read(), then the byte that read() waits for.
            let reader = pthread_self(), writeEnd = ends[1]
            Thread.detachNewThread {
                usleep(200_000)
                pthread_kill(reader, SIGINT)
                usleep(200_000)
                var byte = UInt8(ascii: "x")
                _ = write(writeEnd, &byte, 1)
            }
            var byte: UInt8 = 0
            let got = read(ends[0], &byte, 1)
            guard got == 1 else { exit(errno == EINTR ? 10 : 11) }
            guard hostCalls == 1, hostSignalNumber == SIGINT, hostSenderPID == getpid() else { exit(12) }
            // The host's handler returned: the process goes on, and so does its hold on the token.
            guard CKTask_jobserver_held() == 1, tokensWaiting(holder) == 0 else { exit(13) }
            exit(0)
        }
    }

    @Test("an earlier one-shot (SA_RESETHAND) handler: the first SIGINT runs it and the token stays held; the second is the default action, after the token is back")
    func oneShotHandler() async throws {
        let path = NSTemporaryDirectory() + "ktask-one-shot-\(getpid())"
        unlink(path)
        try #require(mkfifo(path, 0o600) == 0)
        defer { unlink(path) }
        let holder = open(path, O_RDWR | O_NONBLOCK)
        try #require(holder >= 0)
        defer { close(holder) }
        var token = UInt8(ascii: "+")
        try #require(write(holder, &token, 1) == 1)
        await #expect(processExitsWith: .signal(SIGINT)) {
            var host = sigaction()
            host.__sigaction_handler.sa_sigaction = { _, _, _ in hostCalls += 1 }
            host.sa_flags = SA_SIGINFO | Int32(bitPattern: UInt32(SA_RESETHAND))
            sigemptyset(&host.sa_mask)
            guard sigaction(SIGINT, &host, nil) == 0 else { exit(2) }
            setenv("MAKEFLAGS", " -j2 --jobserver-auth=fifo:" + NSTemporaryDirectory() + "ktask-one-shot-\(getppid())", 1)
            guard let jobserver = Jobserver.shared, jobserver.take() != nil else { exit(3) }
            var interrupt = sigset_t()
            sigemptyset(&interrupt)
            sigaddset(&interrupt, SIGINT)
            pthread_sigmask(SIG_UNBLOCK, &interrupt, nil)
            raise(SIGINT)
            guard hostCalls == 1, CKTask_jobserver_held() == 1 else { exit(4) }
            raise(SIGINT)
            exit(5)
        }
        #expect(tokensWaiting(holder) == 1, "the token came back before the default action")
    }

    @Test("an earlier handler that calls exit(): the atexit hook gives the token back")
    func hostHandlerExits() async throws {
        let path = NSTemporaryDirectory() + "ktask-host-exits-\(getpid())"
        unlink(path)
        try #require(mkfifo(path, 0o600) == 0)
        defer { unlink(path) }
        let holder = open(path, O_RDWR | O_NONBLOCK)
        try #require(holder >= 0)
        defer { close(holder) }
        var token = UInt8(ascii: "+")
        try #require(write(holder, &token, 1) == 1)
        await #expect(processExitsWith: .exitCode(7)) {
            var host = sigaction()
            host.__sigaction_handler.sa_handler = { _ in exit(7) }
            sigemptyset(&host.sa_mask)
            guard sigaction(SIGTERM, &host, nil) == 0 else { exit(2) }
            setenv("MAKEFLAGS", " -j2 --jobserver-auth=fifo:" + NSTemporaryDirectory() + "ktask-host-exits-\(getppid())", 1)
            guard let jobserver = Jobserver.shared, jobserver.take() != nil else { exit(3) }
            var terminate = sigset_t()
            sigemptyset(&terminate)
            sigaddset(&terminate, SIGTERM)
            pthread_sigmask(SIG_UNBLOCK, &terminate, nil)
            raise(SIGTERM)
            exit(5)
        }
        #expect(tokensWaiting(holder) == 1, "the token came back")
    }

    @Test("a forked child that exits (atexit) or dies of SIGTERM writes none of the parent's tokens")
    func forkedChildWritesNothing() async {
        await #expect(processExitsWith: .success) {
            let holder = connectJobserver(tokens: 1)
            guard Jobserver.shared?.take() != nil, tokensWaiting(holder) == 0 else { exit(2) }
            for ending in ["exit", "SIGTERM"] {
                let child = forkProcess()
                if child == 0 {
                    if ending == "exit" { exit(0) }
                    var terminate = sigset_t()
                    sigemptyset(&terminate)
                    sigaddset(&terminate, SIGTERM)
                    pthread_sigmask(SIG_UNBLOCK, &terminate, nil)
                    raise(SIGTERM)
                    _exit(5)
                }
                var status: Int32 = 0
                guard child > 0, waitpid(child, &status, 0) == child else { exit(3) }
                guard tokensWaiting(holder) == 0 else { exit(ending == "exit" ? 10 : 11) }
            }
            exit(CKTask_jobserver_held() == 1 ? 0 : 12)
        }
    }
    @Test("a second fatal signal to the same thread while the first one's handler writes tokens back: all 3 come back, then the first signal's default action")
    func overlappingOnOneThread() async throws {
        let back = try await tokensAfterOverlappingSignals(label: "overlap-same") {
            await #expect(processExitsWith: .signal(SIGTERM)) {
                overlappingSignals(label: "overlap-same", secondToSameThread: true)
            }
        }
        #expect(back == 3, "\(back) of 3 tokens came back")
    }

    @Test("a fatal signal on another thread while the first one's handler writes tokens back waits for it: all 3 come back")
    func overlappingOnTwoThreads() async throws {
        let back = try await tokensAfterOverlappingSignals(label: "overlap-two") {
            await #expect(processExitsWith: .failure) {
                overlappingSignals(label: "overlap-two", secondToSameThread: false)
            }
        }
        #expect(back == 3, "\(back) of 3 tokens came back")
    }

    @Test("make's write descriptor closed after setup and its number reused for a file: tokens still go to the pipe, the file stays empty")
    func writeDescriptorReused() async {
        await #expect(processExitsWith: .success) {
            var ends: [Int32] = [0, 0]
            guard pipe(&ends) == 0 else { exit(2) }
            var token = UInt8(ascii: "+")
            guard write(ends[1], &token, 1) == 1 else { exit(3) }
            setenv("MAKEFLAGS", " -j2 --jobserver-auth=\(ends[0]),\(ends[1])", 1)
            guard let jobserver = Jobserver.shared, let taken = jobserver.take() else { exit(4) }
            // The host closes what it inherited and opens a log, which gets the same number.
            let log = NSTemporaryDirectory() + "ktask-reused-fd-\(getpid())"
            let file = open(log, O_CREAT | O_RDWR | O_TRUNC, 0o600)
            unlink(log)
            guard file >= 0, close(ends[1]) == 0, dup2(file, ends[1]) == ends[1] else { exit(5) }
            jobserver.give(taken)
            var status = stat()
            guard fstat(file, &status) == 0, status.st_size == 0 else { exit(6) }
            exit(tokensWaiting(ends[0]) == 1 ? 0 : 7)
        }
    }
}
