// swift-tools-version: 6.1
// A 20-line program that shows this toolchain's TSan reporting a "Swift access race" between two
// accesses that are both inside one Synchronization.Mutex's withLock (run by scripts/sanitizers.sh).
import PackageDescription

let package = Package(
    name: "tsan-mutex-false-positive",
    platforms: [.macOS(.v15)],
    targets: [.executableTarget(name: "tsan-mutex-false-positive")]
)
