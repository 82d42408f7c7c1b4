#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

extension KTask {
    /// Thread caps measured on this machine, one per class of work, as `ktask tune` saves them: the
    /// answer to the seed's "how to determine maximum threads per task? through testing".
    ///
    /// A job names its class with ``KTask/Options/workClass``; it then gets at most that class's
    /// ``WorkClass/maxThreads``. The profile in force is the file named by `KTASK_PROFILE`, else
    /// `$XDG_CONFIG_HOME/ktask/profile.json`, else `~/.config/ktask/profile.json`.
    public struct TuningProfile: Codable, Sendable, Equatable {
        /// The format this code reads and writes.
        public static let currentVersion = 1
        /// The environment variable naming the profile file.
        public static let environmentVariable = "KTASK_PROFILE"

        /// The file format's version (``currentVersion`` when written by this code).
        public var version: Int
        /// Per class of work (e.g. "prefault", "init", "compute"), what was measured.
        public var classes: [String: WorkClass]

        /// One class's measurement.
        public struct WorkClass: Codable, Sendable, Equatable {
            /// The knee: past this many threads one more thread added less than `minimumGain` of one
            /// thread's throughput.
            public var maxThreads: Int
            /// The fraction of one thread's throughput a thread had to add to count.
            public var minimumGain: Double
            /// The CPU budget when it was measured (a cap measured on fewer CPUs may be below the knee).
            public var cpuBudget: Int
            /// Throughput (items per second, medians) at 1, 2, ... threads.
            public var itemsPerSecond: [Double]

            /// The file's keys are snake_case like every JSON ktask writes; profiles written before 0.3 used
            /// camelCase and are still read.
            enum CodingKeys: String, CodingKey {
                case maxThreads = "max_threads", minimumGain = "minimum_gain", cpuBudget = "cpu_budget"
                case itemsPerSecond = "items_per_second"
            }

            enum CamelCaseKeys: String, CodingKey {
                case maxThreads, minimumGain, cpuBudget, itemsPerSecond
            }

            public init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                if container.contains(.maxThreads) {
                    self.init(maxThreads: try container.decode(Int.self, forKey: .maxThreads),
                              minimumGain: try container.decode(Double.self, forKey: .minimumGain),
                              cpuBudget: try container.decode(Int.self, forKey: .cpuBudget),
                              itemsPerSecond: try container.decode([Double].self, forKey: .itemsPerSecond))
                } else {
                    let old = try decoder.container(keyedBy: CamelCaseKeys.self)
                    self.init(maxThreads: try old.decode(Int.self, forKey: .maxThreads),
                              minimumGain: try old.decode(Double.self, forKey: .minimumGain),
                              cpuBudget: try old.decode(Int.self, forKey: .cpuBudget),
                              itemsPerSecond: try old.decode([Double].self, forKey: .itemsPerSecond))
                }
            }

            /// One class's measurement, as `ktask tune` saves it.
            public init(maxThreads: Int, minimumGain: Double, cpuBudget: Int, itemsPerSecond: [Double]) {
                self.maxThreads = maxThreads
                self.minimumGain = minimumGain
                self.cpuBudget = cpuBudget
                self.itemsPerSecond = itemsPerSecond
            }
        }

        /// A profile of the current version with these classes.
        public init(classes: [String: WorkClass] = [:]) {
            self.version = Self.currentVersion
            self.classes = classes
        }

        /// The knee of a throughput curve: the thread count past which one more thread adds less than
        /// `minimumGain` × the 1-thread throughput (or loses throughput). `throughput[i]` is measured at
        /// i + 1 threads. The rule `ktask tune` and adaptive mode share.
        package static func knee(throughput: [Double], minimumGain: Double) -> Int {
            guard let single = throughput.first else { return 1 }
            for threads in 2...max(2, throughput.count) where threads <= throughput.count {
                if throughput[threads - 1] - throughput[threads - 2] < minimumGain * single { return threads - 1 }
            }
            return throughput.count
        }

        /// The profile file for this environment: `KTASK_PROFILE`, else `$XDG_CONFIG_HOME/ktask/profile.json`
        /// (an absolute one), else `$HOME/.config/ktask/profile.json`; nil if none of them is set.
        public static func defaultPath(environment: [String: String]) -> String? {
            defaultPath(Settings(environment: environment))
        }

        /// ``defaultPath(environment:)`` for this process's environment, as it was at the first job (or the
        /// first call): read once per process, like every variable ktask reads.
        public static var defaultPath: String? { defaultPath(Settings.current) }

        static func defaultPath(_ settings: Settings) -> String? {
            if let path = settings.profile.value { return path }
            if let config = settings.configHome.value { return config + "/ktask/profile.json" }
            return settings.home.value.map { $0 + "/.config/ktask/profile.json" }
        }

        /// Reads a profile; throws ``KTask/Error/invalidProfile(path:reason:)`` if it is unreadable or malformed.
        package static func load(from path: String) throws(KTask.Error) -> KTask.TuningProfile {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
                throw .invalidProfile(path: path, reason: "cannot be read")
            }
            let profile: KTask.TuningProfile
            do { profile = try JSONDecoder().decode(KTask.TuningProfile.self, from: data) } catch {
                throw .invalidProfile(path: path, reason: "is not a ktask profile (\(error))")
            }
            try profile.validate(path: path)
            return profile
        }

        /// Writes the profile (creating its folder), replacing the file atomically.
        package func save(to path: String) throws(KTask.Error) {
            try validate(path: path)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            do {
                let folder = URL(fileURLWithPath: path).deletingLastPathComponent()
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                try encoder.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
            } catch {
                throw .invalidProfile(path: path, reason: "cannot be written (\(error))")
            }
        }

        func validate(path: String) throws(KTask.Error) {
            guard version == Self.currentVersion else {
                throw .invalidProfile(path: path, reason: "has version \(version); this ktask reads version \(Self.currentVersion)")
            }
            for (name, entry) in classes where entry.maxThreads < 1 || !(0...1).contains(entry.minimumGain) {
                throw .invalidProfile(path: path, reason: "class \"\(name)\" needs max_threads >= 1 and minimum_gain in 0...1")
            }
        }

        // MARK: The profile in force

        private struct Cached: Sendable {
            let path: String
            let modified: timespec
            let profile: KTask.TuningProfile?
        }
        private static let cache = Locked<Cached?>(nil)

        /// The profile jobs use now (nil: no file). Re-read when the file's path or modification time changes.
        public static func inForce() throws(KTask.Error) -> (path: String, profile: KTask.TuningProfile)? {
            guard let path = defaultPath else { return nil }
            var status = stat()
            guard stat(path, &status) == 0 else { return nil }
            let modified = status.st_mtim
            if let cached = cache.withLock({ $0 }), cached.path == path,
               cached.modified.tv_sec == modified.tv_sec, cached.modified.tv_nsec == modified.tv_nsec {
                return cached.profile.map { (path, $0) }
            }
            let profile = try load(from: path)
            cache.withLock { $0 = Cached(path: path, modified: modified, profile: profile) }
            return (path, profile)
        }

        /// The thread cap for jobs of `workClass`, if the profile in force measured it.
        static func threadCap(for workClass: String) throws(KTask.Error) -> Int? {
            try inForce()?.profile.classes[workClass]?.maxThreads
        }
    }
}
