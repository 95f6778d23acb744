import Foundation

/// GLUE's official metrics (the definitions of sklearn / scipy, which the leaderboard uses).
public enum Metric: String, CaseIterable {
    case accuracy, f1, matthews, pearson, spearman

    public func compute(predictions: [Double], labels: [Double]) -> Double {
        precondition(predictions.count == labels.count)
        switch self {
        case .accuracy: return Metrics.accuracy(predictions.map(Int.init), labels.map(Int.init))
        case .f1: return Metrics.f1(predictions.map(Int.init), labels.map(Int.init))
        case .matthews: return Metrics.matthews(predictions.map(Int.init), labels.map(Int.init))
        case .pearson: return Metrics.pearson(predictions, labels)
        case .spearman: return Metrics.spearman(predictions, labels)
        }
    }
}

public enum Metrics {
    public static func accuracy(_ p: [Int], _ y: [Int]) -> Double {
        guard !y.isEmpty else { return 0 }
        return Double(zip(p, y).filter { $0 == $1 }.count) / Double(y.count)
    }

    /// F1 of the positive class 1 (sklearn `f1_score`, binary; 0 when undefined).
    public static func f1(_ p: [Int], _ y: [Int]) -> Double {
        var tp = 0, fp = 0, fn = 0
        for (a, b) in zip(p, y) {
            if a == 1 && b == 1 { tp += 1 } else if a == 1 { fp += 1 } else if b == 1 { fn += 1 }
        }
        let d = 2 * tp + fp + fn
        return d == 0 ? 0 : Double(2 * tp) / Double(d)
    }

    /// Matthews correlation coefficient, multi-class form (sklearn `matthews_corrcoef`; 0 when undefined).
    public static func matthews(_ p: [Int], _ y: [Int]) -> Double {
        let k = (p + y).max().map { $0 + 1 } ?? 0
        var t = [Double](repeating: 0, count: k), pr = [Double](repeating: 0, count: k)
        var c = 0.0
        for (a, b) in zip(p, y) {
            t[b] += 1; pr[a] += 1
            if a == b { c += 1 }
        }
        let s = Double(y.count)
        let cov = c * s - zip(t, pr).map(*).reduce(0, +)
        let vp = s * s - pr.map { $0 * $0 }.reduce(0, +)
        let vt = s * s - t.map { $0 * $0 }.reduce(0, +)
        let d = vp * vt
        return d == 0 ? 0 : cov / d.squareRoot()
    }

    public static func pearson(_ x: [Double], _ y: [Double]) -> Double {
        let n = Double(x.count)
        let mx = x.reduce(0, +) / n, my = y.reduce(0, +) / n
        var sxy = 0.0, sxx = 0.0, syy = 0.0
        for (a, b) in zip(x, y) {
            sxy += (a - mx) * (b - my); sxx += (a - mx) * (a - mx); syy += (b - my) * (b - my)
        }
        let d = (sxx * syy).squareRoot()
        return d == 0 ? 0 : sxy / d
    }

    /// Spearman's rho: Pearson of ranks, ties getting their average rank (scipy `spearmanr`).
    public static func spearman(_ x: [Double], _ y: [Double]) -> Double {
        pearson(ranks(x), ranks(y))
    }

    public static func ranks(_ v: [Double]) -> [Double] {
        let order = v.indices.sorted { v[$0] < v[$1] }
        var r = [Double](repeating: 0, count: v.count)
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && v[order[j + 1]] == v[order[i]] { j += 1 }
            let avg = Double(i + j) / 2 + 1
            for k in i...j { r[order[k]] = avg }
            i = j + 1
        }
        return r
    }
}

/// A task's metrics and score (the mean of its metrics), ×100 as GLUE reports them.
public struct TaskResult: Codable {
    public var task: String
    public var metrics: [String: Double]
    public var score: Double

    public init(task: GLUETask, predictions: [Double], labels: [Double]) {
        self.task = task.name
        var m: [String: Double] = [:]
        for metric in task.metrics { m[metric.rawValue] = 100 * metric.compute(predictions: predictions, labels: labels) }
        metrics = m
        score = m.values.reduce(0, +) / Double(m.count)
    }
}

/// GLUE score: the mean of task scores, MNLI-m and MNLI-mm averaged into one MNLI entry first.
/// Returns the score and the convention used, to be printed with it.
public func glueScore(_ results: [TaskResult]) -> (score: Double, convention: String) {
    var byTask: [String: Double] = [:]
    for r in results { byTask[r.task] = r.score }
    var scores: [Double] = []
    var names: [String] = []
    let mnli = ["mnli-m", "mnli-mm"].compactMap { byTask[$0] }
    if !mnli.isEmpty { scores.append(mnli.reduce(0, +) / Double(mnli.count)); names.append("MNLI") }
    for r in results where !r.task.hasPrefix("mnli") && r.task != "ax" { scores.append(r.score); names.append(r.task) }
    let s = scores.isEmpty ? 0 : scores.reduce(0, +) / Double(scores.count)
    return (s, "mean of task scores over \(names.joined(separator: ", ")); task score = mean of its metrics; MNLI = mean of -m and -mm")
}
