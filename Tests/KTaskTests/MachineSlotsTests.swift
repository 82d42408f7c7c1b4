import CKTaskTestEnvironment
import Foundation
import Testing
@testable import KTask

/// A folder for one test, removed with everything in it afterwards.
/// The parent is made with mkdtemp (a predictable name in /tmp could be another user's, which root would
/// then remove) and opened to others (0755) for the tests that run a second user; `path` itself is not made.
struct ScratchFolder: ~Copyable {
    let parent: String
    let path: String
    init(_ name: String) {
        var template = Array((NSTemporaryDirectory() + "ktask-\(name)-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed: \(String(cString: strerror(errno)))")
        parent = String(cString: made!)
        chmod(parent, 0o755)
        path = parent + "/" + name
    }
    deinit { try? FileManager.default.removeItem(atPath: parent) }
}

/// Runs a command as another user (`setpriv`, no supplementary groups) and returns its exit status.
func runAs(_ user: String, group: String, _ arguments: [String]) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
    process.arguments = ["--reuid=\(user)", "--regid=\(group)", "--clear-groups"] + arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus
}

/// A process that holds `file` with flock until it is killed (python3's fcntl.flock), as `user` when given;
/// returns once the lock is held.
func startFlockHolder(_ file: String, as user: (name: String, group: String)? = nil) throws -> Process {
    let holder = Process()
    let script = "import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDONLY)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
        + "print('held', flush=True)\ntime.sleep(120)"
    if let user {
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        holder.arguments = ["--reuid=\(user.name)", "--regid=\(user.group)", "--clear-groups", "/usr/bin/python3", "-c", script, file]
    } else {
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        holder.arguments = ["-c", script, file]
    }
    let output = Pipe()
    holder.standardOutput = output
    try holder.run()
    let said = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
    guard said.hasPrefix("held") else {
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        throw CocoaError(.fileLocking, userInfo: [NSFilePathErrorKey: file])
    }
    return holder
}

func stopHolder(_ holder: Process) {
    kill(holder.processIdentifier, SIGKILL)
    holder.waitUntilExit()
}

func fileStatus(_ path: String) -> stat? {
    var status = stat()
    return lstat(path, &status) == 0 ? status : nil
}

let hasSecondUserTools = FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")
    && FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") && geteuid() == 0

/// Machine-wide slots: every ktask process shares one budget of busy helpers.
@Suite("Machine-wide slots", .serialized, .timeLimit(.minutes(2)))
struct MachineSlotsTests {
    @Test("the tests run with slots off unless told otherwise (they count threads), and off means off")
    func testsRunWithSlotsOff() throws {
        let raw: UnsafePointer<CChar>? = CKTask_test_slots_setting()
        // Set before any test ran: the constructor's "off", or what the caller of `swift test` chose.
        let setting = try #require(raw.map { String(cString: $0) }, "the test environment's constructor did not run")
        #expect((MachineSlots.shared == nil) == (setting == "off"), "KTASK_SLOTS=\(setting), \(MachineSlots.offReason ?? "on")")
    }

    @Test("slots are online CPUs − 1, one file each; a taken slot is held until given back; bad settings are refused")
    func takeAndGive() throws {
        let folder = ScratchFolder("slots")
        let slots = try MachineSlots.open(environment: ["KTASK_SLOTS": folder.path], onlineCPUs: 4).get()
        #expect(slots.count == 3)
        let taken = (0..<4).map { _ in slots.take() }
        #expect(taken.last == .allHeld, "three slots, the fourth take finds none")
        let numbers = taken.compactMap { if case .slot(let slot) = $0 { slot } else { nil } }
        #expect(Set(numbers) == [0, 1, 2])
        #expect(slots.heldCount() == 3, "this process's own flocks, seen in /proc/locks")
        #expect(slots.holders().map(\.pid) == [Int(getpid())] && slots.holders().first?.uid == Int(getuid()))
        slots.give(numbers[0])
        #expect(slots.take() == .slot(numbers[0]))
        for slot in Set(numbers) { slots.give(slot) }
        #expect(slots.heldCount() == 0)
        #expect(throws: MachineSlots.Reason.self) { try MachineSlots.open(environment: ["KTASK_SLOTS": "sometimes"], onlineCPUs: 4).get() }
        #expect(throws: MachineSlots.Reason.self) { try MachineSlots.open(environment: ["KTASK_SLOTS": "off"], onlineCPUs: 4).get() }
    }

    @Test("a helper keeps its slot while it polls after a job and gives it back before it parks: none is left held")
    func slotKeptOnlyWhilePolling() async {
        await #expect(processExitsWith: .success) {
            // A folder of this child's own (the tests run with slots off).
            var template = Array((NSTemporaryDirectory() + "ktask-keep-XXXXXX").utf8CString)
            guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { exit(2) }
            let parent = String(cString: made)
            // exit() runs no defer: the folder is removed before each exit below.
            func finish(_ code: Int32) -> Never {
                try? FileManager.default.removeItem(atPath: parent)
                exit(code)
            }
            chmod(parent, 0o755)
            setenv("KTASK_SLOTS", parent + "/slots", 1)
            guard let slots = MachineSlots.shared else { finish(3) }
            let pool = try KTask.Pool(name: "kt-keep", maxBusyHelpers: 1, isolateHelpers: false)
            // Jobs worth a helper, back to back (the helper polls between them and keeps its slot), some revoked.
            var helped = 0
            for round in 0..<200 {
                let report = try runJob(0..<64, options: KTask.Options(maxThreads: 2, pool: pool)) { chunk in
                    usleep(UInt32(chunk.count) * (round % 2 == 0 ? 20 : 1))
                }
                helped += report.threadsUsed - 1
            }
            guard helped > 0 else { finish(4) }
            // Parked (polling lasts 50 µs of its own time: on a busy machine a starved helper parks, and gives
            // its slot back, only once it runs again): no slot is held any more.
            var held = slots.heldCount()
            for _ in 0..<200 where held != 0 {
                usleep(10_000)
                held = slots.heldCount()
            }
            guard pool.state.idleThreads == pool.state.liveThreads else { finish(5) }
            finish(held == 0 ? 0 : 6)
        }
    }

    @Test("a slot held by another process is not free; when that process is killed it is free at once",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"), "needs python3 for a second process's flock"))
    func killedHolderFreesItsSlot() throws {
        let folder = ScratchFolder("slots-kill")
        let slots = try MachineSlots.open(environment: ["KTASK_SLOTS": folder.path], onlineCPUs: 2).get()
        let holder = try startFlockHolder(folder.path + "/slot.0")
        #expect(slots.take() == .allHeld, "the other process holds the only slot")
        #expect(slots.holders() == [MachineSlots.Holder(pid: Int(holder.processIdentifier), uid: Int(getuid()), slots: [0])])
        stopHolder(holder)
        #expect(slots.take() == .slot(0), "freed by the kernel when the holder died, with no cleanup")
        slots.give(0)
    }

    @Test("a child forked without exec opens the slot files anew: it cannot take a slot its parent holds, nor the parent one it holds")
    func forkedChildHasSlotsOfItsOwn() async {
        // In a process of its own, which forks. The folder is a plain path, removed by the parent alone (a
        // ScratchFolder's deinit would also run in the child).
        await #expect(processExitsWith: .success) {
            var template = Array((NSTemporaryDirectory() + "ktask-slots-fork-XXXXXX").utf8CString)
            guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { exit(9) }
            let parent = String(cString: made)
            let slots = try MachineSlots.open(environment: ["KTASK_SLOTS": parent + "/slots"], onlineCPUs: 3).get()
            var toParent: [Int32] = [0, 0], toChild: [Int32] = [0, 0]
            guard pipe(&toParent) == 0, pipe(&toChild) == 0 else { exit(10) }
            let child = fork()
            if child == 0 {
                // The child takes one slot and holds it until the parent is done (or gone: EOF).
                close(toParent[0])
                close(toChild[1])
                var took: UInt8 = switch slots.take() { case .slot(let slot): UInt8(slot); case .allHeld: 254; case .off: 253 }
                _ = write(toParent[1], &took, 1)
                var done: UInt8 = 0
                _ = read(toChild[0], &done, 1)
                _exit(0)
            }
            close(toParent[1])
            close(toChild[0])
            var childSlot: UInt8 = 255
            let got = read(toParent[0], &childSlot, 1)
            // Before the fix the parent's flock on the shared description succeeded on the child's slot too.
            let parentTakes = (0..<2).map { _ in slots.take() }
            var done: UInt8 = 1
            _ = write(toChild[1], &done, 1)
            var status: Int32 = 0
            waitpid(child, &status, 0)
            try? FileManager.default.removeItem(atPath: parent)
            guard got == 1, childSlot < 2 else { exit(11) }
            guard parentTakes == [.slot(childSlot == 0 ? 1 : 0), .allHeld] else { exit(12) }
        }
    }

    @Test("holders are found past the first 4 MiB of /proc/locks: another user's 100,000 locks listed first hide no one")
    func holdersPastAFloodOfLocks() throws {
        let folder = ScratchFolder("slots-flood")
        let slots = try MachineSlots.open(environment: ["KTASK_SLOTS": folder.path], onlineCPUs: 2).get()
        var status = stat()
        try #require(stat(folder.path + "/slot.0", &status) == 0)
        // As the kernel lists them (about 6 MiB: 100,000 POSIX locks of a flood, then the slot's flock).
        let flood = (1...100_000).map { "\($0): POSIX  ADVISORY  WRITE 4242 00:2a:99 \(2 * $0) \(2 * $0)\n" }.joined()
        let major = String((UInt64(status.st_dev) >> 8) & 0xfff, radix: 16), minor = String(UInt64(status.st_dev) & 0xff, radix: 16)
        let text = flood + "100001: FLOCK  ADVISORY  WRITE \(getpid()) \(major):\(minor):\(status.st_ino) 0 EOF\n"
        let locks = folder.parent + "/locks"
        try text.write(toFile: locks, atomically: false, encoding: .utf8)
        try #require(text.utf8.count > 4 << 20)
        #expect(slots.holders(locksFile: locks).map(\.pid) == [Int(getpid())], "the slot's holder, after the flood")
    }

    /// What a hostile user could put where a slot file goes, as root sees it in a folder root owns.
    enum Plant: String, CaseIterable {
        case hardLink = "a hard link to a root-only file"
        case symbolicLink = "a symbolic link to a root-only file"
        case otherOwner = "a file another user owns"
        case writable = "a root file others may write"
        case fifo = "a FIFO"
    }

    @Test("something planted where a slot file goes is refused with a reason, and left as it was (never chmodded)",
          .enabled(if: geteuid() == 0, "needs root to plant files of other owners"), arguments: Plant.allCases)
    func plantedSlotFileRefused(plant: Plant) throws {
        let folder = ScratchFolder("slots-plant")
        try #require(mkdir(folder.path, 0o755) == 0)
        let secret = folder.path + "/secret", slot = folder.path + "/slot.0"
        try #require(FileManager.default.createFile(atPath: secret, contents: Data("secret".utf8), attributes: [.posixPermissions: 0o600]))
        switch plant {
        case .hardLink: try #require(link(secret, slot) == 0)
        case .symbolicLink: try #require(symlink(secret, slot) == 0)
        case .otherOwner:
            try #require(FileManager.default.createFile(atPath: slot, contents: nil, attributes: [.posixPermissions: 0o644]))
            try #require(chown(slot, 65534, 65534) == 0)
        case .writable:
            try #require(FileManager.default.createFile(atPath: slot, contents: nil, attributes: [.posixPermissions: 0o666]))
        case .fifo: try #require(mkfifo(slot, 0o644) == 0)
        }
        let before = try #require(fileStatus(slot)), secretBefore = try #require(fileStatus(secret))
        let opened = MachineSlots.open(environment: ["KTASK_SLOTS": folder.path], onlineCPUs: 2)
        guard case .failure(let reason) = opened else {
            Issue.record("\(plant.rawValue) was used as a slot file")
            return
        }
        #expect(reason.text.contains("slot.0") && reason.text.contains("refused"), "\(reason.text)")
        let after = try #require(fileStatus(slot)), secretAfter = try #require(fileStatus(secret))
        #expect(after.st_mode == before.st_mode && after.st_uid == before.st_uid && after.st_nlink == before.st_nlink)
        #expect(secretAfter.st_mode == secretBefore.st_mode && secretAfter.st_mode & 0o777 == 0o600, "the root-only file kept its mode")
    }

    @Test("a folder another user owns, or one others may write, is refused and left as it was",
          .enabled(if: geteuid() == 0, "needs root to make another user's folder"))
    func foreignFolderRefused() throws {
        let owned = ScratchFolder("slots-foreign"), open = ScratchFolder("slots-open")
        try #require(mkdir(owned.path, 0o700) == 0 && chown(owned.path, 65534, 65534) == 0)
        try #require(mkdir(open.path, 0o755) == 0 && chmod(open.path, 0o1777) == 0)
        for folder in [owned.path, open.path] {
            let before = try #require(fileStatus(folder))
            #expect(throws: MachineSlots.Reason.self, "\(folder)") {
                try MachineSlots.open(environment: ["KTASK_SLOTS": folder], onlineCPUs: 2).get()
            }
            let after = try #require(fileStatus(folder))
            #expect(after.st_mode == before.st_mode && after.st_uid == before.st_uid)
            #expect(!FileManager.default.fileExists(atPath: folder + "/slot.0"), "nothing made in it")
        }
        // The shared folder as older ktask left it (1777): refused, not "fixed".
        #expect(throws: MachineSlots.Reason.self) { try MachineSlots.open(environment: [:], onlineCPUs: 2, sharedFolder: open.path).get() }
    }

    @Test("root's shared folder: 0755 with 0444 root files; another user cannot create a file there but can take a slot",
          .enabled(if: hasSecondUserTools, "needs root, setpriv and python3"))
    func sharedFolderIsNotWritable() throws {
        let parent = ScratchFolder("slots-run")
        try #require(mkdir(parent.path, 0o755) == 0)
        let folder = parent.path + "/ktask"
        let slots = try MachineSlots.open(environment: [:], onlineCPUs: 3, sharedFolder: folder).get()
        #expect(slots.folder == folder && slots.count == 2 && slots.access.hasPrefix("every user"), "\(slots.access)")
        #expect(fileStatus(folder).map { $0.st_mode & 0o7777 == 0o755 && $0.st_uid == 0 } == true)
        for slot in 0..<2 {
            #expect(fileStatus(folder + "/slot.\(slot)").map { $0.st_mode & 0o7777 == 0o444 && $0.st_uid == 0 } == true)
        }
        #expect(try runAs("nobody", group: "nogroup", ["touch", folder + "/planted"]) != 0, "nobody made a file in root's folder")
        #expect(try runAs("nobody", group: "nogroup", ["sh", "-c", "echo x >> \(folder)/slot.0"]) != 0, "nobody wrote to a slot file")
        #expect(!FileManager.default.fileExists(atPath: folder + "/planted"))
        let holder = try startFlockHolder(folder + "/slot.0", as: ("nobody", "nogroup"))
        defer { stopHolder(holder) }
        #expect(slots.holders() == [MachineSlots.Holder(pid: Int(holder.processIdentifier), uid: 65534, slots: [0])],
                "another user took a slot with a read-only open, and is shown with its uid")
    }

    @Test("a folder restricted to a group (0750 root:GROUP): its access says so; another user cannot open its files",
          .enabled(if: hasSecondUserTools, "needs root, setpriv and python3"))
    func groupRestrictedFolder() throws {
        let folder = ScratchFolder("slots-group")
        try #require(mkdir(folder.path, 0o750) == 0 && chmod(folder.path, 0o750) == 0 && chown(folder.path, 0, 65534) == 0)
        let slots = try MachineSlots.open(environment: ["KTASK_SLOTS": folder.path], onlineCPUs: 2).get()
        #expect(slots.access.hasPrefix("members of group"), "\(slots.access)")
        #expect(fileStatus(folder.path).map { $0.st_mode & 0o7777 == 0o750 } == true, "an existing folder is never chmodded")
        // A member of the group opens the file and locks it; another user cannot even open it.
        #expect(try runAs("nobody", group: "nogroup", ["/usr/bin/python3", "-c",
                                                       "import fcntl, os; fcntl.flock(os.open('\(folder.path)/slot.0', os.O_RDONLY), fcntl.LOCK_EX)"]) == 0)
        #expect(try runAs("daemon", group: "daemon", ["cat", folder.path + "/slot.0"]) != 0)
    }

    @Test("/proc/locks lines: held flocks with their device and inode; waiters and other lock kinds are not holders")
    func procLocksLines() throws {
        let line = try #require(FlockLine("1: FLOCK  ADVISORY  WRITE 1234 fe:01:5678 0 EOF"))
        #expect(line.pid == 1234 && line.inode == 5678 && line.device == 0xfe01)
        #expect(FlockLine("1: -> FLOCK  ADVISORY  WRITE 99 fe:01:5678 0 EOF") == nil)
        #expect(FlockLine("2: OFDLCK ADVISORY  WRITE -1 fe:01:5678 0 0") == nil)
        #expect(FlockLine.device(major: 259, minor: 300) == makedevice(259, 300))
    }
}

/// glibc's makedev, as a function (the macro is not imported).
func makedevice(_ major: UInt64, _ minor: UInt64) -> UInt64 {
    (major & 0x0000_0fff) << 8 | (major & 0xffff_f000) << 32 | (minor & 0x0000_00ff) | (minor & 0xffff_ff00) << 12
}
