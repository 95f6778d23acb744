import Foundation

/// A scatter plot as SVG: labelled points, optional ± error bars, series in their own colours, the line
/// y = x, and the Pareto front (the points no other point beats on both axes), for `zoo table`'s
/// score-vs-speed and score-vs-parameters figures and `zoo study teacher-size`'s student-vs-teacher ones.
struct ScatterPlot {
    var title: String, xLabel: String, yLabel: String
    var points: [(label: String, x: Double, y: Double)]
    /// Whether a larger x is better (speed) or a smaller one (parameters); y is better larger.
    var largerXBetter: Bool
    /// ± error bars on y, one per point (none when empty), and whether to draw the Pareto front.
    var yErrors: [Double] = []
    var showFront = true
    /// Each point's series (a colour each, named above the plot); empty: one series.
    var series: [String] = []
    /// A label for the line y = x, drawn where both axes' ranges meet (nil: no line).
    var diagonal: String? = nil

    /// Points on the front, in x order.
    var front: [(label: String, x: Double, y: Double)] {
        points.filter { p in
            !points.contains { q in
                let xBetter = largerXBetter ? q.x >= p.x : q.x <= p.x
                return xBetter && q.y >= p.y && (q.x != p.x || q.y != p.y)
            }
        }.sorted { $0.x < $1.x }
    }

    func svg() -> String {
        let (W, H, left, right, top, bottom) = (640.0, 420.0, 70.0, 30.0, 40.0, 50.0)
        func span(_ v: [Double]) -> (Double, Double) {
            let (lo, hi) = (v.min()!, v.max()!), pad = max((hi - lo) * 0.08, abs(hi) * 0.02, hi > lo ? 0 : 1)   // equal values (e.g. all 0) get a span of 2
            return (lo - pad, hi + pad)
        }
        let err = yErrors.count == points.count ? yErrors : Array(repeating: 0, count: points.count)
        let (x0, x1) = span(points.map(\.x)), (y0, y1) = span(zip(points, err).flatMap { [$0.y - $1, $0.y + $1] })
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (W - left - right) }
        func py(_ y: Double) -> Double { H - bottom - (y - y0) / (y1 - y0) * (H - top - bottom) }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        func esc(_ s: String) -> String { s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;") }
        var out = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(W))\" height=\"\(Int(H))\" font-family=\"sans-serif\" font-size=\"11\">",
                   "<rect width=\"\(Int(W))\" height=\"\(Int(H))\" fill=\"white\"/>",
                   "<text x=\"\(f(W / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"13\">\(esc(title))</text>",
                   "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(W - left - right))\" height=\"\(f(H - top - bottom))\" fill=\"none\" stroke=\"black\"/>",
                   "<text x=\"\(f((left + W - right) / 2))\" y=\"\(f(H - 12))\" text-anchor=\"middle\">\(esc(xLabel))</text>",
                   "<text x=\"16\" y=\"\(f((top + H - bottom) / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(f((top + H - bottom) / 2)))\">\(esc(yLabel))</text>"]
        for i in 0...4 {
            let x = x0 + (x1 - x0) * Double(i) / 4, y = y0 + (y1 - y0) * Double(i) / 4
            out.append("<text x=\"\(f(px(x)))\" y=\"\(f(H - bottom + 15))\" text-anchor=\"middle\">\(String(format: "%.3g", x))</text>")
            out.append("<text x=\"\(f(left - 6))\" y=\"\(f(py(y) + 4))\" text-anchor=\"end\">\(String(format: "%.3g", y))</text>")
        }
        let palette = ["#36c", "#e80", "#393", "#939", "#3aa", "#777"]
        let names = series.count == points.count ? series.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } } : []
        let colour = names.isEmpty ? Array(repeating: palette[0], count: points.count) : series.map { palette[names.firstIndex(of: $0)! % palette.count] }
        var legendX = left
        for (i, name) in names.enumerated() {   // each entry as wide as its name (about 6.2 px a character at 11 px)
            out.append("<rect x=\"\(f(legendX))\" y=\"\(f(top - 14))\" width=\"8\" height=\"8\" fill=\"\(palette[i % palette.count])\"/>")
            out.append("<text x=\"\(f(legendX + 12))\" y=\"\(f(top - 6))\">\(esc(name))</text>")
            legendX += 12 + 6.2 * Double(name.count) + 16
        }
        if let diagonal, max(x0, y0) < min(x1, y1) {
            let (a, b) = (max(x0, y0), min(x1, y1))
            out.append("<line x1=\"\(f(px(a)))\" y1=\"\(f(py(a)))\" x2=\"\(f(px(b)))\" y2=\"\(f(py(b)))\" stroke=\"#999\" stroke-dasharray=\"2 3\"/>")
            out.append("<text x=\"\(f(px(b) - 4))\" y=\"\(f(py(b) + 14))\" text-anchor=\"end\" fill=\"#999\">\(esc(diagonal))</text>")
        }
        let onFront = showFront ? Set(front.map(\.label)) : []
        if showFront {
            let line = front.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
            out.append("<polyline points=\"\(line)\" fill=\"none\" stroke=\"#c33\" stroke-dasharray=\"4 3\"/>")
        }
        for ((p, e), c) in zip(zip(points, err), colour) where e > 0 {
            out.append("<line x1=\"\(f(px(p.x)))\" y1=\"\(f(py(p.y - e)))\" x2=\"\(f(px(p.x)))\" y2=\"\(f(py(p.y + e)))\" stroke=\"\(c)\"/>")
        }
        // Points drawn on the same pixel share one label (e.g. a model and its 8-bit copy by parameters);
        // a label repeated above itself (one teacher's students) is drawn once, at the highest point.
        var groups: [(x: Double, y: Double, labels: [String])] = []
        for (p, c) in zip(points, colour) {
            out.append("<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"4\" fill=\"\(onFront.contains(p.label) ? "#c33" : c)\"/>")
            let (x, y) = (px(p.x).rounded(), py(p.y).rounded())
            if let i = groups.firstIndex(where: { $0.x == x && $0.labels == [p.label] }) { groups[i].y = min(groups[i].y, y) }
            else if let i = groups.firstIndex(where: { $0.x == x && $0.y == y }) { groups[i].labels.append(p.label) }
            else { groups.append((x, y, [p.label])) }
        }
        // A label goes 6 px above its point, starting right of it or ending left of it (about 6.2 px a
        // character at 11 px), the first of those that fits in the figure and overlaps no label placed
        // yet; else the nearest such place one to five lines higher or lower, with a line to its point.
        var placed: [(x0: Double, x1: Double, y: Double)] = []
        for g in groups {
            let label = g.labels.joined(separator: ", "), width = 6.2 * Double(label.count)
            let sides = [(g.x + 6, g.x + 6 + width), (g.x - 6 - width, g.x - 6)].filter { $0.0 >= left && $0.1 <= W }
            let shifts: [Double] = [0, -12, 12, -24, 24, -36, 36, -48, 48, -60, 60]
            let candidates = shifts.flatMap { dy in (sides.isEmpty ? [(g.x - 6 - width, g.x - 6)] : sides).map { (x0: $0.0, x1: $0.1, y: g.y - 6 + dy) } }
            let spot = candidates.first { c in c.y >= top + 10 && c.y <= H - bottom - 2 && !placed.contains { $0.x0 < c.x1 && c.x0 < $0.x1 && abs($0.y - c.y) < 12 } }
                ?? candidates[0]
            placed.append(spot)
            let onRight = spot.x0 > g.x
            if spot.y != g.y - 6 {
                out.append("<line x1=\"\(f(g.x))\" y1=\"\(f(g.y))\" x2=\"\(f(onRight ? spot.x0 - 2 : spot.x1 + 2))\" y2=\"\(f(spot.y - 4))\" stroke=\"#bbb\"/>")
            }
            out.append("<text x=\"\(f(onRight ? spot.x0 : spot.x1))\" y=\"\(f(spot.y))\"\(onRight ? "" : " text-anchor=\"end\"")>\(esc(label))</text>")
        }
        if showFront { out.append("<text x=\"\(f(W - right))\" y=\"\(f(top - 6))\" text-anchor=\"end\" fill=\"#c33\">red: Pareto front</text>") }
        if !yErrors.isEmpty { out.append("<text x=\"\(f(W - right))\" y=\"\(f(top - 6))\" text-anchor=\"end\">bars: ± sd over seeds</text>") }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }
}
