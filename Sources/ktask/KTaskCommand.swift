import ArgumentParser
import Foundation
import KTask
import KTaskWorkloads

/// `ktask`: run the seed's workloads multithreaded and show how the machine looks to ktask.
struct KTaskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ktask",
        abstract: "Multithread big CPU-intensive jobs the way the kernel's ktask did.",
        discussion: """
            Environment: KTASK_MAX_THREADS caps threads per job, the calling thread included (0: no limit); \
            KTASK_NODE_MAX_THREADS caps busy helpers on any one node (0: no limit); KTASK_PROFILE names the \
            tuning profile; KTASK_NO_HELPER_CGROUP keeps helpers out of the idle cgroup; KTASK_SLOTS=off|DIR turns the \
            machine-wide helper slots off or puts them in DIR; MAKEFLAGS' --jobserver-auth makes helpers take make's tokens; \
            KTASK_SYSFS_ROOT is info's default --root; XDG_RUNTIME_DIR and XDG_CONFIG_HOME (or HOME) hold the user's slots and \
            profile. They are read once; the tool refuses a malformed one (exit 2), the library ignores it with one warning, \
            and `ktask info` shows each with its source and what ktask made of it. Bad flags: one line on stderr, \
            exit status 2. Each subcommand's --help says what it prints and its JSON keys.

            Output: every table has "# " notes above and below its rows, and times in a unit that fits (s, ms, \
            us; 3-4 significant digits); every JSON document (--format json) has "schema": 1, snake_case keys, \
            values rounded to 4 significant digits and null for what was not measured or is unknown. On a \
            terminal a progress line on stderr names the warm-up and shows the time elapsed and an estimate of \
            the time left.
            """,
        version: ktaskVersion,
        subcommands: [BenchCommand.self, CompareCommand.self, TuneCommand.self, PopulateCommand.self, InfoCommand.self, CheckPlacementCommand.self, ForegroundLoadCommand.self])
}

/// This release (CHANGELOG.md).
let ktaskVersion = "0.3.0"

@main
enum Main {
    /// Exit status for bad flags or settings: the message is one line, as for a shell builtin.
    static let usageExitCode: Int32 = 2

    static func main() {
        do {
            var command = try KTaskCommand.parseAsRoot()
            // The library ignores malformed variables (with one warning); the tool refuses them all, in one line.
            let problems = Settings.current.problems
            if !problems.isEmpty { fail(problems.map(\.description).joined(separator: "; "), code: usageExitCode) }
            try command.run()
        } catch let error as KTask.Error {
            switch error {
            // Settings the user gave (flags, environment, the profile file they named): usage errors.
            case .invalidEnvironmentVariable, .unknownNode, .nodeWithoutUsableCPUs, .duplicateNode, .noNodes, .invalidProfile,
                 .memoryNodeNotAllowed, .invalidParameter:
                fail(error.description, code: usageExitCode)
            default:
                fail(error.description, code: 1)
            }
        } catch let code as ExitCode {
            exit(code.rawValue)
        } catch let error as WorkloadError {
            switch error {
            case .sizeTooSmall, .invalidParameter: fail(error.description, code: usageExitCode)
            default: fail(error.description, code: 1)
            }
        } catch let error as PlotError {
            fail(error.description, code: 1)
        } catch let error as PeerError {
            fail(error.description, code: 1)
        } catch {
            if KTaskCommand.exitCode(for: error) == .success { KTaskCommand.exit(withError: error) }
            let message = KTaskCommand.message(for: error)
                .split(separator: "\n").first.map(String.init) ?? "invalid arguments"
            fail(message, code: usageExitCode)
        }
    }

    static func fail(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("ktask: \(message)\n".utf8))
        exit(code)
    }
}

/// Output formats shared by the subcommands.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table
    case json
}

extension WorkloadKind: ExpressibleByArgument {}
extension ComparedSystem: ExpressibleByArgument {}
