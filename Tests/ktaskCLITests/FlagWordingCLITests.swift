import Foundation
import Testing

/// The library names its parameters (`size`, `writable`, `allowOtherOwner`); `ktask populate` says the
/// flag its user gives instead.
@Suite("ktask populate: a refusal names the flag to give or drop")
struct FlagWordingCLITests {
    @Test("missing, empty and disk files: --size and --write, no library parameter names")
    func refusalsNameFlags() throws {
        let missing = "/dev/shm/ktask-flags-missing-\(getpid())"
        let empty = "/dev/shm/ktask-flags-empty-\(getpid())"
        try #require(FileManager.default.createFile(atPath: empty, contents: nil))
        defer { unlink(empty) }
        let disk = NSTemporaryDirectory() + "ktask-flags-\(getpid()).disk"
        try Data(count: 4096).write(to: URL(fileURLWithPath: disk))
        defer { unlink(disk) }
        let cases: [([String], String)] = [
            (["populate", missing], "\(missing): does not exist; give --size to create a tmpfs or hugetlbfs file"),
            (["populate", empty], "\(empty): is empty; give --size to extend a tmpfs or hugetlbfs file"),
            (["populate", disk, "--write"], "\(disk): is on a disk filesystem: it is only read into the page cache, never written (drop --write)"),
            (["populate", disk, "--size", "8K"],
             "\(disk): is on a disk filesystem: only tmpfs or hugetlbfs files are created or extended (drop --size or make it at most the file's size)"),
        ]
        for (arguments, message) in cases {
            let run = try runKTask(arguments)
            #expect(run.status == 1, "\(arguments): \(run.stderr)")
            #expect(run.stderr == "ktask: \(message)\n", "\(arguments)")
        }
        #expect(!FileManager.default.fileExists(atPath: missing))
    }
}
