import Foundation
import Testing

/// Per-command details live in `--help`, not in the README: each subcommand's help names what it prints.
@Suite("Each subcommand's --help says what it prints")
struct HelpCLITests {
    @Test("--help names the JSON keys", arguments: [
        (["bench", "scaling"], ["speedup_median", "steal_s", "cpu_pressure_s", "threads_used", "thread_limit"]),
        (["bench", "disturbance"], ["foreground_alone", "slowdown_pct_nice19", "_other_session"]),
        (["bench", "starvation"], ["single_thread_s", "boost_s", "helper_cpu_s", "default_guard"]),
        (["compare"], ["ratio_vs_ktask", "ratio_uncertainty_pct", "paired_ratio_vs_ktask", "missing"]),
        (["tune"], ["knee", "items_per_s", "refused_by", "saved_to"]),
        (["populate"], ["resident_before", "bytes_per_s", "pages_per_node", "cpus_seen"]),
        (["check-placement"], ["cpus_seen", "thread_masks_seen", "pages_on_node"]),
    ])
    func jsonKeys(command: [String], keys: [String]) throws {
        let help = try runKTask(command + ["--help"])
        #expect(help.status == 0, "\(help.stderr)")
        for key in keys { #expect(help.stdout.contains(key), "\(command) --help lacks \(key)") }
    }

    @Test("info --help names every top-level key info --format json prints")
    func infoKeys() throws {
        let help = try runKTask(["info", "--help"])
        let info = try runKTask(["info", "--format", "json"])
        try #require(info.status == 0, "\(info.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])
        for key in document.keys where key != "schema" {
            #expect(help.stdout.contains(key), "info --help lacks \(key)")
        }
    }
}
