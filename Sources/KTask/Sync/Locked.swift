/// A value that threads share, guarded by a ``PThreadMutex`` (the state and its lock in one place, as
/// swift-nio's `NIOLockedValueBox`). ktask uses this instead of `Synchronization.Mutex`: ThreadSanitizer on
/// this toolchain does not model `Mutex`, so a program that runs its tests under TSan would see ktask's
/// correctly locked accesses reported as races; it understands pthread mutexes.
package final class Locked<Value>: @unchecked Sendable {
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
