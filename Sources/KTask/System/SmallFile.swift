#if canImport(Glibc)
import Glibc
#endif

/// The most a sysfs/procfs/cgroup file is read (sysfs files are one page; a big mount table is a few
/// hundred KiB): a file that claims more is cut there, so a symlink to a device cannot exhaust memory.
let smallFileLimit = 4 << 20

/// Reads a small text file (sysfs, procfs, cgroupfs) whole; nil if it cannot be opened or read, or is not
/// a regular file. Opened non-blocking and checked with fstat first: a FIFO or a device where a file is
/// expected neither blocks nor reads without end.
func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var status = stat()
    guard fstat(fd, &status) == 0, status.st_mode & S_IFMT == S_IFREG else { return nil }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while bytes.count < smallFileLimit {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, min($0.count, smallFileLimit - bytes.count)) }
        if n < 0 { return nil }
        if n == 0 { break }
        bytes.append(contentsOf: buffer[..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Calls `body` with each line of a file, however long the file (getline): for a procfs listing that any
/// user can make long (`/proc/locks`), where a size limit would hide what comes last.
func forEachLine(of path: String, _ body: (Substring) -> Void) {
    guard let file = fopen(path, "re") else { return }
    defer { fclose(file) }
    var buffer: UnsafeMutablePointer<CChar>?
    var capacity = 0
    defer { free(buffer) }
    while getline(&buffer, &capacity, file) > 0, let buffer {
        let line = String(cString: buffer)
        body(line.hasSuffix("\n") ? line.dropLast() : Substring(line))
    }
}
