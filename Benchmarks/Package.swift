// swift-tools-version: 6.1
// Micro-costs of ktask against the alternatives, with ordo-one/benchmark: `swift package benchmark`.
import PackageDescription

let package = Package(
    name: "KTaskBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "KTaskOverhead",
            dependencies: [
                .product(name: "KTask", package: "main"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/KTaskOverhead",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // The API matrix as a user's package builds it: `swift run -c release --package-path Benchmarks APIMatrix`
        // (outside Benchmarks/Benchmarks, where the benchmark plugin would take it for one of its own).
        .executableTarget(
            name: "APIMatrix",
            dependencies: [.product(name: "KTask", package: "main")],
            path: "APIMatrix"
        ),
    ]
)
