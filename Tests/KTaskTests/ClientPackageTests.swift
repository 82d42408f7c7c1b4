import Foundation
import Testing
@testable import KTask

/// A Swift developer's first program is the README's: every ```swift block of README.md, in order, becomes
/// a package outside this repository. The first block is the `Package.swift` fragment (its `../ktask` is a
/// link to this checkout); the others are one top-level `main.swift` (main-actor code) using map, reduce,
/// update and run. So a README example can never break unnoticed.
@Suite("The README's Swift blocks build and run as a client package")
struct ClientPackageTests {
    static let repository = "/" + String(#filePath).split(separator: "/").dropLast(3).joined(separator: "/")

    /// The README's ```swift blocks, in order.
    static func readmeSwiftBlocks() throws -> [String] {
        let readme = try String(contentsOfFile: repository + "/README.md", encoding: .utf8)
        var blocks: [String] = []
        var current: [Substring]?
        for line in readme.split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, line == "```swift" { current = [] }
            else if current != nil, line == "```" { blocks.append(current!.joined(separator: "\n")); current = nil }
            else if current != nil { current!.append(line) }
        }
        return blocks
    }

    @Test("the results examples use no unsafe code, from main-actor code")
    func noUnsafeCode() throws {
        let blocks = try Self.readmeSwiftBlocks()
        try #require(blocks.count >= 3)
        let program = blocks[1]
        for call in ["KTask.map", "KTask.reduce", "KTask.update", "KTask.run", "@MainActor"] {
            #expect(program.contains(call), "the README's program lost its \(call) example")
        }
        #expect(!program.lowercased().contains("unsafe"))
    }

    @Test("they build and print the right results", .timeLimit(.minutes(10)))
    func clientPackage() throws {
        let blocks = try Self.readmeSwiftBlocks()
        try #require(blocks.count >= 3, "README.md has \(blocks.count) Swift blocks")
        let parent = FileManager.default.temporaryDirectory.appendingPathComponent("ktask-client-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: parent) }
        // SwiftPM leaves lock files and empty TemporaryDirectory.* folders in TMPDIR at every build: the
        // build gets a TMPDIR inside `parent`, so that the test leaves nothing behind.
        let temporary = parent + "/tmp"
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: true)
        let folder = parent + "/App"
        try FileManager.default.createDirectory(atPath: folder + "/Sources/App", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: parent + "/ktask", withDestinationPath: Self.repository)
        let fragment = blocks[0].split(separator: "\n").filter { !$0.hasPrefix("//") }.joined(separator: "\n")
        try """
            // swift-tools-version: 6.1
            import PackageDescription
            let package = Package(
                name: "App",
            \(fragment)
            )
            """.write(toFile: folder + "/Package.swift", atomically: true, encoding: .utf8)
        try blocks.dropFirst().joined(separator: "\n\n")
            .write(toFile: folder + "/Sources/App/main.swift", atomically: true, encoding: .utf8)

        try Self.qualifiedNames.write(toFile: folder + "/Sources/App/Names.swift", atomically: true, encoding: .utf8)

        let build = try run("/usr/bin/env", ["TMPDIR=\(temporary)", "swift", "build", "-j", "1", "--package-path", folder, "--product", "App"])
        try #require(build.status == 0, "swift build failed:\n\(build.output.suffix(3000))")
        let program = try run(folder + "/.build/debug/App", [])
        #expect(program.status == 0, "\(program.output)")
        let lines = program.output.split(separator: "\n").map(String.init)
        #expect(lines.first?.contains("thread") == true, "the report first: \(program.output)")
        #expect(Array(lines.dropFirst()) == [
            "failed with OutOfSpace(); items still reserved: 0",
            "last square: 99999980000001",
            "harmonic sum: \(Self.harmonicSum(10_000_000))",
            "odd values: 5000000",
        ], "\(program.output)")
    }

    /// Every public type, KTask-qualified and module-qualified (Swift 6.3's module selector): both resolve.
    static let qualifiedNames = """
        import KTask

        func publicNames() -> [Any.Type] {
            [KTask.Options.self, KTask.Report.self, KTask.Error.self, KTask.Pool.self, KTask.Cancellation.self,
             KTask.Placement.self, KTask.NodeRange.self, KTask.ThreadLimit.self, KTask.HelperPriority.self,
             KTask.StarvationGuard.self, KTask.AdaptiveThreads.self, KTask.TuningProfile.self, KTask.NodeMemory.self,
             KTask::KTask.Options.self, KTask::KTask.Placement.self, KTask::KTask.Error.self]
        }
        """

    /// The README's harmonic sum as `reduce` forms it: per-block sums over the blocks it cuts (which depend
    /// only on the range and the options), added in range order. Computed here on one thread.
    static func harmonicSum(_ n: Int) -> String {
        let blocks = ReductionBlocks(range: 0..<n, minChunk: 1, align: 1)
        let sum = (0..<blocks.count).map { block in
            blocks.items(of: block).reduce(0.0) { sum, index in sum + 1.0 / Double(index + 1) }
        }.reduce(0.0, +)
        return "\(sum)"
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
