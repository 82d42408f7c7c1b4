import ArgumentParser
import Foundation

/// A chart of speedup against threads as a standalone SVG: one line per series, the ideal (speedup =
/// threads) dashed, a legend. Written by `ktask bench --plot` and `ktask compare --plot`.
struct SpeedupPlot {
    struct Series {
        let name: String
        /// (threads, speedup) points, in thread order.
        let points: [(threads: Int, speedup: Double)]
    }

    let title: String
    let subtitle: String
    let series: [Series]

    private static let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    private let width = 720.0, height = 440.0
    private let left = 60.0, right = 190.0, top = 60.0, bottom = 50.0

    func svg() -> String {
        let maxThreads = max(2, series.flatMap { $0.points.map(\.threads) }.max() ?? 2)
        let maxSpeedup = max(Double(maxThreads), series.flatMap { $0.points.map(\.speedup) }.max() ?? 1) * 1.05
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        func x(_ threads: Double) -> Double { left + (threads - 1) / Double(maxThreads - 1) * plotWidth }
        func y(_ speedup: Double) -> Double { top + plotHeight - speedup / maxSpeedup * plotHeight }
        func number(_ value: Double) -> String { String(format: "%.1f", value) }

        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
            viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(number(left))" y="24" font-size="16" font-weight="bold">\(escape(title))</text>
            <text x="\(number(left))" y="44" fill="#555">\(escape(subtitle))</text>

            """
        // Grid and axes: one tick per thread count on x, about six on y.
        let tickStep = max(1, Int((maxThreads - 1) / 8 + 1))
        for threads in stride(from: 1, through: maxThreads, by: tickStep) {
            let position = number(x(Double(threads)))
            out += "<line x1=\"\(position)\" y1=\"\(number(top))\" x2=\"\(position)\" y2=\"\(number(top + plotHeight))\" stroke=\"#eee\"/>\n"
            out += "<text x=\"\(position)\" y=\"\(number(top + plotHeight + 18))\" text-anchor=\"middle\">\(threads)</text>\n"
        }
        let yStep = niceStep(maxSpeedup / 6)
        for tick in stride(from: 0.0, through: maxSpeedup, by: yStep) {
            let position = number(y(tick))
            out += "<line x1=\"\(number(left))\" y1=\"\(position)\" x2=\"\(number(left + plotWidth))\" y2=\"\(position)\" stroke=\"#eee\"/>\n"
            out += "<text x=\"\(number(left - 8))\" y=\"\(position)\" dy=\"4\" text-anchor=\"end\">\(String(format: yStep < 1 ? "%.1f" : "%.0f", tick))</text>\n"
        }
        out += "<rect x=\"\(number(left))\" y=\"\(number(top))\" width=\"\(number(plotWidth))\" height=\"\(number(plotHeight))\" fill=\"none\" stroke=\"#333\"/>\n"
        out += "<text x=\"\(number(left + plotWidth / 2))\" y=\"\(number(height - 12))\" text-anchor=\"middle\">threads</text>\n"
        out += "<text transform=\"translate(16 \(number(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">speedup</text>\n"
        // The ideal: n threads, n times as fast.
        out += "<line x1=\"\(number(x(1)))\" y1=\"\(number(y(1)))\" x2=\"\(number(x(Double(maxThreads))))\" y2=\"\(number(y(Double(maxThreads))))\" stroke=\"#999\" stroke-dasharray=\"6 4\"/>\n"

        var legendY = top + 10
        func legend(_ name: String, colour: String, dashed: Bool) {
            let dash = dashed ? " stroke-dasharray=\"6 4\"" : ""
            out += "<line x1=\"\(number(width - right + 16))\" y1=\"\(number(legendY))\" x2=\"\(number(width - right + 40))\" y2=\"\(number(legendY))\" stroke=\"\(colour)\" stroke-width=\"2\"\(dash)/>\n"
            out += "<text x=\"\(number(width - right + 46))\" y=\"\(number(legendY))\" dy=\"4\">\(escape(name))</text>\n"
            legendY += 20
        }
        for (index, line) in series.enumerated() {
            let colour = Self.colours[index % Self.colours.count]
            let points = line.points.map { "\(number(x(Double($0.threads)))),\(number(y($0.speedup)))" }.joined(separator: " ")
            out += "<polyline points=\"\(points)\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\"/>\n"
            for point in line.points {
                out += "<circle cx=\"\(number(x(Double(point.threads))))\" cy=\"\(number(y(point.speedup)))\" r=\"3.5\" fill=\"\(colour)\"><title>\(escape(line.name)): \(point.threads) threads, \(String(format: "%.2f", point.speedup))x</title></circle>\n"
            }
            legend(line.name, colour: colour, dashed: false)
        }
        legend("ideal", colour: "#999", dashed: true)
        return out + "</svg>\n"
    }

    /// 1, 2 or 5 times a power of ten, at least `raw`.
    private func niceStep(_ raw: Double) -> Double {
        let power = pow(10, floor(log10(max(raw, 1e-9))))
        for factor in [1.0, 2.0, 5.0, 10.0] where factor * power >= raw { return factor * power }
        return 10 * power
    }

    private func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// Writes the chart to `path`; throws a message naming the path if it cannot.
    /// Throws unless `path` can be written: checked before a benchmark runs, not after its minutes.
    static func checkWritable(_ path: String) throws {
        let folder = (path as NSString).deletingLastPathComponent
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) {
            guard !isFolder.boolValue, access(path, W_OK) == 0 else {
                throw ValidationError("--plot \(path): \(isFolder.boolValue ? "is a folder" : "is not writable")")
            }
            return
        }
        let parent = folder.isEmpty ? "." : folder
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isFolder), isFolder.boolValue else {
            throw ValidationError("--plot \(path): the folder \(parent) does not exist")
        }
        guard access(parent, W_OK) == 0 else { throw ValidationError("--plot \(path): the folder \(parent) is not writable") }
    }

    func write(to path: String) throws {
        do {
            try svg().write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw PlotError(path: path, reason: "\(error.localizedDescription)")
        }
    }
}

struct PlotError: Error, CustomStringConvertible {
    let path: String
    let reason: String
    var description: String { "could not write the plot to \(path): \(reason)" }
}
