import Foundation
import ZooCore

/// `zoo search`: the most accurate row of `zoo table` that meets a latency budget on this CPU.
struct SearchCommand: Command {
    static let name = "search"
    static let summary = "the most accurate table row within a latency budget on this CPU (and the Pareto front)"
    static let help = """
    zoo search --task T --latency-ms X --base DIR [--batch 1] [--seq 128] [--variants …] [--seeds 42]
               [--out runs/table] [--limit N] [--finetune-epochs N] [--rounds 3] [--data DIR] [--threads N]
      Reads the cells `zoo table` made in OUT for task T (the same --base, --variants, --seeds,
      --limit and --finetune-epochs; a cell made with others is listed as missing):
      each row's dev score (mean over the seeds made) and its latency at --batch × --seq on this CPU,
      the median of --rounds `zoo bench` runs of the row's model of the first seed, measured now
      unless OUT/latency holds it for this CPU. Prints every row, marks the Pareto front (no other
      row both faster and better) and names the most accurate row within the budget; exit 1 when
      none is. Rows without a finished cell are listed as missing (make them with zoo table).
    """
    static let options: Set<String> = ["task", "latency-ms", "batch", "seq", "base", "variants", "seeds", "out", "rounds", "data", "threads", "limit", "finetune-epochs"]
    static let flags: Set<String> = []

    static func run(_ args: Arguments) throws {
        guard args.positional.isEmpty else { throw ZooError.usage("unexpected argument '\(args.positional[0])'") }
        let task = try GLUETask.named(try args.required("task"))
        guard let budget = Double(try args.required("latency-ms")), budget > 0 else { throw ZooError.usage("--latency-ms takes a positive number, got '\(args["latency-ms"]!)'") }
        let (batch, seq) = (try args.int("batch", default: 1)!, try args.int("seq", default: 128, range: 1...512)!)
        let rounds = try args.int("rounds", default: 3)!
        let s = try TableCommand.setup(args)
        var rows: [(name: String, score: Double, ms: Double)] = [], missing: [String] = []
        for row in s.rows {
            let name = TableCommand.rowName(row)
            let made = s.seeds.compactMap { seed in (try? TableCommand.finished(s, task: task, seed: seed, row: row)).map { (seed, $0) } }
            guard let first = made.first?.0 else { missing.append(name); continue }
            let score = made.compactMap { $0.1["dev"] as? Double }.reduce(0, +) / Double(made.count)
            rows.append((name, score, try latency(s, row: row, task: task, seed: first, batch: batch, seq: seq, rounds: rounds)))
        }
        guard !rows.isEmpty else { throw ZooError.failed("no finished cell for \(task.glueName) in \(s.out.path); make them with zoo table") }
        let front = Set(rows.filter { r in !rows.contains { $0.ms <= r.ms && $0.score >= r.score && ($0.ms < r.ms || $0.score > r.score) } }.map(\.name))
        let best = rows.filter { $0.ms <= budget }.max { $0.score < $1.score }
        print("\(task.glueName) dev against latency at b=\(batch), s=\(seq) on \(Runtime.cpuName), \(Runtime.threads) threads (budget \(budget) ms)\n")
        print("| row | dev | latency (ms) | Pareto front | within budget |\n|---|---:|---:|:-:|:-:|")
        for r in rows.sorted(by: { $0.ms < $1.ms }) {
            print(String(format: "| %@ | %.2f | %.2f | %@ | %@ |", r.name, r.score, r.ms, front.contains(r.name) ? "●" : "", r.ms <= budget ? "yes" : "no"))
        }
        if !missing.isEmpty { print("\nNo finished cell yet: \(missing.joined(separator: ", "))") }
        guard let best else {
            throw ZooError.failed("no row runs within \(budget) ms at b=\(batch), s=\(seq) here; the fastest, \(rows.min { $0.ms < $1.ms }!.name), takes \(String(format: "%.2f", rows.map(\.ms).min()!)) ms")
        }
        print(String(format: "\nbest within %.2f ms: %@ (dev %.2f, %.2f ms)", budget, best.name, best.score, best.ms))
    }

    /// A row's median latency at (batch, seq), cached per CPU and thread count in OUT/latency.
    static func latency(_ s: TableCommand.Setup, row: [Method], task: GLUETask, seed: UInt64, batch: Int, seq: Int, rounds: Int) throws -> Double {
        let name = TableCommand.rowName(row)
        let url = s.out.appendingPathComponent("latency/\(task.name)-\(name)-b\(batch)-s\(seq).json")
        let key: [String: Any] = ["cpu": Runtime.cpuName, "threads": Runtime.threads, "rounds": rounds]
        if let data = FileManager.default.contents(atPath: url.path), let r = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           key.allSatisfy({ "\(r[$0.key] ?? "")" == "\($0.value)" }), let ms = r["median_ms"] as? Double {
            return ms
        }
        let dir = TableCommand.cellDir(s, task: task, seed: seed, row: row)
        let ms = TableCommand.median(try (0..<rounds).map { _ in try TableCommand.benchMs(row.last!.variant, ["--weights", dir.path], batch: batch, seq: seq, s) })
        log(String(format: "measured %@: %.2f ms at b=%d, s=%d", name, ms, batch, seq))
        try writeAtomically(try JSONSerialization.data(withJSONObject: key.merging(["median_ms": ms, "model": dir.path]) { a, _ in a }, options: [.sortedKeys]), to: url)
        return ms
    }
}
