import Foundation

/// The GLUE leaderboard's submission format: one `<Task>.tsv` per task, header `index\tprediction`,
/// label strings as the leaderboard expects (class names, or a score with 3 decimals for STS-B).
public enum Leaderboard {
    public static func fileName(_ task: GLUETask) -> String { "\(task.glueName).tsv" }

    public static func format(_ task: GLUETask, predictions: [(index: Int, value: Double)]) -> String {
        var s = "index\tprediction\n"
        for (i, v) in predictions {
            s += "\(i)\t" + (task.isRegression ? String(format: "%.3f", v) : task.labels[Int(v)]) + "\n"
        }
        return s
    }

    public static func write(_ task: GLUETask, predictions: [(index: Int, value: Double)], to dir: URL) throws -> URL {
        let url = dir.appendingPathComponent(fileName(task))
        try writeAtomically(Data(format(task, predictions: predictions).utf8), to: url)
        return url
    }

    /// Reads a predictions file; every index 0..<count must appear exactly once.
    public static func read(_ task: GLUETask, url: URL, count: Int) throws -> [Double] {
        let text = try readText(url)
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).map { $0.hasSuffix("\r") ? $0.dropLast() : $0 }
        if lines.last?.isEmpty == true { lines.removeLast() }
        guard let header = lines.first, header.split(separator: "\t").map(String.init) == ["index", "prediction"] else {
            throw ZooError.badFile(path: url.path, problem: "line 1: header must be 'index<TAB>prediction'")
        }
        var out = [Double?](repeating: nil, count: count)
        for (n, line) in lines.enumerated().dropFirst() {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard f.count == 2 else { throw ZooError.badFile(path: url.path, problem: "line \(n + 1): expected 2 tab-separated fields, found \(f.count)") }
            guard let i = Int(f[0]), i >= 0, i < count else {
                throw ZooError.badFile(path: url.path, problem: "line \(n + 1): index '\(f[0])' is not in 0..<\(count)")
            }
            guard out[i] == nil else { throw ZooError.badFile(path: url.path, problem: "line \(n + 1): index \(i) appears twice") }
            let raw = String(f[1])
            if task.isRegression {
                guard let v = Double(raw), v.isFinite else { throw ZooError.badFile(path: url.path, problem: "line \(n + 1): prediction '\(raw)' is not a number") }
                out[i] = v
            } else {
                guard let k = task.labels.firstIndex(of: raw) else {
                    throw ZooError.badFile(path: url.path, problem: "line \(n + 1): prediction '\(raw)' is not one of \(task.labels.joined(separator: ", "))")
                }
                out[i] = Double(k)
            }
        }
        if let missing = out.firstIndex(where: { $0 == nil }) {
            throw ZooError.badFile(path: url.path, problem: "no prediction for index \(missing) (\(out.filter { $0 == nil }.count) of \(count) missing)")
        }
        return out.map { $0! }
    }
}
