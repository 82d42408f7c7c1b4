import Foundation
import Testing
@testable import KTask

#if canImport(Glibc)
import Glibc
#endif

/// The library's refusals of a file name its own parameters (in backticks), never a flag of the ktask tool:
/// a program using ktask has no `--size`.
@Suite("A refused file names the MappedFile parameter to change, not a tool's flag")
struct FileRefusalWordingTests {
    func refusal(_ open: () throws -> KTask.MappedFile) -> String? {
        do {
            _ = try open()
            return nil
        } catch let KTask.Error.fileUnusable(_, reason) {
            return reason
        } catch {
            return "\(error)"
        }
    }

    @Test("a missing file: give `size` to create it")
    func missing() {
        let path = "/dev/shm/ktask-missing-\(getpid())"
        #expect(refusal { try KTask.MappedFile(path: path) } == "does not exist; give `size` to create a tmpfs or hugetlbfs file")
    }

    @Test("an empty tmpfs file: give `size` to extend it")
    func empty() throws {
        let path = "/dev/shm/ktask-empty-\(getpid())"
        try #require(FileManager.default.createFile(atPath: path, contents: nil))
        defer { unlink(path) }
        #expect(refusal { try KTask.MappedFile(path: path) } == "is empty; give `size` to extend a tmpfs or hugetlbfs file")
    }

    @Test("a file on disk: drop `writable`, or drop `size` to extend it")
    func onDisk() throws {
        let path = NSTemporaryDirectory() + "ktask-refusal-\(getpid()).disk"
        try Data(count: 4096).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        try #require(try KTask.MappedFile(path: path).kind == .pageCache, "the temporary folder is on a disk filesystem")
        #expect(refusal { try KTask.MappedFile(path: path, writable: true) }
                == "is on a disk filesystem: it is only read into the page cache, never written (drop `writable`)")
        #expect(refusal { try KTask.MappedFile(path: path, size: 8192) }
                == "is on a disk filesystem: only tmpfs or hugetlbfs files are created or extended (drop `size` or make it at most the file's size)")
    }
}
