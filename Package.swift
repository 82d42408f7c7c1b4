// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "ktask",
    // Linux only: the C shims stop any other build with an #error that says why. (macOS 15 is named for
    // the Synchronization module's availability, so that the manifest itself resolves there.)
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "KTask", targets: ["KTask"]),
        .executable(name: "ktask", targets: ["ktask"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // `swift package generate-documentation --target KTask` (DocC).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // One-line wrappers for the Linux calls Glibc does not import into Swift.
        .target(
            name: "CKTaskShims",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        // The engine: job parameters, chunk planning, the claim loop with undo, the helper pool, priority.
        .target(
            name: "KTask",
            dependencies: [
                "CKTaskShims",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The seed's real workloads (prefault, init, compute) and the benchmark driver, shared by the CLI and tests;
        // not a product, so its API is `package`.
        .target(
            name: "KTaskWorkloads",
            dependencies: ["KTask", "CKTaskShims"]
        ),
        .executableTarget(
            name: "ktask",
            dependencies: [
                "KTask",
                "KTaskWorkloads",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // A random-job soak for ThreadSanitizer (scripts/tsan-stress.sh); not a product.
        .executableTarget(name: "ktask-stress", dependencies: ["KTask"]),
        // Sets the test processes' environment before any test runs (machine-wide slots off: tests count threads);
        // the C calls only tests make (memfd_create).
        .target(name: "CKTaskTestEnvironment"),
        .testTarget(
            name: "KTaskTests",
            dependencies: ["KTask", "KTaskWorkloads", "CKTaskShims", "CKTaskTestEnvironment", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "ktaskCLITests",
            dependencies: ["ktask", "CKTaskTestEnvironment"]
        ),
    ]
)
