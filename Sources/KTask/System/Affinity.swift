import CKTaskShims

#if canImport(Glibc)
import Glibc
#endif

/// CPU affinity masks: read and set with the kernel's bitmask, built and walked here.
package enum Affinity {
    /// Words of the first mask tried: 1024 CPUs, on the stack.
    private static let smallWords = 16
    /// The largest mask tried (the kernel's NR_CPUS limit is 8192; 4M leaves room).
    private static let largestCPUCount = 1 << 22

    /// `sched_getaffinity(2)` of the calling thread; nil if it fails.
    package static func current() -> CPUList? { of(thread: 0) }

    /// The main thread's mask: what `taskset` set for the process, as opposed to one thread's pinning.
    package static func process() -> CPUList? { of(thread: getpid()) }

    /// The mask of a thread (0: the calling one) as a list; nil if the call fails.
    static func of(thread tid: Int32) -> CPUList? {
        withMask(of: tid) { words in
            var cpus: [Int] = []
            for (index, word) in words.enumerated() {
                var bits = word
                while bits != 0 {
                    cpus.append(index * UInt.bitWidth + bits.trailingZeroBitCount)
                    bits &= bits - 1
                }
            }
            return CPUList(sortedUnique: cpus)
        }
    }

    /// Calls `body` with the thread's mask; tries 1024 CPUs on the stack, then larger masks.
    static func withMask<T>(of tid: Int32, _ body: (UnsafeBufferPointer<UInt>) -> T) -> T? {
        var words = smallWords
        while words * UInt.bitWidth <= largestCPUCount {
            let result: T?? = withUnsafeTemporaryAllocation(of: UInt.self, capacity: words) { mask in
                mask.initialize(repeating: 0)
                if CKTask_sched_getaffinity(tid, mask.count * MemoryLayout<UInt>.size, mask.baseAddress) == 0 {
                    return .some(body(UnsafeBufferPointer(mask)))
                }
                return errno == EINVAL ? .none : .some(nil)
            }
            if let result { return result }
            words *= 2
        }
        return nil
    }

    /// Pins the calling thread to `cpus`; false if the kernel refused (e.g. none of them allowed).
    @discardableResult
    static func pinCurrentThread(to cpus: CPUList) -> Bool {
        let highest = cpus.cpus.last ?? 0
        let words = max(smallWords, highest / UInt.bitWidth + 1)
        return withUnsafeTemporaryAllocation(of: UInt.self, capacity: words) { mask in
            mask.initialize(repeating: 0)
            for cpu in cpus.cpus { mask[cpu / UInt.bitWidth] |= 1 << UInt(cpu % UInt.bitWidth) }
            return CKTask_sched_setaffinity(mask.count * MemoryLayout<UInt>.size, mask.baseAddress) == 0
        }
    }

    /// The CPU the calling thread is running on now (`sched_getcpu`), or −1.
    static func currentCPU() -> Int { Int(CKTask_sched_getcpu()) }
}

#if canImport(Glibc)
import Glibc
#endif
