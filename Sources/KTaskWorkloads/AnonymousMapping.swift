#if canImport(Glibc)
import Glibc
#endif

/// An anonymous private mapping, unmapped when released.
final class AnonymousMapping: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let bytes: Int

    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    init(bytes: Int) throws(WorkloadError) {
        guard let address = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              address != MAP_FAILED
        else { throw .mapFailed(bytes: bytes, errno: errno) }
        base = address
        self.bytes = bytes
    }

    deinit { munmap(base, bytes) }
}
