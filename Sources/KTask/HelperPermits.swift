import Synchronization

/// What a helper needs, beyond a free thread of its pool, before it may work on a job: a machine-wide slot
/// (``MachineSlots``) and, under `make -j`, a jobserver token (``Jobserver``). The pool takes them when a
/// job reserves helpers, without waiting (a job runs with the helpers it gets; its caller is its own
/// implicit slot and token), and gives one back each time a helper finishes, is taken back unstarted, or
/// cannot start. Parked helpers hold none.
package final class HelperPermits: Sendable {
    /// This process's permits; nil when neither machine-wide slots nor a jobserver are in use (every cap
    /// is then this process's own).
    package static let process: HelperPermits? = {
        let (slots, jobserver) = (MachineSlots.shared, Jobserver.shared)
        return slots == nil && jobserver == nil ? nil : HelperPermits(slots: slots, jobserver: jobserver)
    }()

    let slots: MachineSlots?
    let jobserver: Jobserver?
    /// What this process holds now, one entry per busy helper; which helper returns which does not matter.
    private let held = Mutex<[(slot: Int?, token: UInt8?)]>([])

    init(slots: MachineSlots?, jobserver: Jobserver?) {
        self.slots = slots
        self.jobserver = jobserver
    }

    /// Takes permits for up to `wanted` helpers; returns how many it got.
    package func take(upTo wanted: Int) -> Int {
        var got = 0
        while got < wanted {
            let slot = slots?.take()
            if slots != nil && slot == nil { break }
            let token = jobserver?.take()
            if jobserver != nil && token == nil {
                if let slot { slots?.give(slot) }
                break
            }
            held.withLock { $0.append((slot, token)) }
            got += 1
        }
        return got
    }

    /// Gives back the permits of `count` helpers.
    package func give(_ count: Int = 1) {
        for _ in 0..<count {
            guard let permit = held.withLock({ $0.popLast() }) else { return }
            if let slot = permit.slot { slots?.give(slot) }
            if let token = permit.token { jobserver?.give(token) }
        }
    }
}
