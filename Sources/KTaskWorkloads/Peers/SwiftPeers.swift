import Dispatch
import Synchronization

/// `DispatchQueue.concurrentPerform` with N iterations, iteration k running chunks k, k + N, k + 2N, ...
/// (striding by chunk, the usual way to bound concurrentPerform to N threads).
final class DispatchPeer: SystemRunner {
    let workload: any BenchWorkload

    init(workload: any BenchWorkload) { self.workload = workload }

    func runOnce(threads: Int) throws -> Double {
        let run = try workload.prepareRun()
        let chunk = try workload.chunkSize(threads: threads)
        let items = workload.items
        let chunks = (items + chunk - 1) / chunk
        let firstError = FirstError()
        let clock = ContinuousClock()
        let start = clock.now
        DispatchQueue.concurrentPerform(iterations: min(threads, chunks)) { first in
            for index in stride(from: first, to: chunks, by: threads) where !firstError.isSet {
                do { try run.body(chunkItems(index, size: chunk, of: items)) } catch { firstError.record(error) }
            }
        }
        let seconds = (clock.now - start).seconds
        try firstError.throwIfSet()
        try run.check()
        return seconds
    }
}

/// A `TaskGroup` with one child task per chunk, at most N in flight (a new one added as one finishes).
final class TaskGroupPeer: SystemRunner {
    let workload: any BenchWorkload

    init(workload: any BenchWorkload) { self.workload = workload }

    func runOnce(threads: Int) throws -> Double {
        let run = try workload.prepareRun()
        let chunk = try workload.chunkSize(threads: threads)
        let items = workload.items
        let chunks = (items + chunk - 1) / chunk
        let seconds = try blockingAwait {
            let clock = ContinuousClock()
            let start = clock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                var next = 0
                func addNext() {
                    let index = next
                    next += 1
                    group.addTask { try run.body(chunkItems(index, size: chunk, of: items)) }
                }
                while next < min(threads, chunks) { addNext() }
                while try await group.next() != nil {
                    if next < chunks { addNext() }
                }
            }
            return (clock.now - start).seconds
        }
        try run.check()
        return seconds
    }
}

/// Waits on this (non-async) thread for an async operation run as a detached task.
func blockingAwait<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) throws -> T {
    let result = Mutex<Result<T, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        do {
            let value = try await operation()
            result.withLock { $0 = .success(value) }
        } catch {
            result.withLock { $0 = .failure(error) }
        }
        done.signal()
    }
    done.wait()
    return try result.withLock { $0! }.get()
}

/// The first error thrown by any of a loop's threads; later chunks check it and stop.
final class FirstError: Sendable {
    private let error = Mutex<(any Error)?>(nil)
    private let flag = Atomic<Bool>(false)

    var isSet: Bool { flag.load(ordering: .relaxed) }

    func record(_ newError: any Error) {
        error.withLock { if $0 == nil { $0 = newError } }
        flag.store(true, ordering: .relaxed)
    }

    func throwIfSet() throws {
        if let error = error.withLock({ $0 }) { throw error }
    }
}
