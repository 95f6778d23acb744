import Foundation
import ZooCore

/// `zoo study`: experiments made of `zoo table` cells.
struct StudyCommand: Command {
    static let name = "study"
    static let summary = "experiments over zoo table cells: kd-stages (TinyBERT with each place of distillation switched off)"
    static let help = """
    zoo study kd-stages --base DIR [--tasks rte,mrpc,stsb,cola,sst2] [--seeds 42,43,44] [--out runs/kd-stages]
                        [--limit N] [--plan | --cell … | --collect] [--data DIR] [--threads N]
      The seed's KD table as an experiment: TinyBERT, and TinyBERT with each of its general stage,
      embedding, attention, hidden-state and prediction distillation and its data augmentation
      switched off in turn (`zoo distill --without`), as zoo table rows over the tasks and seeds
      (cached, resumable, --plan for GNU parallel or Slurm, --collect). Prints each row's mean dev
      score over the tasks with its spread over the seeds (mean ± standard deviation of the per-seed
      means) and its difference from the full TinyBERT; writes OUT/kd-stages.md beside the table.
      (teacher-size, the other study of issue 13, is not built yet.)
    """
    static let options = TableCommand.options.subtracting(["variants"])
    static let flags = TableCommand.flags.subtracting(["no-speed"])

    static func run(_ args: Arguments) throws {
        guard args.positional == ["kd-stages"] else {
            throw ZooError.usage(args.positional.first == "teacher-size" ? "the teacher-size study is not built yet" : "zoo study takes kd-stages")
        }
        let rows = ["tinybert"] + registry.methods.map(\.name).filter { $0.hasPrefix("tinybert-without-") }   // the DISTILL plugin's ablations
        var argv = Array(CommandLine.arguments.drop { $0 != "kd-stages" }.dropFirst())
        if args["seeds"] == nil { argv += ["--seeds", "42,43,44"] }
        if args["out"] == nil { argv += ["--out", "runs/kd-stages"] }
        argv += ["--variants", rows.joined(separator: ","), "--no-speed"]
        let table = try Arguments(argv, options: TableCommand.options, flags: TableCommand.flags)
        try TableCommand.run(table)
        guard !args.flag("plan"), args["cell"] == nil else { return }
        let out = URL(fileURLWithPath: table["out"]!)
        guard let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("table.json"))) as? [String: Any],
              let made = obj["rows"] as? [[String: Any]] else { throw ZooError.badFile(path: out.appendingPathComponent("table.json").path, problem: "not a zoo table") }
        // per row: the mean over tasks for each seed made on every task
        func perSeed(_ r: [String: Any]) -> [Double] {
            let scores = (r["scores"] as? [String: [Double]] ?? [:]).values
            guard let n = scores.map(\.count).min(), n > 0 else { return [] }
            return (0..<n).map { j in scores.map { $0[j] }.reduce(0, +) / Double(scores.count) }
        }
        func stats(_ x: [Double]) -> (Double, Double) {
            let m = x.reduce(0, +) / Double(x.count)
            return (m, x.count > 1 ? (x.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(x.count - 1)).squareRoot() : 0)
        }
        let full = made.first.map(perSeed).flatMap { $0.isEmpty ? nil : stats($0).0 }
        var md = ["| TinyBERT | seeds | mean dev (± sd over seeds) | vs full TinyBERT |", "|---|---:|---:|---:|"]
        for r in made {
            let row = r["row"] as! String, x = perSeed(r)
            let name = row == "tinybert" ? "full" : row.replacingOccurrences(of: "tinybert-without-", with: "without ")
            guard !x.isEmpty else { md.append("| \(name) | 0 | — | — |"); continue }
            let (m, sd) = stats(x)
            md.append(String(format: "| %@ | %d | %.2f ± %.2f | %@ |", name, x.count, m, sd,
                             full.map { String(format: "%+.2f", m - $0) } ?? "—"))
        }
        try writeAtomically(Data((md.joined(separator: "\n") + "\n").utf8), to: out.appendingPathComponent("kd-stages.md"))
        print("\n" + md.joined(separator: "\n"))
    }
}
