import CKTaskTestEnvironment
import Foundation
import Testing
@testable import KTask

/// Machine-wide slots: every ktask process shares one budget of busy helpers.
@Suite("Machine-wide slots", .serialized)
struct MachineSlotsTests {
    @Test("the tests run with slots off unless told otherwise (they count threads), and off means off")
    func testsRunWithSlotsOff() throws {
        let raw: UnsafePointer<CChar>? = CKTask_test_slots_setting()
        // Set before any test ran: the constructor's "off", or what the caller of `swift test` chose.
        let setting = try #require(raw.map { String(cString: $0) }, "the test environment's constructor did not run")
        #expect((MachineSlots.shared == nil) == (setting == "off"), "KTASK_SLOTS=\(setting), \(MachineSlots.offReason ?? "on")")
    }

    @Test("slots are online CPUs − 1; a taken slot is held until given back; a folder another user controls is refused")
    func takeAndGive() throws {
        let folder = NSTemporaryDirectory() + "ktask-slots-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let slots = try MachineSlots.open(environment: ["KTASK_SLOTS": folder], onlineCPUs: 4).get()
        #expect(slots.count == 3)
        let taken = (0..<4).compactMap { _ in slots.take() }
        #expect(Set(taken) == [0, 1, 2], "three slots, the fourth take finds none")
        slots.give(taken[0])
        #expect(slots.take() == taken[0])
        for slot in Set(taken) { slots.give(slot) }

        let open = folder + "-open"
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: false)
        chmod(open, 0o777)
        defer { try? FileManager.default.removeItem(atPath: open) }
        #expect(throws: MachineSlots.Reason.self, "writable by others") { try MachineSlots.open(environment: ["KTASK_SLOTS": open], onlineCPUs: 4).get() }
        #expect(throws: MachineSlots.Reason.self) { try MachineSlots.open(environment: ["KTASK_SLOTS": "sometimes"], onlineCPUs: 4).get() }
        #expect(throws: MachineSlots.Reason.self) { try MachineSlots.open(environment: ["KTASK_SLOTS": "off"], onlineCPUs: 4).get() }
    }

    @Test("a slot held by another process is not free; when that process is killed it is free at once")
    func killedHolderFreesItsSlot() throws {
        let folder = NSTemporaryDirectory() + "ktask-slots-kill-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let slots = try MachineSlots.open(environment: ["KTASK_SLOTS": folder], onlineCPUs: 2).get()
        // Another process takes the one slot (a shell's flock would be a different lock kind: python's OFD lock).
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        holder.arguments = ["python3", "-c", """
            import fcntl, os, struct, sys, time
            fd = os.open(sys.argv[1], os.O_RDWR)
            fcntl.fcntl(fd, 38, struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 1, 0))  # F_OFD_SETLK on byte 0
            print('held', flush=True)
            time.sleep(60)
            """, folder + "/slots"]
        let output = Pipe()
        holder.standardOutput = output
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"), "needs python3 for a second process's OFD lock")
        try holder.run()
        _ = output.fileHandleForReading.availableData
        #expect(slots.take() == nil, "the other process holds the only slot")
        #expect(slots.heldCount() == 1)
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        let slot = slots.take()
        #expect(slot == 0, "freed by the kernel when the holder died, with no cleanup")
        if let slot { slots.give(slot) }
    }
}
