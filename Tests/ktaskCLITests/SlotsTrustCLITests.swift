import Foundation
import Testing

/// Who may do what with the machine-wide slots (issue 17, cases 7, 9 and 10), through the tool: root's
/// folder in a private mount namespace (a tmpfs on /run, so the machine's /run/ktask is never touched), a
/// slot held by another user and seen by a third, a lock error, and tune with the helpers refused.
@Suite("Sharing the machine: who may take machine-wide slots", .serialized, .timeLimit(.minutes(3)))
struct SlotsTrustCLITests {
    static let canSwitchUsers = geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")

    /// A folder name for one test, inside a scratch folder of its own (removed with `remove`).
    func scratch(_ name: String) throws -> String { try makeScratchFolder(name) + "/" + name }

    /// Removes a folder `scratch` named, with its parent.
    func remove(_ folder: String) { try? FileManager.default.removeItem(atPath: (folder as NSString).deletingLastPathComponent) }

    /// Runs a shell script in a private mount namespace with an empty 1 MiB tmpfs on /run.
    func inPrivateRun(_ script: String) throws -> (status: Int32, stdout: String, stderr: String) {
        try runCommand("/usr/bin/unshare", ["-m", "sh", "-ec", "mount -t tmpfs -o size=1M tmpfs /run\n" + script],
                       environment: ["KTASK": try ktaskExecutable()])
    }

    /// A process of `user` (nil: this one's) holding `file` with flock until killed; returns once it holds it.
    func flockHolder(_ file: String, user: String?) throws -> Process {
        let holder = Process()
        let script = "import fcntl, os, sys, time\nfcntl.flock(os.open(sys.argv[1], os.O_RDONLY), fcntl.LOCK_EX)\n"
            + "print('held', flush=True)\ntime.sleep(120)"
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        holder.arguments = (user.map { ["--reuid=\($0)", "--regid=nogroup", "--clear-groups"] } ?? []) + ["/usr/bin/python3", "-c", script, file]
        let output = Pipe()
        holder.standardOutput = output
        try holder.run()
        guard String(decoding: output.fileHandleForReading.availableData, as: UTF8.self).hasPrefix("held") else {
            kill(holder.processIdentifier, SIGKILL)
            holder.waitUntilExit()
            throw CocoaError(.fileLocking, userInfo: [NSFilePathErrorKey: file])
        }
        return holder
    }

    func stop(_ holder: Process) {
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
    }

    @Test("root's first run makes /run/ktask 0755 with 0444 root slot files, whatever its umask: no other user can create or write anything there",
          .enabled(if: canSwitchUsers, "needs root, setpriv and a private mount namespace"))
    func runFolderNotWritable() throws {
        // Under a strict umask too: the modes of what root has just made are set past it.
        let run = try inPrivateRun("""
            umask 077
            KTASK_SLOTS=on "$KTASK" info | grep 'machine-wide slots'
            stat -c '%a %U %F %n' /run/ktask /run/ktask/*
            setpriv --reuid=nobody --regid=nogroup --clear-groups touch /run/ktask/planted 2>/dev/null && echo 'nobody created a file'
            setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c 'echo x >> /run/ktask/slot.0' 2>/dev/null && echo 'nobody wrote'
            true
            """)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.hasPrefix("machine-wide slots: \(ShareCLITests.onlineCPUs - 1) in /run/ktask "), "on: \(run.stdout)")
        #expect(run.stdout.contains("755 root directory /run/ktask\n"), "\(run.stdout)")
        #expect(run.stdout.contains("444 root regular empty file /run/ktask/slot.0\n"), "\(run.stdout)")
        #expect(!run.stdout.contains("nobody created a file") && !run.stdout.contains("nobody wrote"), "\(run.stdout)")
    }

    @Test("an existing /run/ktask that others may write (as older ktask made it), or a planted hard link in it, is refused and left as it was",
          .enabled(if: canSwitchUsers, "needs root and a private mount namespace"))
    func staleRunFolderRefused() throws {
        let run = try inPrivateRun("""
            mkdir -m 1777 /run/ktask
            echo secret > /run/secret && chmod 600 /run/secret && ln /run/secret /run/ktask/slot.0
            KTASK_SLOTS=on "$KTASK" info | grep 'machine-wide slots'
            chmod 755 /run/ktask
            KTASK_SLOTS=on "$KTASK" info | grep 'machine-wide slots'
            stat -c '%a %U %h %n' /run/ktask /run/secret
            """)
        #expect(run.status == 0, "\(run.stderr)")
        let lines = run.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 4, "\(run.stdout)")
        guard lines.count == 4 else { return }
        #expect(lines[0].contains("/run/ktask is writable by group or others") && lines[0].contains("refused"), "\(lines[0])")
        #expect(lines[1].contains("/run/ktask/slot.0 has 2 links") && lines[1].contains("refused"), "\(lines[1])")
        #expect(lines[2] == "755 root 2 /run/ktask" && lines[3] == "600 root 2 /run/secret", "never chmodded: \(run.stdout)")
    }

    @Test("a slot held by another user's process is shown, with that uid, to a third user's ktask info",
          .enabled(if: canSwitchUsers, "needs root, setpriv and python3"))
    func holderShownWithUID() throws {
        let folder = try scratch("slots-holder")
        defer { remove(folder) }
        #expect(try runKTask(["info"], environment: ["KTASK_SLOTS": folder]).status == 0, "root makes the folder and its files")
        let holder = try flockHolder(folder + "/slot.0", user: "nobody")
        defer { stop(holder) }
        let info = try runCommand("/usr/bin/setpriv", ["--reuid=daemon", "--regid=daemon", "--clear-groups", try ktaskExecutable(),
                                                       "info", "--format", "json"], environment: ["KTASK_SLOTS": folder])
        #expect(info.status == 0, "\(info.stderr)")
        let slots = try #require((try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])?["machine_slots"] as? [String: Any])
        let holders = slots["holder_processes"] as? [[String: Any]] ?? []
        #expect(holders.count == 1 && holders.first?["pid"] as? Int == Int(holder.processIdentifier), "\(slots)")
        #expect(holders.first?["uid"] as? Int == 65534 && holders.first?["user"] as? String == "nobody", "\(slots)")
        #expect(slots["held"] as? Int == 1 && (slots["trust"] as? String)?.contains("uid") == true, "\(slots)")
        let table = try runCommand("/usr/bin/setpriv", ["--reuid=daemon", "--regid=daemon", "--clear-groups", try ktaskExecutable(), "info"],
                                   environment: ["KTASK_SLOTS": folder])
        #expect(table.stdout.contains("1 held by pid \(holder.processIdentifier) (uid 65534 nobody)"), "\(table.stdout)")
    }

    @Test("an admin's 0750 root:GROUP folder: info tells a member it may take the slots, and another user that they are restricted to the group",
          .enabled(if: canSwitchUsers, "needs root and setpriv"))
    func groupRestricted() throws {
        let folder = try scratch("slots-group")
        defer { remove(folder) }
        try #require(mkdir(folder, 0o750) == 0 && chmod(folder, 0o750) == 0 && chown(folder, 0, 65534) == 0)
        #expect(try runKTask(["info"], environment: ["KTASK_SLOTS": folder]).status == 0, "root makes the slot files")
        func info(as user: String, group: String) throws -> String {
            try runCommand("/usr/bin/setpriv", ["--reuid=\(user)", "--regid=\(group)", "--clear-groups", try ktaskExecutable(), "info"],
                           environment: ["KTASK_SLOTS": folder]).stdout
        }
        let member = try info(as: "nobody", group: "nogroup"), outsider = try info(as: "daemon", group: "daemon")
        #expect(member.contains("who may take them: members of group nogroup"), "\(member)")
        #expect(outsider.contains("machine-wide slots: off: \(folder) cannot be opened (Permission denied): slots restricted to group nogroup"),
                "\(outsider)")
    }

    @Test("a lock error other than \"held\" turns the slots off for the process, with a warning saying why; the job keeps its helpers",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/strace"), "needs strace to make flock fail"))
    func lockErrorTurnsSlotsOff() throws {
        let folder = try scratch("slots-enolck")
        defer { remove(folder) }
        let run = try runCommand("/usr/bin/strace", ["-f", "-qq", "-o", "/dev/null", "-e", "trace=flock", "-e", "inject=flock:error=ENOLCK",
                                                     try ktaskExecutable(), "bench", "--workload", "compute", "--threads", "2",
                                                     "--size", "4M", "--runs", "2", "--format", "json"],
                                 environment: ["KTASK_SLOTS": folder])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.components(separatedBy: "warning: machine-wide slots off: locking \(folder)/slot.").count == 2
                && run.stderr.contains("No locks available"), "one warning, with the error: \(run.stderr)")
        let rows = (try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])?["rows"] as? [[String: Any]] ?? []
        #expect(!rows.isEmpty && rows.allSatisfy { ($0["thread_limit"] as? String)?.contains("slots") == false }, "\(run.stdout)")
    }

    @Test("tune does not save a knee measured while other processes held the machine-wide slots, and says why",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") && ShareCLITests.onlineCPUs >= 2,
                   "needs python3 and 2 CPUs"))
    func tuneRefusesWithSlotsHeld() throws {
        let folder = try scratch("slots-tune")
        defer { remove(folder) }
        let profile = folder + "/profile.json"
        #expect(try runKTask(["info"], environment: ["KTASK_SLOTS": folder]).status == 0)
        let tune = ["tune", "--workload", "compute", "--size", "1M", "--runs", "1", "--max-threads", "2", "--output", profile]
        let holders = try (0..<(ShareCLITests.onlineCPUs - 1)).map { try flockHolder(folder + "/slot.\($0)", user: nil) }
        let refused = try runKTask(tune, environment: ["KTASK_SLOTS": folder])
        for holder in holders { stop(holder) }
        #expect(refused.status == 1, "\(refused.stdout) \(refused.stderr)")
        #expect(refused.stderr.contains("machine-wide slots were held by other processes") && refused.stderr.contains("not saved"),
                "\(refused.stderr)")
        #expect(refused.stdout.contains("helpers refused: machine-wide slots held by other jobs"), "\(refused.stdout)")
        #expect(!FileManager.default.fileExists(atPath: profile), "no profile written")
        let saved = try runKTask(tune, environment: ["KTASK_SLOTS": folder])
        #expect(saved.status == 0 && FileManager.default.fileExists(atPath: profile), "with the slots free it saves: \(saved.stderr)")
    }
}
