/// What a helper needs, beyond a free thread of its pool, before it may work on a job: a machine-wide slot
/// (``MachineSlots``) and, under `make -j`, a jobserver token (``Jobserver``). The pool takes them when a
/// job reserves helpers, without waiting (a job runs with the helpers it gets; its caller is its own
/// implicit slot and token), and gives one back each time a helper finishes, is taken back unstarted, or
/// cannot start. Parked helpers hold none.
final class HelperPermits: @unchecked Sendable {
    /// This process's permits; nil when neither machine-wide slots nor a jobserver are in use (every cap
    /// is then this process's own).
    package static let process: HelperPermits? = {
        let (slots, jobserver) = (MachineSlots.shared, Jobserver.shared)
        return slots == nil && jobserver == nil ? nil : HelperPermits(slots: slots, jobserver: jobserver)
    }()

    let slots: MachineSlots?
    let jobserver: Jobserver?
    /// What this process holds now, one entry per busy helper; which helper returns which does not matter.
    /// A pthread lock, which ThreadSanitizer understands.
    private let lock = PThreadMutex()
    private var held: [(slot: Int?, token: UInt8?)] = []

    init(slots: MachineSlots?, jobserver: Jobserver?) {
        self.slots = slots
        self.jobserver = jobserver
    }

    /// What ``take(upTo:)`` got.
    struct Grant {
        package var count = 0
        /// What refused the helpers not had: ``KTask/ThreadLimit/machineSlots`` or ``KTask/ThreadLimit/jobserverTokens``.
        package var refusedBy: KTask.ThreadLimit?
        /// Set when this take turned the machine-wide slots off (a lock error): a warning to log.
        package var warning: String?
    }

    /// Takes permits for up to `wanted` helpers.
    package func take(upTo wanted: Int) -> Grant {
        var grant = Grant()
        while grant.count < wanted {
            var slot: Int?
            switch slots?.take() {
            case .slot(let taken)?: slot = taken
            case .allHeld?: grant.refusedBy = .machineSlots
            case .off(let newReason)?: grant.warning = grant.warning ?? newReason.map { "machine-wide slots \($0)" }  // as if none
            case nil: break
            }
            if grant.refusedBy != nil { break }
            let token = jobserver?.take()
            if jobserver != nil && token == nil {
                if let slot { slots?.give(slot) }
                grant.refusedBy = .jobserverTokens
                break
            }
            lock.withLock { held.append((slot, token)) }
            grant.count += 1
        }
        return grant
    }

    /// Gives back the permits of `count` helpers.
    package func give(_ count: Int = 1) {
        for _ in 0..<count {
            guard let permit = lock.withLock({ held.popLast() }) else { return }
            if let slot = permit.slot { slots?.give(slot) }
            if let token = permit.token { jobserver?.give(token) }
        }
    }
}
