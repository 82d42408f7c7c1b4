// swift-tools-version: 6.1
// Micro-costs of ktask against the alternatives, with ordo-one/benchmark: `swift package benchmark`.
import PackageDescription

let package = Package(
    name: "KTaskBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        // Named: SwiftPM takes a path dependency's identity from its folder's name, which is the clone's
        // (`ktask`, `main`, ...); the name given here is what `.product(package:)` below refers to, in any clone.
        .package(name: "ktask", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "KTaskOverhead",
            dependencies: [
                .product(name: "KTask", package: "ktask"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/KTaskOverhead",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // The API matrix as a user's package builds it: `swift run -c release --package-path Benchmarks APIMatrix`.
        // In Sources/: the benchmark plugin runs every executable target in a folder named Benchmarks (this
        // package's own folder included) as one of its benchmarks.
        .executableTarget(
            name: "APIMatrix",
            dependencies: [.product(name: "KTask", package: "ktask")]
        ),
    ]
)
