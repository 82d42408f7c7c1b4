import ArgumentParser
import Foundation
import KTask
import KTaskWorkloads

/// `ktask bench`: the seed's scaling table for one real workload.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Run a workload at several thread counts and print the seed's scaling table.",
        discussion: """
            Each thread count runs --runs times, interleaved (1, 2, 1, 2, ...). The table shows the mean \
            seconds with the standard deviation as a percentage of the mean, and the speedup over 1 thread.
            """)

    @Option(help: "The workload: prefault (fault in fresh memory), init (initialise page descriptors), compute (CPU-bound hash).")
    var workload: WorkloadKind = .prefault

    @Option(help: ArgumentHelp("Thread counts to measure, comma-separated (default: 1 to the CPU budget).", valueName: "n,n,..."), transform: ThreadCounts.parse)
    var threads: ThreadCounts?

    @Option(help: ArgumentHelp("Bytes for prefault/init, items for compute; K, M, G, T suffixes are powers of 1024 (default: about 2 s per 1-thread run).", valueName: "size"), transform: SizeArgument.parse)
    var size: SizeArgument?

    @Option(help: ArgumentHelp("Where threads run: local (the caller's node), any, or node ids (one range per node, memory bound there).",
                               valueName: "local|any|n,n,..."), transform: parseNodeChoice)
    var nodes: NodeChoice = .local

    @Option(help: "Runs per thread count.")
    var runs: Int = 5

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    func validate() throws {
        guard runs >= 1 && runs <= 10_000 else {
            throw ValidationError("--runs is \(runs); it must be between 1 and 10000")
        }
    }

    func run() throws {
        let budget = CPUBudget.read().budget
        let counts = threads?.counts ?? Array(1...budget)
        let size = self.size?.value ?? workload.defaultSize
        let runner = BenchRunner(workload: workload, size: size, threadCounts: counts, runs: runs, nodes: nodes)
        let progress = ProgressLine(enabled: isatty(STDERR_FILENO) == 1)
        let result = try runner.run { run, runs, threads in
            progress.show("\(workload.rawValue): run \(run)/\(runs), \(threads) thread(s)")
        }
        progress.clear()
        switch format {
        case .table: print(BenchTable.render(result), terminator: "")
        case .json: print(try BenchJSON.render(result))
        }
    }
}
