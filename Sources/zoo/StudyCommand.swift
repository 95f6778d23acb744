import Foundation
import ZooCore

/// `zoo study`: experiments made of `zoo table` cells.
struct StudyCommand: Command {
    static let name = "study"
    static let summary = "experiments over zoo table cells: kd-stages (TinyBERT's places of distillation), teacher-size"
    static let help = """
    zoo study kd-stages --base DIR [--tasks rte,mrpc,stsb,cola,sst2] [--seeds 42,43,44] [--out runs/kd-stages]
                        [--student cut|random] [--limit N] [--finetune-epochs N] [--plan | --cell … | --collect] [--data DIR] [--threads N]
      The seed's KD table as an experiment: TinyBERT, and TinyBERT with each of its general stage,
      embedding, attention, hidden-state and prediction distillation and its data augmentation
      switched off in turn (`zoo distill --without`), as zoo table rows over the tasks and seeds
      (cached, resumable, --plan for GNU parallel or Slurm, --collect). --student cut (default): the
      tinybert-cut rows, the student cut out of the teacher; random: TinyBERT's own random start,
      which the GLUE-only corpus here leaves at the majority class (README Distillation). Prints each row's mean dev
      score over the tasks with its spread over the seeds (mean ± standard deviation of the per-seed
      means) and its difference from the full TinyBERT; writes OUT/kd-stages.md beside the table.
    zoo study teacher-size --base DIR [--teacher-layers N,4,3,2] [--teachers DIR,…] [--tasks …]
                           [--students tinybert-cut,distilbert] [--seeds 42,43,44] [--out runs/teacher-size]
                           [--limit N] [--finetune-epochs N] [--plan | --collect]
      How the teacher's size changes the distilled student: teachers made of the first L layers of
      the pre-trained --base (default: all N of its layers, i.e. --base itself, and 4, 3, 2; written
      to OUT/teachers/<name>-L<L>) and any --teachers given (other pre-trained checkpoints), each a
      zoo table in OUT/<teacher> with the rows bert (the teacher, fine-tuned per task) and the
      --students (zoo table rows; default tinybert-cut, a fixed TinyBERT-4L-312 student cut out of
      each teacher, and distilbert, every other teacher layer; `tinybert` is TinyBERT's random start
      after a general stage from each teacher, which the GLUE-only corpus here leaves at the
      majority class, README Distillation). Prints and writes
      OUT/teacher-size.md (per teacher: layers, parameters, the teacher's and each student's mean dev
      score over the tasks, ± sd over seeds) and two plots: student score against teacher parameters
      (student-vs-teacher-parameters.svg) and against the teacher's score, with the line y = x where
      the axes' ranges overlap (student-vs-teacher-score.svg), a colour per student. --plan writes
      every teacher's cells into OUT/plan.
    """
    static let options = TableCommand.options.subtracting(["variants"]).union(["teacher-layers", "teachers", "students", "student"])
    static let flags = TableCommand.flags.subtracting(["no-speed"])

    static func run(_ args: Arguments) throws {
        switch args.positional {
        case ["kd-stages"]: try kdStages(args)
        case ["teacher-size"]: try teacherSize(args)
        default: throw ZooError.usage("zoo study takes kd-stages or teacher-size, got '\(args.positional.first ?? "")'")
        }
    }

    /// The study's `zoo table` options (less `excluding`), with its defaults for --seeds and --out.
    static func tableArguments(defaultOut: String, _ args: Arguments, excluding: Set<String> = []) -> [String] {
        var argv = args.forwarded(options: TableCommand.options.subtracting(excluding), flags: TableCommand.flags)
        if args["seeds"] == nil { argv += ["--seeds", "42,43,44"] }
        if args["out"] == nil { argv += ["--out", defaultOut] }
        return argv
    }

    static func kdStages(_ args: Arguments) throws {
        if let extra = ["teacher-layers", "teachers", "students"].first(where: { args[$0] != nil }) { throw ZooError.usage("--\(extra) belongs to teacher-size") }
        let full = try ["cut": "tinybert-cut", "random": "tinybert"][args["student"] ?? "cut"]
            ?? { throw ZooError.usage("--student takes cut or random, got '\(args["student"]!)'") }()
        let rows = [full] + registry.methods.map(\.name).filter { $0.hasPrefix(full + "-without-") }   // the DISTILL plugin's ablations
        let table = try Arguments(tableArguments(defaultOut: "runs/kd-stages", args) + ["--variants", rows.joined(separator: ","), "--no-speed"],
                                  options: TableCommand.options, flags: TableCommand.flags)
        let cost = try TableCommand.run(table, collect: TableCommand.collectCommand(["zoo", "study", "kd-stages"], args, options: options, flags: flags))
        guard !args.flag("plan"), args["cell"] == nil else { return }
        let out = URL(fileURLWithPath: table["out"]!)
        let made = try tableRows(out)
        let fullScores = made.first { $0["row"] as? String == full }.map(perSeed) ?? [:]
        var md = ["| \(full) | seeds | mean dev (± sd over seeds) | vs full \(full) (same seeds) |", "|---|---:|---:|---:|"]
        for r in made {
            let row = r["row"] as! String, x = perSeed(r)
            let name = row == full ? "full" : row.replacingOccurrences(of: full + "-without-", with: "without ")
            guard !x.isEmpty else { md.append("| \(name) | 0 | — | — |"); continue }
            let paired = x.compactMap { seed, v in fullScores[seed].map { v - $0 } }   // the difference on the seeds both have
            md.append(String(format: "| %@ | %d | %@ | %@ |", name, x.count, meanSD(Array(x.values)),
                             paired.isEmpty ? "—" : String(format: "%+.2f", stats(paired).mean)))
        }
        md.append("\nmean GLUE dev over the tasks per seed made on every task; ± the sample sd (n − 1) over those seeds, — for one seed")
        if let line = TableCommand.costLine(cost) { md.append("\n" + line) }
        try writeAtomically(Data((md.joined(separator: "\n") + "\n").utf8), to: out.appendingPathComponent("kd-stages.md"))
        print("\n" + md.joined(separator: "\n"))
    }

    static func teacherSize(_ args: Arguments) throws {
        if args["cell"] != nil { throw ZooError.usage("teacher-size runs its cells through zoo table --cell (see its --plan)") }
        if args["student"] != nil { throw ZooError.usage("--student belongs to kd-stages (teacher-size takes --students)") }
        let base = try Checkpoint(dir: URL(fileURLWithPath: try args.required("base")))
        let N = base.spec.layers.count
        let layerCounts = try (args["teacher-layers"] ?? ([N] + [4, 3, 2].filter { $0 < N }).map(String.init).joined(separator: ",")).split(separator: ",").map { s -> Int in
            guard let L = Int(s), (1...N).contains(L) else { throw ZooError.usage("--teacher-layers takes layer counts in 1...\(N) (the base has \(N)), got '\(s)'") }
            return L
        }
        if let twice = layerCounts.firstRepeated { throw ZooError.usage("--teacher-layers names \(twice) twice") }
        let students = (args["students"] ?? "tinybert-cut,distilbert").split(separator: ",").map(String.init)
        if let twice = students.firstRepeated { throw ZooError.usage("--students names \(twice) twice") }
        if let bad = students.first(where: { s in s == "bert" || !registry.methods.contains { $0.name == s } }) {
            throw ZooError.usage("--students takes table rows other than bert (zoo list --methods), got '\(bad)'")
        }
        let argv = tableArguments(defaultOut: "runs/teacher-size", args, excluding: ["base"])
        let out = URL(fileURLWithPath: argv[argv.lastIndex(of: "--out")! + 1]).standardizedFileURL
        // The teachers: (name, pre-trained checkpoint directory); each one's table is OUT/<name>.
        let stem = base.dir.standardizedFileURL.lastPathComponent
        var teachers = layerCounts.map { L in ("\(stem)-L\(L)", L == N ? base.dir : out.appendingPathComponent("teachers/\(stem)-L\(L)")) }
        for path in (args["teachers"] ?? "").split(separator: ",").map(String.init) {
            let ckpt = try Checkpoint(dir: URL(fileURLWithPath: path))
            teachers.append((ckpt.dir.standardizedFileURL.lastPathComponent, ckpt.dir))
        }
        if let clash = teachers.map(\.0).first(where: ["plan", "teachers"].contains) {
            throw ZooError.usage("a teacher named '\(clash)' would share OUT/\(clash) with the study's own folder; rename its directory")
        }
        if let twice = teachers.map(\.0).firstRepeated {
            throw ZooError.usage("two teachers are named '\(twice)' (OUT/\(twice) would hold both); give them directories of different names")
        }
        for (L, (name, dir)) in zip(layerCounts, teachers) where L < N && !FileManager.default.fileExists(atPath: dir.appendingPathComponent("model.safetensors").path) {
            let store = ParameterStore(spec: base.spec, trainable: false)
            try store.load(base, seed: 0)
            try store.subset(layers: Array(0..<L), family: base.spec.family).writeCheckpoint(to: dir, base: base)
            log("teacher \(name): the first \(L) of \(N) layers of \(base.dir.path) → \(dir.path)")
        }
        var lines: [String] = []
        let collect = TableCommand.collectCommand(["zoo", "study", "teacher-size"], args, options: options, flags: flags)
        var cost: [String: Double] = [:]
        for (name, dir) in teachers {
            var t = argv
            t[t.lastIndex(of: "--out")! + 1] = out.appendingPathComponent(name).path
            log("teacher \(name)")
            cost.merge(try TableCommand.run(try Arguments(t + ["--base", dir.path, "--variants", (["bert"] + students).joined(separator: ","), "--no-speed"],
                                                          options: TableCommand.options, flags: TableCommand.flags), collect: collect), uniquingKeysWith: +)
            if args.flag("plan") {
                lines += try String(contentsOf: out.appendingPathComponent("\(name)/plan/cells.txt"), encoding: .utf8).split(separator: "\n").map(String.init)
            }
        }
        if args.flag("plan") {
            return try TableCommand.writePlan(lines, to: out.appendingPathComponent("plan"), threads: try args.int("threads"),
                                              collect: collect.map(TableCommand.quoted).joined(separator: " "))
        }
        // Per teacher: its size, its own score and each student's, mean ± sd over the seeds.
        var md = ["| teacher | layers | parameters | teacher dev | " + students.joined(separator: " | ") + " |",
                  "|---|---:|---:|---:|" + String(repeating: "---:|", count: students.count)]
        var points: [(teacher: String, student: String, parameters: Double, teacherScore: Double?, mean: Double, sd: Double)] = []
        for (name, dir) in teachers {
            let spec = try Checkpoint(dir: dir).spec
            let rows = Dictionary(try tableRows(out.appendingPathComponent(name)).map { ($0["row"] as! String, perSeed($0)) }) { a, _ in a }
            func cell(_ row: String) -> String {
                guard let x = rows[row], !x.isEmpty else { return "—" }
                return "\(meanSD(Array(x.values))) (\(x.count))"
            }
            md.append("| \(name) | \(spec.layers.count) | \(spec.parameterCount) | " + (["bert"] + students).map(cell).joined(separator: " | ") + " |")
            for student in students {
                guard let x = rows[student], !x.isEmpty else { continue }
                let p = point(student: x, teacher: rows["bert"] ?? [:])
                points.append((name, student, Double(spec.parameterCount) / 1e6, p.teacher, p.mean, p.sd ?? 0))
            }
        }
        md.append("\nmean GLUE dev over \(args["tasks"] ?? "rte,mrpc,stsb,cola,sst2") per seed made on every task; ± the sample sd (n − 1) over those seeds, — for one seed (how many seeds)")
        if let line = TableCommand.costLine(cost) { md.append("\n" + line + " (all teachers; `bert` is the teachers' fine-tuning)") }
        try writeAtomically(Data((md.joined(separator: "\n") + "\n").utf8), to: out.appendingPathComponent("teacher-size.md"))
        print("\n" + md.joined(separator: "\n"))
        // A point per (teacher, student), labelled by its teacher, coloured by its student.
        let withTeacher = points.filter { $0.teacherScore != nil }
        let plots = [("student-vs-teacher-parameters.svg", "teacher parameters (M)", points.map { ($0.teacher, $0.parameters, $0.mean) }, points, nil),
                     ("student-vs-teacher-score.svg", "teacher mean dev score (same seeds)", withTeacher.map { ($0.teacher, $0.teacherScore!, $0.mean) },
                      withTeacher, "student = teacher")]
        for (file, xLabel, xy, of, diagonal) in plots where !xy.isEmpty {
            let plot = ScatterPlot(title: "distilled student against its teacher", xLabel: xLabel, yLabel: "student mean dev score",
                                   points: xy, largerXBetter: true, yErrors: of.map(\.sd), showFront: false, series: of.map(\.student), diagonal: diagonal)
            try writeAtomically(Data(plot.svg().utf8), to: out.appendingPathComponent(file))
        }
    }

    /// The rows of a zoo table's table.json.
    static func tableRows(_ out: URL) throws -> [[String: Any]] {
        let url = out.appendingPathComponent("table.json")
        guard let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any],
              let rows = obj["rows"] as? [[String: Any]] else { throw ZooError.badFile(path: url.path, problem: "not a zoo table") }
        return rows
    }

    /// A row's mean over the tasks for each seed made on every task (table.json's `scores` per task
    /// list the dev scores of the seeds in its `seeds`, the seeds made on that task).
    static func perSeed(_ r: [String: Any]) -> [Int: Double] {
        let scores = r["scores"] as? [String: [Double]] ?? [:], seeds = r["seeds"] as? [String: [Int]] ?? [:]
        guard !scores.isEmpty else { return [:] }
        let byTask = scores.map { task, x in Dictionary(uniqueKeysWithValues: zip(seeds[task] ?? [], x)) }
        let common = byTask.map { Set($0.keys) }.reduce(Set(byTask[0].keys)) { $0.intersection($1) }
        return Dictionary(uniqueKeysWithValues: common.map { seed in (seed, byTask.map { $0[seed]! }.reduce(0, +) / Double(byTask.count)) })
    }

    /// A student's point: its mean and sd over its seeds, and its teacher's mean over the same seeds
    /// (nil when the teacher has none of them), so both axes are of one set of seeds.
    static func point(student: [Int: Double], teacher: [Int: Double]) -> (teacher: Double?, mean: Double, sd: Double?) {
        let t = student.keys.compactMap { teacher[$0] }, s = stats(Array(student.values))
        return (t.isEmpty ? nil : stats(t).mean, s.mean, s.sd)
    }

    /// Mean and sample standard deviation (n − 1; nil for one value).
    static func stats(_ x: [Double]) -> (mean: Double, sd: Double?) {
        let m = x.reduce(0, +) / Double(x.count)
        return (m, x.count > 1 ? (x.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(x.count - 1)).squareRoot() : nil)
    }

    /// "mean ± sd", the sd as — for one value.
    static func meanSD(_ x: [Double]) -> String {
        let s = stats(x)
        return String(format: "%.2f ± ", s.mean) + (s.sd.map { String(format: "%.2f", $0) } ?? "—")
    }
}
