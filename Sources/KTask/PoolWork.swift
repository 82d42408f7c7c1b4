/// Work a pool thread runs, erased to a context the pool never looks into and two C functions
/// (rayon's `JobRef`): the pool knows threads, caps and thread attributes, not jobs.
///
/// `run(context, argument)` does the thread's share (the argument tells the shares apart, e.g. a
/// job's participant number). `finished(context, argument)`, if any, is called after the thread is
/// free in the pool again, so that a job's caller hearing it is done finds the thread free for its next
/// job; it is the thread's last touch of the work. The work's owner keeps the context alive until then.
struct PoolWork: @unchecked Sendable {
    typealias Function = @convention(c) (UnsafeMutableRawPointer, Int) -> Void

    let context: UnsafeMutableRawPointer
    let run: Function
    let finished: Function?

    /// Whether both are the same work (the same context).
    func isSame(as other: PoolWork) -> Bool { context == other.context }

    /// Work that runs `body` once and owns it: the box is released when `body` returns, so nothing
    /// else needs to keep it alive. For an async job's caller share.
    static func once(_ body: @escaping @Sendable () -> Void) -> PoolWork {
        PoolWork(context: Unmanaged.passRetained(Once(body)).toOpaque(),
                 run: { context, _ in Unmanaged<Once>.fromOpaque(context).takeRetainedValue().body() },
                 finished: nil)
    }

    /// Releases a ``once(_:)`` work that no thread will run.
    func discardOnce() { Unmanaged<Once>.fromOpaque(context).release() }

    private final class Once {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
}

/// What a parked pool thread is woken to do, and how.
struct PoolAssignment {
    let work: PoolWork
    /// Passed to the work's functions (a job's participant number).
    let argument: Int
    /// The nice value to run the work at; nil keeps the thread's own.
    let nice: Int32?
    /// The node whose per-node cap this thread counts against; nil for none.
    let node: Int?
    /// The CPUs to run on; nil: the process's own affinity.
    let cpus: CPUList?
}
