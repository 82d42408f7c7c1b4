import Foundation
import Testing

/// A Swift developer's first program: a package outside this repository, depending on ktask by path, whose
/// top-level `main.swift` (main-actor code) uses map, reduce, update and run without `unsafe` anywhere.
@Suite("A client package uses ktask from a top-level main.swift")
struct ClientPackageTests {
    static let repository = "/" + String(#filePath).split(separator: "/").dropLast(3).joined(separator: "/")

    /// The calls sit in a main-actor async function rather than in the top-level statements: there, Swift
    /// ranks a synchronous overload above an asynchronous one (even a disfavored one), so `try await
    /// KTask.run(...)` as a top-level statement picks the blocking `run` and fails its `noasync`. Closures
    /// formed here are still formed in main-actor code, and ktask's helper threads call them.
    static let mainSwift = """
        import KTask

        @MainActor
        func main() async throws {
            let squares = try await KTask.map(0..<100_000, options: KTaskOptions(minChunk: 1000)) { index in index * index }
            let total = try await KTask.reduce(0..<1_000_000, options: KTaskOptions(minChunk: 10_000), 0.0, { $0 + $1 }) { range in
                range.reduce(0.0) { sum, item in sum + Double(item) }
            }
            var values = Array(repeating: 0, count: 50_000)
            try await KTask.update(&values, options: KTaskOptions(minChunk: 1000)) { range, chunk in
                for index in chunk.indices { chunk[index] = range.lowerBound + index }
            }
            let report = try await KTask.run(0..<1000, options: KTaskOptions(minChunk: 10)) { chunk in _ = chunk.count }
            print("map", squares.count == 100_000 && squares[99_999] == 99_999 * 99_999)
            print("reduce", total == 499_999_500_000.0)
            print("update", values == Array(0..<50_000))
            print("run", report.threadsUsed >= 1)
        }

        try await main()
        """

    @Test("it builds and gives the right results", .timeLimit(.minutes(10)))
    func clientPackage() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ktask-client-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder + "/Sources/Client", withIntermediateDirectories: true)
        let identity = URL(fileURLWithPath: Self.repository).lastPathComponent.lowercased()
        try """
            // swift-tools-version: 6.1
            import PackageDescription
            let package = Package(
                name: "Client",
                dependencies: [.package(path: "\(Self.repository)")],
                targets: [.executableTarget(name: "Client", dependencies: [.product(name: "KTask", package: "\(identity)")])]
            )
            """.write(toFile: folder + "/Package.swift", atomically: true, encoding: .utf8)
        try Self.mainSwift.write(toFile: folder + "/Sources/Client/main.swift", atomically: true, encoding: .utf8)
        #expect(!Self.mainSwift.contains("unsafe") && !Self.mainSwift.contains("Unsafe"))

        let build = try run("/usr/bin/env", ["swift", "build", "--package-path", folder, "--product", "Client"])
        try #require(build.status == 0, "swift build failed:\n\(build.output.suffix(3000))")
        let program = try run(folder + "/.build/debug/Client", [])
        #expect(program.status == 0, "\(program.output)")
        #expect(program.output.split(separator: "\n") == ["map true", "reduce true", "update true", "run true"], "\(program.output)")
    }

    func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

@Suite("Linux only, said plainly")
struct PlatformTests {
    @Test("a build for another system stops at the shim's #error, which says why",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/clang") || FileManager.default.isExecutableFile(atPath: "/opt/swift/usr/bin/clang"),
                   "needs clang to compile the shim's header for macOS: skipped"))
    func linuxOnly() throws {
        let clang = FileManager.default.isExecutableFile(atPath: "/usr/bin/clang") ? "/usr/bin/clang" : "/opt/swift/usr/bin/clang"
        let header = ClientPackageTests.repository + "/Sources/CKTaskShims/include/CKTaskShims.h"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: clang)
        process.arguments = ["-fsyntax-only", "-target", "arm64-apple-macos15", header]
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus != 0)
        #expect(output.contains("ktask runs on Linux only"), "\(output)")
    }
}
