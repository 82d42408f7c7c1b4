// Two threads that touch an array only inside one Synchronization.Mutex's withLock.
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

final class Shared: @unchecked Sendable {
    let flags = Mutex<[Bool]>([false, false])
}
let shared = Shared()
func body(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    for round in 0..<10_000 { shared.flags.withLock { $0[round % 2] = !$0[round % 2] } }
    return nil
}
var threads = [pthread_t(), pthread_t()]
for index in 0..<2 { pthread_create(&threads[index], nil, body, nil) }
for thread in threads { pthread_join(thread, nil) }
print(shared.flags.withLock { $0 })
