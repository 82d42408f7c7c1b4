#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A pthread mutex with condition variables on the monotonic clock.
///
/// ktask parks helper threads and waits for job completion on these rather than on Dispatch or Swift
/// concurrency so that parked threads use no CPU and a waiter can time out (idle helpers retire).
/// The memory is allocated once and never moves, as pthread objects require.
final class PThreadMutex: @unchecked Sendable {
    fileprivate let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        let rc = pthread_mutex_init(mutex, nil)
        precondition(rc == 0, "pthread_mutex_init failed: \(rc)")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }

    @inline(__always)
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// A condition variable used with a ``PThreadMutex``; timed waits use CLOCK_MONOTONIC.
final class PThreadCondition: @unchecked Sendable {
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    init() {
        condition = .allocate(capacity: 1)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        let rc = pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
        precondition(rc == 0, "pthread_cond_init failed: \(rc)")
    }

    deinit {
        pthread_cond_destroy(condition)
        condition.deallocate()
    }

    /// Waits until signalled; `mutex` must be held and is held again on return.
    func wait(_ mutex: PThreadMutex) { pthread_cond_wait(condition, mutex.mutex) }

    /// Waits until signalled or `deadline` (CLOCK_MONOTONIC) passes; returns false on timeout.
    func wait(_ mutex: PThreadMutex, until deadline: timespec) -> Bool {
        var deadline = deadline
        return pthread_cond_timedwait(condition, mutex.mutex, &deadline) != ETIMEDOUT
    }

    func signal() { pthread_cond_signal(condition) }
}

/// The calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), in nanoseconds.
func threadCPUNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

/// CLOCK_MONOTONIC in nanoseconds (the clock ``monotonicDeadline(afterNanoseconds:)`` counts on).
@inline(__always)
func monotonicNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

/// The CLOCK_MONOTONIC time `nanoseconds` from now.
func monotonicDeadline(afterNanoseconds nanoseconds: Int64) -> timespec {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    let total = Int64(now.tv_nsec) + nanoseconds % 1_000_000_000
    return timespec(
        tv_sec: now.tv_sec + Int(nanoseconds / 1_000_000_000) + Int(total / 1_000_000_000),
        tv_nsec: Int(total % 1_000_000_000))
}

/// A value that threads share, guarded by a ``PThreadMutex`` (the state and its lock in one place, as
/// swift-nio's `NIOLockedValueBox`). ktask uses this instead of `Synchronization.Mutex`: ThreadSanitizer on
/// this toolchain does not model `Mutex`, so a program that runs its tests under TSan would see ktask's
/// correctly locked accesses reported as races; it understands pthread mutexes.
final class Locked<Value>: @unchecked Sendable {
    private let mutex = PThreadMutex()
    private var value: Value

    package init(_ value: Value) { self.value = value }

    /// Runs `body` with the value, holding the lock.
    @inline(__always)
    package func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        mutex.lock()
        defer { mutex.unlock() }
        return try body(&value)
    }

    /// The value now (a copy, read under the lock).
    package var current: Value { withLock { $0 } }
}
