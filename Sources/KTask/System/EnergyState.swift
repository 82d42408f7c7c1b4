/// Whether the machine is set to save energy, and why: on battery, a low-power platform profile, an
/// energy-performance preference of `power`, or a cpufreq governor that trades speed for energy.
/// ktask then uses no helpers by default, so a job costs no more energy than a plain loop.
package struct EnergyState: Sendable, Equatable {
    package let restricted: Bool
    /// Why it is restricted, or what was found that is not a reason to restrict.
    package let reason: String

    package static func read(root: SystemRoot) -> EnergyState {
        var findings: [String] = []
        if let battery = onBattery(root: root) { return EnergyState(restricted: true, reason: battery) }
        if let profile = root.read("/sys/firmware/acpi/platform_profile")?.trimmingCharacters(in: " \n\0") {
            if profile == "low-power" {
                return EnergyState(restricted: true, reason: "platform profile is low-power (/sys/firmware/acpi/platform_profile)")
            }
            findings.append("platform profile \(profile)")
        }
        if let restriction = cpufreqRestriction(root: root, findings: &findings) {
            return EnergyState(restricted: true, reason: restriction)
        }
        return EnergyState(restricted: false, reason: findings.isEmpty ? "no energy-saving setting found" : findings.joined(separator: ", "))
    }

    /// A battery discharging with no mains supply online.
    private static func onBattery(root: SystemRoot) -> String? {
        let base = "/sys/class/power_supply"
        var discharging: String?
        for supply in (root.list(base) ?? []).sorted() {
            let type = root.read("\(base)/\(supply)/type")?.trimmingCharacters(in: " \n\0")
            if type == "Mains" || type == "USB",
               root.read("\(base)/\(supply)/online")?.trimmingCharacters(in: " \n\0") == "1" {
                return nil
            }
            if type == "Battery", root.read("\(base)/\(supply)/status")?.trimmingCharacters(in: " \n\0") == "Discharging" {
                discharging = "on battery (\(base)/\(supply)/status is Discharging)"
            }
        }
        return discharging
    }

    /// Drivers whose `powersave` governor is their normal dynamic policy (active mode): the
    /// energy-performance preference decides there.
    static let activeModeDrivers: Set<String> = ["intel_pstate", "amd-pstate", "amd-pstate-epp"]

    private static func cpufreqRestriction(root: SystemRoot, findings: inout [String]) -> String? {
        let base = "/sys/devices/system/cpu/cpufreq"
        let policies = (root.list(base) ?? []).filter { $0.hasPrefix("policy") }.sorted()
        guard let policy = policies.first else { return nil }
        let folder = "\(base)/\(policy)"
        let driver = root.read("\(folder)/scaling_driver")?.trimmingCharacters(in: " \n\0") ?? "unknown"
        let governor = root.read("\(folder)/scaling_governor")?.trimmingCharacters(in: " \n\0") ?? "unknown"
        let preference = root.read("\(folder)/energy_performance_preference")?.trimmingCharacters(in: " \n\0")
        findings.append("driver \(driver), governor \(governor)" + (preference.map { ", EPP \($0)" } ?? ""))
        if preference == "power" {
            return "energy-performance preference is power (\(folder)/energy_performance_preference)"
        }
        if governor == "conservative" {
            return "cpufreq governor is conservative (\(folder)/scaling_governor)"
        }
        if governor == "powersave" && !activeModeDrivers.contains(driver) {
            return "cpufreq governor powersave under \(driver) pins the lowest frequency (\(folder)/scaling_governor)"
        }
        return nil
    }
}
