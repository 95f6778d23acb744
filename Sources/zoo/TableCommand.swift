import Foundation
import Glibc
import ZooCore

/// `zoo table`: the seed's table on this CPU. Every cell (task, seed, row) is a chain of steps —
/// the base fine-tuned on the task (`bert`), then each method of the row (`tinybert+qbert-int8`:
/// TinyBERT, then 8-bit) — each step a zoo command of its plugin (`Method`), run in its own
/// directory and cached there by its inputs.
struct TableCommand: Command {
    static let name = "table"
    static let summary = "every method side by side on GLUE dev: parameters, size, speed, scores (cached, resumable cells)"
    static let help = """
    zoo table --base DIR [--tasks rte,mrpc,stsb,cola,sst2] [--variants bert,heads40,…] [--seeds 42]
              [--out runs/table] [--limit N] [--finetune-epochs N] [--no-speed] [--rounds 3] [--data DIR] [--threads N]
    zoo table … --plan          write the cells as one command per line and a Slurm array script
    zoo table … --cell TASK/SEED/ROW    make one cell (what the plan's lines run)
    zoo table … --collect       the table from the cells made so far (runs nothing)
      A row is a method or methods joined by + (tinybert+qbert-int8: TinyBERT, then 8-bit); every
      row starts from the base fine-tuned on the task (the bert row). `zoo list --methods` lists
      the methods. Each step of a cell runs its zoo command in OUT/cells/TASK/seed-S/CHAIN (output in
      step.log there) and records its inputs, dev score, parameters and bytes in step.json: a step
      whose step.json matches is never redone, an interrupted one is started again (fine-tuning
      and distillation continue from their last checkpoint). Steps are locked, so cells may run at
      once (GNU parallel, Slurm) on one directory. --limit N: at most N training examples per step.
      --finetune-epochs N: the bert row's fine-tuning runs N epochs (default zoo finetune's 3; with
      a small --limit, 3 epochs of MiniLM leave it at the majority class: README The table).
      Records travel without weights: with --out results/table git keeps only step.json, speeds
      and the table; a recorded step whose weights a later step needs is made again.
      Speed: each row's model of the first task and seed against the bert row's, `zoo bench`
      side by side in one run (--rounds interleaved rounds, medians) at b=1 and b=32, s=128;
      cached per CPU and --threads in OUT/speed. And at --speed-geometry (default bert-base; none: not): random
      weights of each row's shape at that scale (each method says what it would make there: the
      pruned fractions, the student's layers, …) against the dense model of that geometry, and at
      bert-base the seed's speed-only BERT-large row. Output: OUT/table.md (printed), table.csv, table.json, and
      score-speed.svg, score-parameters.svg (mean score against speed / parameters, Pareto front).
      --plan writes OUT/plan/cells.txt and OUT/plan/table.sbatch; run them with
      `parallel -j N < OUT/plan/cells.txt` (add --sshlogin for other hosts sharing OUT) or
      `sbatch OUT/plan/table.sbatch`, then `zoo table … --collect`.
    """
    static let options: Set<String> = ["base", "tasks", "variants", "seeds", "out", "limit", "finetune-epochs", "rounds", "data", "threads", "cell", "speed-geometry"]
    static let flags: Set<String> = ["no-speed", "plan", "collect"]

    static let defaultRows = "bert,heads40,heads50-ffn60,albert,qbert-int8,qbert-mixed,distilbert,tinybert,tinybert-cut,bert-pkd,bilstm-soft,tinybert+qbert-int8,heads40+qbert-int8"

    struct Setup {
        let base: String, out: URL, glue: URL, limit: Int?, finetuneEpochs: Int?, threads: Int?
        let baseSHA: String?      // sha256 of the base's model.safetensors, recorded with each step
        let tasks: [GLUETask], seeds: [UInt64], rows: [[Method]]
        let argv: [String]        // the options a cell command repeats
        let speedGeometry: Geometry?
    }

    static func run(_ args: Arguments) throws { try run(args, collect: nil) }

    /// "Cost of the made cells: …" for a cost by method; nil when nothing is made.
    static func costLine(_ cost: [String: Double]) -> String? {
        guard !cost.isEmpty else { return nil }
        let minutes = cost.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { "\($0.key) " + String(format: "%.0f", $0.value / 60) }
        return String(format: "Cost of the made cells: %.1f hours of recorded step time (wall clock of each step's process, a step shared by cells once); minutes by method: ",
                      cost.values.reduce(0, +) / 3600) + minutes.joined(separator: ", ")
    }

    /// `collect`: the command a plan names for collecting its cells (nil: this zoo table's with --collect).
    /// Returns the made cells' recorded seconds by method (`cost`) when it writes the table.
    @discardableResult
    static func run(_ args: Arguments, collect: [String]?) throws -> [String: Double] {
        guard args.positional.isEmpty else { throw ZooError.usage("unexpected argument '\(args.positional[0])'") }
        let s = try setup(args)
        if let cell = args["cell"] {
            let parts = cell.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 3, let seed = UInt64(parts[1]) else { throw ZooError.usage("--cell takes TASK/SEED/ROW, got '\(cell)'") }
            _ = try make(s, task: try GLUETask.named(parts[0]), seed: seed, row: try chain(parts[2]))
            return [:]
        }
        if args.flag("plan") {
            try plan(s, collect: collect ?? collectCommand(["zoo", "table"], args, options: options, flags: flags))
            return [:]
        }
        var cells: [String: [String: Any]] = [:]
        for task in s.tasks {
            for seed in s.seeds {
                for row in s.rows {
                    let key = "\(task.name)/\(seed)/\(rowName(row))"
                    cells[key] = args.flag("collect") ? try? finished(s, task: task, seed: seed, row: row) : try make(s, task: task, seed: seed, row: row)
                }
            }
        }
        var speeds: [String: [String: Any]] = [:], geometrySpeeds: [String: [String: Any]] = [:]
        let geometry = s.speedGeometry
        if !args.flag("no-speed") {
            let (rounds, measure) = (try args.int("rounds", default: 3)!, !args.flag("collect"))
            for row in s.rows where rowName(row) != "bert" {
                speeds[rowName(row)] = try speed(s, row: row, rounds: rounds, measure: measure)
            }
            if let geometry {
                for row in s.rows where rowName(row) != "bert" {
                    geometrySpeeds[rowName(row)] = try geometrySpeed(s, row: row, geometry: geometry, rounds: rounds, measure: measure)
                }
                if geometry == .bertBase { geometrySpeeds["bert-large"] = try largerSpeed(s, rounds: rounds, measure: measure) }
            }
        }
        return try write(s, cells: cells, speeds: speeds, geometry: args.flag("no-speed") ? nil : geometry.map { ($0, geometrySpeeds) })
    }

    static func setup(_ args: Arguments) throws -> Setup {
        let base = URL(fileURLWithPath: try args.required("base")).standardizedFileURL.path
        _ = try Checkpoint(dir: URL(fileURLWithPath: base))
        let geometryName = args["speed-geometry"] ?? Geometry.bertBase.rawValue
        let geometry = geometryName == "none" ? nil : try Geometry(rawValue: geometryName) ?? {
            throw ZooError.usage("unknown --speed-geometry '\(geometryName)'; known: \(Geometry.allCases.map(\.rawValue).joined(separator: ", ")), none")
        }()
        let tasks = try (args["tasks"] ?? "rte,mrpc,stsb,cola,sst2").split(separator: ",").map { try GLUETask.named(String($0)) }
        let seeds = try (args["seeds"] ?? "42").split(separator: ",").map { s -> UInt64 in
            guard let v = UInt64(s) else { throw ZooError.usage("--seeds takes comma-separated non-negative integers, got '\(s)'") }
            return v
        }
        let rows = try (args["variants"] ?? defaultRows).split(separator: ",").map { try chain(String($0)) }
        for (option, values) in [("tasks", tasks.map(\.name)), ("seeds", seeds.map(String.init)), ("variants", rows.map(rowName))] {
            if let twice = values.firstRepeated { throw ZooError.usage("--\(option) names \(twice) twice") }
        }
        let out = URL(fileURLWithPath: args["out"] ?? "runs/table").standardizedFileURL
        let glue = glueDirectory(args["data"]).standardizedFileURL
        var argv = ["--base", base, "--out", out.path, "--data", glue.path]
        let limit = try args.int("limit")
        if let limit { argv += ["--limit", "\(limit)"] }
        let finetuneEpochs = try args.int("finetune-epochs")
        if let e = finetuneEpochs { argv += ["--finetune-epochs", "\(e)"] }
        let threads = try args.int("threads")
        if let threads { argv += ["--threads", "\(threads)"] }
        Runtime.setThreads(threads)
        let baseSHA = try? Fetch.sha256(URL(fileURLWithPath: base).appendingPathComponent("model.safetensors"))
        return Setup(base: base, out: out, glue: glue, limit: limit, finetuneEpochs: finetuneEpochs, threads: threads, baseSHA: baseSHA,
                     tasks: tasks, seeds: seeds, rows: rows, argv: argv,
                     speedGeometry: geometry)
    }

    /// The methods of a row, after the implicit `bert` (the fine-tuned base).
    static func chain(_ row: String) throws -> [Method] {
        let names = row.split(separator: "+").map(String.init)
        let methods = try names.map { n -> Method in
            guard let m = registry.methods.first(where: { $0.name == n }) else {
                throw ZooError.usage("unknown method '\(n)' in row '\(row)'; known: \(registry.methods.map(\.name).joined(separator: ", "))")
            }
            return m
        }
        let dense = registry.methods.first { $0.name == "bert" }!
        return methods.first?.name == "bert" ? methods : [dense] + methods
    }

    static func rowName(_ row: [Method]) -> String { row.count == 1 ? "bert" : row.dropFirst().map(\.name).joined(separator: "+") }

    static func cellDir(_ s: Setup, task: GLUETask, seed: UInt64, row: [Method]) -> URL {
        s.out.appendingPathComponent("cells/\(task.name)/seed-\(seed)/\(row.map(\.name).joined(separator: "+"))")
    }

    /// A cell's steps in order: each one's directory and command, and the shared step it reads (made
    /// first, once per seed), if any.
    static func steps(_ s: Setup, task: GLUETask, seed: UInt64, row: [Method]) -> [(dir: URL, command: [String], shared: (dir: URL, command: [String])?)] {
        var source = s.base
        return row.indices.map { k in
            let m = row[k], dir = cellDir(s, task: task, seed: seed, row: Array(row[...k]))
            let shared = m.prepare.map { prepare in
                let sdir = s.out.appendingPathComponent("shared/seed-\(seed)/\(m.shared)")
                return (dir: sdir, command: prepare(s.base, seed, sdir.path, s.limit))
            }
            let command = m.make(Method.Input(source: source, task: task.name, seed: seed, out: dir.path, limit: s.limit, finetuneEpochs: s.finetuneEpochs, shared: shared?.dir.path))
            source = dir.path
            return (dir, command, shared)
        }
    }

    /// The record of a finished cell (its last step's step.json) when every step of it, shared ones
    /// included, is recorded with this table's command; else an error naming the step that is not.
    static func finished(_ s: Setup, task: GLUETask, seed: UInt64, row: [Method]) throws -> [String: Any] {
        var record: [String: Any] = [:]
        for step in steps(s, task: task, seed: seed, row: row) {
            for (dir, command) in [step.shared, (step.dir, step.command)].compactMap({ $0 }) {
                let url = dir.appendingPathComponent("step.json")
                guard let data = FileManager.default.contents(atPath: url.path), let r = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                    throw ZooError.failed("\(url.path): not made yet")
                }
                if let problem = recordProblem(r, command: command, s) { throw ZooError.failed("\(url.path): \(problem)") }
                record = r
            }
        }
        return record
    }

    /// Makes every step of a cell that is not made yet; returns the last step's record.
    static func make(_ s: Setup, task: GLUETask, seed: UInt64, row: [Method]) throws -> [String: Any] {
        let steps = steps(s, task: task, seed: seed, row: row)
        // Which steps will run: those not made, and those made whose weights a running step reads but
        // are not here (records copied from another machine without their weights).
        let fm = FileManager.default, n = row.count
        var runs = [Bool](repeating: false, count: n)
        for k in row.indices.reversed() {
            let dir = steps[k].dir
            runs[k] = !fm.fileExists(atPath: dir.appendingPathComponent("step.json").path)
                || k + 1 < n && runs[k + 1] && !fm.fileExists(atPath: dir.appendingPathComponent("model.safetensors").path)
        }
        var record: [String: Any] = [:]
        for (k, (dir, command, shared)) in steps.enumerated() {
            let m = row[k]
            if let shared {
                try step(shared.dir, command: shared.command, resumable: m.resumable, needsWeights: runs[k], s,
                         label: "\(m.name) (shared, seed \(seed))") { [:] }
            }
            record = try step(dir, command: command, resumable: m.resumable, needsWeights: k + 1 < n && runs[k + 1], s,
                              label: "\(task.name)/\(seed)/\(row[...k].map(\.name).joined(separator: "+"))") {
                let (model, _) = try loadModel(try registry.variant(m.variant), weights: dir.path)
                let tokenizer = try WordPieceTokenizer(vocabURL: dir.appendingPathComponent("vocab.txt"))
                let dev = try DevSet(task: task, glue: s.glue, tokenizer: tokenizer, maxLength: min(128, model.maxLength))
                let bytes = (try? FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent("model.safetensors").path)[.size] as? Int) ?? 0
                return ["task": task.name, "seed": seed, "row": rowName(Array(row[...k])), "variant": m.variant,
                        "dev": try dev.score(model).score, "parameters": model.parameterCount, "bytes": bytes]
            }
        }
        return record
    }

    /// One step: under an exclusive lock on DIR.lock, reuses DIR/step.json when its command is the
    /// same, else runs `zoo <command>` (output appended to DIR/step.log), then `measure`, and writes
    /// step.json with both. `needsWeights`: a later step reads this one's model, so a record whose
    /// directory holds no model (it came without its weights) is made again.
    @discardableResult
    static func step(_ dir: URL, command: [String], resumable: Bool, needsWeights: Bool, _ s: Setup, label: String,
                     measure: () throws -> [String: Any]) throws -> [String: Any] {
        let fm = FileManager.default
        try fm.createDirectory(at: dir.deletingLastPathComponent(), withIntermediateDirectories: true)
        let fd = try lockFile(dir.path + ".lock", wait: true)!
        defer { unlockFile(dir.path + ".lock", fd) }
        let done = dir.appendingPathComponent("step.json"), recorded = portable(command, s)
        if let data = fm.contents(atPath: done.path), let r = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            if let problem = recordProblem(r, command: command, s) {
                throw ZooError.failed("\(done.path): \(problem); delete \(dir.path) and the steps made from it (\(dir.lastPathComponent)+… beside it; for a shared step, the cells of its seed that read it) to redo them, or use another --out")
            }
            if !needsWeights || fm.fileExists(atPath: dir.appendingPathComponent("model.safetensors").path) {
                log("\(label): done")
                dropCheckpoints(dir)
                return r
            }
            log("\(label): recorded, but its weights are not in \(dir.path) and a later step needs them: made again")
            try fm.removeItem(at: dir)
        }
        // A resumable step resumes from its checkpoint (finetune's, or a distillation stage's one level
        // down); killed before its first one, it starts from the beginning in its folder.
        let started = fm.fileExists(atPath: dir.path)
        let resume = started && resumable && !checkpoints(in: dir).isEmpty
        var argv = command + (s.threads.map { ["--threads", "\($0)"] } ?? [])
        if resume { argv.append("--resume") }
        if started && !resumable { try fm.removeItem(at: dir) }
        log("\(label): zoo \(argv.joined(separator: " "))" + (!started ? "" : resume ? " (resuming)" : resumable ? " (no checkpoint yet: from the start)" : " (started over)"))
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        let logURL = dir.appendingPathComponent("step.log")
        if !fm.fileExists(atPath: logURL.path) { fm.createFile(atPath: logURL.path, contents: nil) }
        let out = try FileHandle(forWritingTo: logURL)
        out.seekToEndOfFile()
        let p = child(argv, s, holding: dir)
        p.standardOutput = out
        p.standardError = out
        let start = Date()
        // Ctrl-C is passed on to the child, which saves a checkpoint and exits; this process waits for
        // it instead of leaving at once (which would kill it, Runtime.dieWithParent).
        try Interrupt.graceful {
            try p.run()
            Interrupt.forward(to: p.processIdentifier)
            p.waitUntilExit()
            Interrupt.forward(to: nil)
        }
        try out.close()
        if Interrupt.requested { throw ZooError.interrupted("\(label): interrupted; run the same zoo table again to resume it (\(dir.path))") }
        guard p.terminationStatus == 0 else {
            let tail = (try? String(contentsOf: logURL, encoding: .utf8))?.split(separator: "\n").suffix(3).joined(separator: "\n") ?? ""
            throw ZooError.failed("\(label): `zoo \(argv.joined(separator: " "))` failed (exit \(p.terminationStatus)); \(logURL.path) ends:\n\(tail)")
        }
        var record = try measure()
        record["command"] = recorded
        record["seconds"] = Date().timeIntervalSince(start)
        record["cpu"] = Runtime.cpuName
        record["base"] = s.baseSHA
        try writeAtomically(try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys]), to: done)
        dropCheckpoints(dir)
        return record
    }

    /// The training checkpoints in a step's folder: finetune's, and a distillation stage's one level down.
    static func checkpoints(in dir: URL) -> [URL] {
        let fm = FileManager.default
        return ([dir] + ((try? fm.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)) ?? []))
            .map { $0.appendingPathComponent(Trainer.checkpointFile) }.filter { fm.fileExists(atPath: $0.path) }
    }

    /// A recorded step's checkpoints (weights and both Adam moments, three times the model) are never
    /// read again: removed once step.json is written (until then an interrupted step resumes from them).
    static func dropCheckpoints(_ dir: URL) {
        for c in checkpoints(in: dir) { try? FileManager.default.removeItem(at: c) }
    }

    /// Why a step's record is not this step's: another command (records made before $OUT/$BASE hold
    /// full paths), or another base (by its sha256; records made before it was recorded have none).
    static func recordProblem(_ r: [String: Any], command: [String], _ s: Setup) -> String? {
        guard [portable(command, s), command].contains(r["command"] as? [String] ?? []) else {
            return "made by another command (\((r["command"] as? [String])?.joined(separator: " ") ?? "?"))"
        }
        if let made = r["base"] as? String, let sha = s.baseSHA, made != sha {
            return "made from another base (its model.safetensors has sha256 \(made.prefix(12))…, --base \(s.base)'s \(sha.prefix(12))…)"
        }
        return nil
    }

    /// A step's command as step.json records it: paths under OUT as $OUT/…, the base as $BASE, so
    /// records copied to another machine or folder (without their weights) are still recognised.
    static func portable(_ command: [String], _ s: Setup) -> [String] {
        command.map { a in
            a == s.base ? "$BASE" : a.hasPrefix(s.out.path + "/") ? "$OUT" + a.dropFirst(s.out.path.count) : a
        }
    }

    /// `zoo argv` as a child that dies with this process (Runtime.dieWithParent) and reads the
    /// table's GLUE directory; `holding`: the step directory whose lock this process holds for it.
    static func child(_ argv: [String], _ s: Setup, holding dir: URL? = nil) -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        p.arguments = argv
        var env = ["ZOO_PARENT": "\(getpid())", "ZOO_GLUE_DIR": s.glue.path]
        if let dir { env["ZOO_LOCK_HELD"] = dir.standardizedFileURL.path }   // this step's lock (lockOutput)
        p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        return p
    }

    // MARK: speed

    /// The row's model of the first task and seed against the bert row's, side by side: b=1 and b=32
    /// at s=128, `rounds` interleaved rounds, medians; cached in OUT/speed/ROW.json for this CPU and thread count.
    static func speed(_ s: Setup, row: [Method], rounds: Int, measure: Bool) throws -> [String: Any]? {
        let url = s.out.appendingPathComponent("speed/\(rowName(row)).json")
        if let r = cachedSpeed(url, rounds: rounds) { return r }
        guard measure else { return nil }
        let (task, seed) = (s.tasks[0], s.seeds[0])
        let dense = cellDir(s, task: task, seed: seed, row: Array(row.prefix(1))), model = cellDir(s, task: task, seed: seed, row: row)
        let seq = min(128, try Checkpoint(dir: dense).spec.positions)   // 128 but for test models of fewer positions
        var r = try sideBySide(rowName(row), dense: ("bert", ["--weights", dense.path]), model: (row.last!.variant, ["--weights", model.path]),
                               seq: seq, rounds: rounds, s)
        (r["model"], r["dense"]) = (model.path, dense.path)
        try writeAtomically(try JSONSerialization.data(withJSONObject: r, options: [.prettyPrinted, .sortedKeys]), to: url)
        return r
    }

    /// The row's model at `geometry`: the spec each method of the chain gives at that scale (from
    /// what it made for the first task and seed), as random weights against the geometry's dense
    /// model, side by side like `speed`; cached in OUT/speed/GEOMETRY/ROW.json like it. The random
    /// checkpoint is written to OUT/geometry/GEOMETRY/ROW for the measurement and removed after it.
    static func geometrySpeed(_ s: Setup, row: [Method], geometry g: Geometry, rounds: Int, measure: Bool) throws -> [String: Any]? {
        let name = rowName(row), url = s.out.appendingPathComponent("speed/\(g.rawValue)/\(name).json")
        if let r = cachedSpeed(url, rounds: rounds) { return r }
        guard measure else { return nil }
        let (task, seed) = (s.tasks[0], s.seeds[0])
        var source = try Checkpoint(dir: URL(fileURLWithPath: s.base)).spec, target = g.spec
        for k in row.indices {
            guard let rescale = row[k].geometry else {
                log("speed \(name) at \(g.rawValue): \(row[k].name) has no model at another scale")
                return nil
            }
            let result = try Checkpoint(dir: cellDir(s, task: task, seed: seed, row: Array(row[...k]))).spec
            (source, target) = (result, rescale(result, source, target))
        }
        (target.head, target.numLabels) = (.none, 0)   // the encoder is what is timed
        let dir = s.out.appendingPathComponent("geometry/\(g.rawValue)/\(name)")
        try randomStore(target, seed: 1).writeCheckpoint(to: dir, base: try Checkpoint(dir: cellDir(s, task: task, seed: seed, row: Array(row.prefix(1)))))
        defer { try? FileManager.default.removeItem(at: dir) }
        var r = try sideBySide(name, dense: ("bert", ["--geometry", g.rawValue]), model: (row.last!.variant, ["--weights", dir.path]), rounds: rounds, s)
        r["geometry"] = g.rawValue
        r["parameters"] = target.parameterCount
        r["layers"] = target.layers.count
        r["heads"] = target.layers.map(\.heads)
        r["ffn"] = target.layers.map(\.ffn)
        try writeAtomically(try JSONSerialization.data(withJSONObject: r, options: [.prettyPrinted, .sortedKeys]), to: url)
        return r
    }

    /// The seed's speed-only BERT-large row: BERT-large's geometry against bert-base's, random weights.
    static func largerSpeed(_ s: Setup, rounds: Int, measure: Bool) throws -> [String: Any]? {
        let url = s.out.appendingPathComponent("speed/bert-base/bert-large.json")
        if let r = cachedSpeed(url, rounds: rounds) { return r }
        guard measure else { return nil }
        var r = try sideBySide("bert-large", dense: ("bert", ["--geometry", Geometry.bertBase.rawValue]),
                               model: ("bert", ["--geometry", Geometry.bertLarge.rawValue]), rounds: rounds, s)
        r["parameters"] = Geometry.bertLarge.spec.parameterCount
        try writeAtomically(try JSONSerialization.data(withJSONObject: r, options: [.prettyPrinted, .sortedKeys]), to: url)
        return r
    }

    static func cachedSpeed(_ url: URL, rounds: Int) -> [String: Any]? {
        guard let data = FileManager.default.contents(atPath: url.path), let r = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              r["cpu"] as? String == Runtime.cpuName, r["threads"] as? Int == Runtime.threads, r["rounds"] as? Int == rounds,
              r["warmup"] as? Int == benchWarmup else { return nil }
        return r
    }

    /// `dense` and `model` (a variant and its `zoo bench` weights arguments) alternately, `rounds`
    /// times at b=1 and b=32, s=`seq`: the medians and their ratio.
    static func sideBySide(_ name: String, dense: (String, [String]), model: (String, [String]), seq: Int = 128, rounds: Int, _ s: Setup) throws -> [String: Any] {
        var r: [String: Any] = ["cpu": Runtime.cpuName, "rounds": rounds, "threads": Runtime.threads, "seq": seq, "warmup": benchWarmup]
        for b in [1, 32] {
            var times: ([Double], [Double]) = ([], [])
            for _ in 0..<rounds {
                times.0.append(try benchMs(dense.0, dense.1, batch: b, seq: seq, s))
                times.1.append(try benchMs(model.0, model.1, batch: b, seq: seq, s))
            }
            let (d, m) = (median(times.0), median(times.1))
            log(String(format: "speed %@ b=%d: dense %.1f ms, %@ %.1f ms, %.2f×", name, b, d, name, m, d / m))
            r["b\(b)_dense_ms"] = d
            r["b\(b)_ms"] = m
            r["b\(b)_speedup"] = d / m
        }
        return r
    }

    /// Warm-up passes before each `zoo bench` run's timed ones (one: a bert-large pass at b=32 takes
    /// seconds, and the rounds are interleaved anyway).
    static let benchWarmup = 1

    /// The median latency of one `zoo bench` run (a child process, so every measurement starts alike);
    /// `weights`: its --weights DIR or --geometry NAME arguments.
    static func benchMs(_ variant: String, _ weights: [String], batch: Int, seq: Int = 128, _ s: Setup) throws -> Double {
        let pipe = Pipe()
        let p = child(["bench", variant] + weights + ["--batch", "\(batch)", "--seq", "\(seq)", "--warmup", "\(benchWarmup)", "--json"] + (s.threads.map { ["--threads", "\($0)"] } ?? []), s)
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0, let r = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let ms = r["median_ms"] as? Double else {
            throw ZooError.failed("zoo bench \(variant) \(weights.joined(separator: " ")) failed (exit \(p.terminationStatus))")
        }
        return ms
    }

    static func median(_ x: [Double]) -> Double {
        let s = x.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    // MARK: plan, output

    /// The recorded `seconds` of the made cells' steps summed by method (a shared step under its
    /// folder's name and "(shared)"), each step once however many cells read it.
    static func cost(_ s: Setup, cells: [String: [String: Any]]) -> [String: Double] {
        var seconds: [String: Double] = [:], counted = Set<String>()
        for task in s.tasks { for seed in s.seeds { for row in s.rows where cells["\(task.name)/\(seed)/\(rowName(row))"] != nil {
            for (m, step) in zip(row, steps(s, task: task, seed: seed, row: row)) {
                for (dir, name) in [step.shared.map { ($0.dir, m.shared + " (shared)") }, (step.dir, m.name)].compactMap({ $0 }) where counted.insert(dir.path).inserted {
                    let url = dir.appendingPathComponent("step.json")
                    if let r = (try? Data(contentsOf: url)).flatMap({ try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }), let t = r["seconds"] as? Double {
                        seconds[name, default: 0] += t
                    }
                }
            }
        } } }
        return seconds
    }

    /// The command a plan names for collecting its cells: `words`, this run's options and flags but --plan, and --collect.
    static func collectCommand(_ words: [String], _ args: Arguments, options: Set<String>, flags: Set<String>) -> [String] {
        words + args.forwarded(options: options, flags: flags.subtracting(["plan"])) + ["--collect"]
    }

    static func plan(_ s: Setup, collect: [String]) throws {
        let dir = s.out.appendingPathComponent("plan")
        let zoo = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        var lines: [String] = []
        for task in s.tasks { for seed in s.seeds { for row in s.rows {
            lines.append(([zoo, "table", "--cell", "\(task.name)/\(seed)/\(rowName(row))"] + s.argv).map(quoted).joined(separator: " "))
        } } }
        try writePlan(lines, to: dir, threads: s.threads, collect: collect.map(quoted).joined(separator: " "))
    }

    /// A shell word.
    static func quoted(_ a: String) -> String { "'" + a.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    /// OUT/plan/cells.txt (one command per line) and table.sbatch (a Slurm array over its lines).
    static func writePlan(_ lines: [String], to dir: URL, threads: Int?, collect: String) throws {
        let cells = dir.appendingPathComponent("cells.txt")
        try writeAtomically(Data((lines.joined(separator: "\n") + "\n").utf8), to: cells)
        let sbatch = """
        #!/bin/bash
        #SBATCH --job-name=zoo-table
        #SBATCH --array=1-\(lines.count)
        #SBATCH --cpus-per-task=\(threads ?? 2)
        #SBATCH --output=\(dir.path)/slurm-%A_%a.out
        # One zoo table cell per array task: line $SLURM_ARRAY_TASK_ID of cells.txt.
        eval "$(sed -n "${SLURM_ARRAY_TASK_ID}p" \(quoted(cells.path)))"

        """
        try writeAtomically(Data(sbatch.utf8), to: dir.appendingPathComponent("table.sbatch"))
        print("""
        \(lines.count) cells in \(cells.path)
          GNU parallel:  parallel -j N < \(cells.path)
          Slurm:         sbatch \(dir.appendingPathComponent("table.sbatch").path)
          then:          \(collect)
        """)
    }

    /// table.md (printed), table.csv and table.json: per row parameters, bytes, speed, the mean dev
    /// score per task over the seeds made, their mean and its % of the bert row's.
    @discardableResult
    static func write(_ s: Setup, cells: [String: [String: Any]], speeds: [String: [String: Any]?],
                      geometry: (Geometry, [String: [String: Any]])? = nil) throws -> [String: Double] {
        let names = s.rows.map(rowName)
        /// The dev scores of a row on a task, with the seeds they are of (those made).
        func made(_ row: String, _ task: GLUETask) -> [(seed: UInt64, dev: Double)] {
            s.seeds.compactMap { seed in (cells["\(task.name)/\(seed)/\(row)"]?["dev"] as? Double).map { (seed, $0) } }
        }
        func scores(_ row: String, _ task: GLUETask) -> [Double] { made(row, task).map(\.dev) }
        func mean(_ x: [Double]) -> Double? { x.isEmpty ? nil : x.reduce(0, +) / Double(x.count) }
        func rowMean(_ row: String) -> Double? {
            let m = s.tasks.map { mean(scores(row, $0)) }
            return m.contains(where: { $0 == nil }) ? nil : mean(m.compactMap { $0 })
        }
        /// The row's mean and bert's over the same (task, seed) pairs, for % of bert while seeds are missing.
        func withDense(_ row: String) -> (row: Double, dense: Double)? {
            var r: [Double] = [], d: [Double] = []
            for task in s.tasks {
                let dense = Dictionary(uniqueKeysWithValues: made("bert", task).map { ($0.seed, $0.dev) })
                let both = made(row, task).filter { dense[$0.seed] != nil }
                guard !both.isEmpty else { return nil }
                r.append(mean(both.map(\.dev))!)
                d.append(mean(both.map { dense[$0.seed]! })!)
            }
            return (mean(r)!, mean(d)!)
        }
        var json: [[String: Any]] = []
        var md = ["CPU: \(Runtime.cpuName); threads \(Runtime.threads); seeds \(s.seeds.map(String.init).joined(separator: ", ")); speed: vs bert at s=128 (s = the positions of a model with fewer), medians\n",
                  "| row | parameters | MB | b=1 speed | b=32 speed | " + s.tasks.map(\.glueName).joined(separator: " | ") + " | mean | % of bert |",
                  "|---|---:|---:|---:|---:|" + String(repeating: "---:|", count: s.tasks.count + 2)]
        var csv = ["row,parameters,bytes,b1_speedup,b32_speedup," + s.tasks.map(\.name).joined(separator: ",") + ",mean,percent_of_bert"]
        func f(_ x: Double?, _ format: String) -> String { x.map { String(format: format, $0) } ?? "—" }
        for row in names {
            let first = s.seeds.lazy.compactMap { seed in s.tasks.lazy.compactMap { cells["\($0.name)/\(seed)/\(row)"] }.first }.first
            let speed = row == "bert" ? ["b1_speedup": 1.0, "b32_speedup": 1.0] : speeds[row] ?? nil
            let perTask = s.tasks.map { mean(scores(row, $0)) }
            let m = rowMean(row), pct = withDense(row).map { 100 * $0.row / $0.dense }
            let params = first?["parameters"] as? Int, bytes = first?["bytes"] as? Int
            md.append("| \(row) | \(params.map(String.init) ?? "—") | \(f(bytes.map { Double($0) / 1_048_576 }, "%.1f")) | "
                      + "\(f(speed?["b1_speedup"] as? Double, "%.2f×")) | \(f(speed?["b32_speedup"] as? Double, "%.2f×")) | "
                      + perTask.map { f($0, "%.2f") }.joined(separator: " | ") + " | \(f(m, "%.2f")) | \(f(pct, "%.1f")) |")
            csv.append(([row, params.map(String.init) ?? "", bytes.map(String.init) ?? "", f(speed?["b1_speedup"] as? Double, "%.4f"),
                         f(speed?["b32_speedup"] as? Double, "%.4f")] + perTask.map { f($0, "%.4f") } + [f(m, "%.4f"), f(pct, "%.2f")])
                        .map { $0 == "—" ? "" : $0 }.joined(separator: ","))
            var r: [String: Any] = ["row": row, "scores": Dictionary(uniqueKeysWithValues: s.tasks.map { ($0.name, scores(row, $0)) }),
                                    "seeds": Dictionary(uniqueKeysWithValues: s.tasks.map { ($0.name, made(row, $0).map(\.seed)) })]
            (r["parameters"], r["bytes"], r["mean"], r["percent_of_bert"], r["speed"]) = (params, bytes, m, pct, speed)
            if let (g, speeds) = geometry {
                let unit: [String: Any] = ["b1_speedup": 1.0, "b32_speedup": 1.0]
                r["speed_" + g.rawValue] = row == "bert" ? unit : speeds[row]
            }
            json.append(r)
        }
        if let (g, speeds) = geometry {
            md += ["\nSpeed at the \(g.rawValue) geometry: random weights of the shape each row's methods give at that scale, against the "
                   + "dense \(g.rawValue) (s=128, medians; — where a method has no model at another scale)\n",
                   "| row | parameters | b=1 speed | b=32 speed |", "|---|---:|---:|---:|",
                   "| bert | \(g.spec.parameterCount) | 1.00× | 1.00× |"]
            for row in names.filter({ $0 != "bert" }) + (speeds["bert-large"] == nil ? [] : ["bert-large"]) {
                let r = speeds[row]
                md.append("| \(row == "bert-large" ? "bert-large (BERT-large geometry, speed only)" : row) | \((r?["parameters"] as? Int).map(String.init) ?? "—") | "
                          + "\(f(r?["b1_speedup"] as? Double, "%.2f×")) | \(f(r?["b32_speedup"] as? Double, "%.2f×")) |")
            }
        }
        // score against speed (b=32) and against parameters, rows with every task made
        let complete = json.compactMap { r -> (String, Double, Double, Double?)? in
            guard let m = r["mean"] as? Double, let p = r["parameters"] as? Int else { return nil }
            return (r["row"] as! String, m, Double(p) / 1e6, (r["speed"] as? [String: Any])?["b32_speedup"] as? Double)
        }
        let what = "mean GLUE dev over \(s.tasks.map(\.glueName).joined(separator: ", "))"
        for (name, plot) in [("score-speed.svg", ScatterPlot(title: "Score and speed (\(Runtime.cpuName))", xLabel: "speed vs bert at b=32, s=128 (×)",
                                                              yLabel: what, points: complete.compactMap { r in r.3.map { (r.0, $0, r.1) } }, largerXBetter: true)),
                             ("score-parameters.svg", ScatterPlot(title: "Score and size", xLabel: "parameters (millions)", yLabel: what,
                                                                  points: complete.map { ($0.0, $0.2, $0.1) }, largerXBetter: false))] where plot.points.count > 1 {
            try writeAtomically(Data(plot.svg().utf8), to: s.out.appendingPathComponent(name))
        }
        let missing = s.tasks.flatMap { t in s.seeds.flatMap { seed in names.filter { cells["\(t.name)/\(seed)/\($0)"] == nil }.map { "\(t.name)/\(seed)/\($0)" } } }
        if !missing.isEmpty { md.append("\nNot made yet (or made by another command or base): \(missing.joined(separator: ", "))") }
        let cost = cost(s, cells: cells)
        if let line = costLine(cost) { md.append("\n" + line) }
        try writeAtomically(Data((md.joined(separator: "\n") + "\n").utf8), to: s.out.appendingPathComponent("table.md"))
        try writeAtomically(Data((csv.joined(separator: "\n") + "\n").utf8), to: s.out.appendingPathComponent("table.csv"))
        var obj: [String: Any] = ["cpu": Runtime.cpuName, "tasks": s.tasks.map(\.name), "seeds": s.seeds, "rows": json, "missing": missing]
        if let (g, speeds) = geometry, let large = speeds["bert-large"] { obj["bert_large_vs_\(g.rawValue)"] = large }
        try writeAtomically(try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys]), to: s.out.appendingPathComponent("table.json"))
        print(md.joined(separator: "\n"))
        return cost
    }
}
