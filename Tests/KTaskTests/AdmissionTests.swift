import Foundation
import Testing
@testable import KTask

/// The admission on a fixture machine: 4 nodes of 32 CPUs (an Arm server), every limit given as data.
@Suite("Admission: every limit narrows one count in one order; the last that cut is named")
struct AdmissionTests {
    let arm = fixtureNodes("128arm-2pa2n8cluster4co")

    func system(budget: Int, energySaving: Bool = false) -> SystemLimits {
        SystemLimits(budget: budget, energyRestricted: energySaving, nodes: arm, nodeIDs: arm.map(\.id), severalNodes: true,
                     allowedMemoryNodes: nil)
    }

    /// The threads and the limit a job of `items` items gets, from the sizing alone (no reservation).
    func admit(_ items: Int, _ options: KTask.Options, budget: Int = 128, energySaving: Bool = false) throws -> (Int, KTask.ThreadLimit) {
        switch try Admission.sized(0..<items, options: options, limits: system(budget: budget, energySaving: energySaving)) {
        case .inline(_, let limit): return (1, limit)
        case .parallel(let admission): return (admission.threads, admission.limit)
        case .noWork, .callerFirst: Issue.record("a sized job is inline or parallel"); return (0, .none)
        }
    }

    func pool(cap: Int? = nil, nodeCap: Int? = nil) throws -> KTask.Pool {
        let pool = try KTask.Pool(name: "kt-adm", maxBusyHelpers: cap, isolateHelpers: false)
        try pool.setMaxBusyHelpersPerNode(nodeCap)
        return pool
    }

    @Test("each limit in turn, where it is the one that cuts")
    func eachLimit() throws {
        let any = try pool()
        #expect(try admit(6, KTask.Options(placement: .anywhere, pool: any)) == (6, .tooLittleWork))
        #expect(try admit(1000, KTask.Options(maxThreads: 6, placement: .anywhere, pool: any)) == (6, .maxThreads))
        #expect(try admit(1000, KTask.Options(maxThreads: 8, placement: .anywhere, pool: any), budget: 5) == (5, .cpuBudget))
        #expect(try admit(1000, KTask.Options(placement: .anywhere, pool: any), energySaving: true) == (1, .energySaving))
        // A cap set through the API is the administrator's word: it holds while the machine saves energy.
        #expect(try admit(1000, KTask.Options(placement: .anywhere, pool: try pool(cap: 3)), energySaving: true) == (4, .poolCap))
        // On node 1 (32 CPUs, the caller elsewhere): its CPUs, then its per-node cap.
        #expect(try admit(1000, KTask.Options(placement: .nodes([1]), pool: any)) == (33, .nodeCap))
        #expect(try admit(1000, KTask.Options(placement: .nodes([1]), pool: try pool(nodeCap: 2))) == (3, .nodeCap))
        #expect(try admit(1000, KTask.Options(placement: .nodes([1, 2]), pool: try pool(cap: 5, nodeCap: 2))) == (5, .nodeCap))
        #expect(try admit(1000, KTask.Options(placement: .nodes([1, 2]), pool: try pool(cap: 3, nodeCap: 2))) == (4, .poolCap))
    }

    @Test("a limit that does not cut below the count so far is not named: the earlier one keeps it")
    func tiesKeepTheEarlierLimit() throws {
        let any = try pool()
        #expect(try admit(8, KTask.Options(maxThreads: 8, placement: .anywhere, pool: any), budget: 8) == (8, .tooLittleWork))
        #expect(try admit(1000, KTask.Options(maxThreads: 4, placement: .anywhere, pool: any), budget: 4) == (4, .maxThreads))
        #expect(try admit(1000, KTask.Options(maxThreads: 4, placement: .nodes([1]), pool: try pool(cap: 3, nodeCap: 3))) == (4, .maxThreads))
    }

    @Test("the pool's cap trims the lanes from the largest, keeping their spread")
    func poolCapTrimsLanes() throws {
        guard case .parallel(let admission) = try Admission.sized(0..<1000, options: KTask.Options(placement: .nodes([1, 2]), pool: try pool(cap: 5)),
                                                                  limits: system(budget: 128)) else {
            Issue.record("parallel expected")
            return
        }
        #expect(admission.lanes.lanes.map(\.helpers) == [2, 3] || admission.lanes.lanes.map(\.helpers) == [3, 2])
        #expect(admission.threads == 6 && admission.limit == .poolCap)
    }

    @Test("reserving: helpers held by other jobs, then every machine-wide slot held, are named as such")
    func reservingNamesWhatRefused() throws {
        // One helper of the pool held by another job: "helpers busy".
        let one = try pool(cap: 1)
        let held = one.reserve(upTo: 1, cap: 1)
        defer { one.cancel(held) }
        guard case .parallel(var busy) = try Admission.sized(0..<1000, options: KTask.Options(maxThreads: 2, placement: .anywhere, pool: one),
                                                             limits: system(budget: 128)) else { Issue.record("parallel expected"); return }
        #expect(busy.reserve(in: one).isEmpty)
        #expect(busy.limit == .helpersBusy && busy.refusedBy == nil)

        // Free helpers, but the machine's one slot is held (by this test: another process would do the same).
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ktask-admission-\(getpid())")
        defer { try? FileManager.default.removeItem(at: folder) }
        let slots = try MachineSlots.open(environment: ["KTASK_SLOTS": folder.path], onlineCPUs: 2).get()
        guard case .slot(let slot) = slots.take() else { Issue.record("the one slot should be free"); return }
        defer { slots.give(slot) }
        let slotted = KTask.Pool(validatedName: "kt-adm-s", maxBusyHelpers: nil, idleTimeout: .seconds(10), isolatesHelpers: false,
                                 permits: HelperPermits(slots: slots, jobserver: nil))
        guard case .parallel(var refused) = try Admission.sized(0..<1000, options: KTask.Options(maxThreads: 2, placement: .anywhere, pool: slotted),
                                                                limits: system(budget: 128)) else { Issue.record("parallel expected"); return }
        #expect(refused.reserve(in: slotted).isEmpty)
        #expect(refused.limit == .machineSlots && refused.refusedBy == .machineSlots)
        #expect(slotted.state.busyHelpers == 0, "the refused helper went back to the pool")
    }
}
