import Foundation
import ZooCore

/// Structural pruning: attention heads (and FFN neurons) scored by the gradient of a mask on their
/// output (Michel et al., 2019) and physically removed, so the pruned model is smaller and faster.
public let plugin = Plugin(
    variants: [
        Variant(name: "pruned", summary: "BERT with attention heads / FFN neurons removed by `zoo prune` (HF pruned_heads; fp32)") { source in
            switch source {
            case .checkpoint(let ckpt):
                guard ckpt.spec.layers.contains(where: { !$0.prunedHeads.isEmpty || $0.prunedNeurons > 0 }) else {
                    throw ZooError.badFile(path: ckpt.dir.path, problem: "not a pruned checkpoint (no pruned_heads, no FFN neurons removed); make one with `zoo prune`, or evaluate it as bert")
                }
                return try Network<Linear>(checkpoint: ckpt)
            case .geometry:
                throw ZooError.usage("pruned has no geometry of its own: bench a pruned checkpoint with --weights")
            }
        },
    ],
    commands: [PruneCommand.self],
    methods: [
        Method(name: "heads40", variant: "pruned", summary: "40 % of the heads removed, 2 recovery epochs", geometry: { r, _, t in Pruner.spec(like: r, on: t) }) { i in
            ["prune", "--weights", i.source, "--keep-heads", "0.6", "--recover-epochs", "2", "--seed", "\(i.seed)", "--out", i.out] + (i.limit.map { ["--limit", "\($0)"] } ?? [])
        },
        Method(name: "heads50-ffn60", variant: "pruned", summary: "50 % of the heads and 60 % of the FFN neurons removed, 3 epochs of recovery distilled from the unpruned model on the training set + 1 augmented copy",
               geometry: { r, _, t in Pruner.spec(like: r, on: t) }) { i in
            ["prune", "--weights", i.source, "--keep-heads", "0.5", "--keep-ffn", "0.4", "--recover-epochs", "3", "--distill", "--augment", "1", "--seed", "\(i.seed)", "--out", i.out] + (i.limit.map { ["--limit", "\($0)"] } ?? [])
        },
    ])

/// The pruning schedule (`zoo prune`).
public struct Pruner {
    /// `target` pruned to `pattern`'s per-layer fractions of heads and FFN neurons: layer l of the
    /// target follows the pattern's layer l·L/L', keeping its first heads and neurons (at least one).
    public static func spec(like pattern: ModelSpec, on target: ModelSpec) -> ModelSpec {
        var s = target
        let layers = pattern.layers
        func kept(_ n: Int, _ fraction: Double) -> Int { max(1, Int((Double(n) * fraction).rounded())) }
        s.layers = target.layers.indices.map { l in
            let p = layers[l * layers.count / target.layers.count]
            var layer = target.layers[l]
            let heads = kept(layer.heads, Double(p.heads) / Double(p.heads + p.prunedHeads.count))
            let ffn = kept(layer.ffn, Double(p.ffn) / Double(p.ffn + p.prunedNeurons))
            (layer.prunedHeads, layer.prunedNeurons) = (Array(heads..<layer.heads), layer.ffn - ffn)
            (layer.heads, layer.ffn) = (heads, ffn)
            return layer
        }
        return s
    }

    public struct Options {
        public var keepHeads = 1.0           // fraction of the checkpoint's heads to keep
        public var keepNeurons = 1.0         // fraction of its FFN neurons to keep
        public var steps: Int? = nil         // default: about 10 % of the heads (neurons) per step
        public var importanceExamples = 512  // training examples the mask gradients are summed over
        public init() {}
    }

    /// What one step removed, for prune.json.
    public struct Step: Codable {
        public var heads: [[Int]]             // per layer, the heads left (original indices)
        public var ffn: [Int]                 // per layer, FFN width left
        public var removedHeads: Int, removedNeurons: Int
    }

    /// Mask-gradient importance over `batches`, normalised by its L2 norm within each layer.
    static func importance(_ store: ParameterStore, _ batches: [(Batch, Targets)]) throws -> (heads: [[Double]], neurons: [[Double]]) {
        let net = try Network(spec: store.spec, reader: store)
        let masks = MaskGradients(store.spec)
        for (batch, targets) in batches {
            let act = try net.record(batch, dropoutSeed: nil)
            _ = net.loss(act, targets: targets)
            net.backward(act, batch: batch, masks: masks)
        }
        store.zeroGrad()
        func normalised(_ x: [[Double]]) -> [[Double]] {
            x.map { row in let n = row.map { $0 * $0 }.reduce(0, +).squareRoot() + 1e-20; return row.map { $0 / n } }
        }
        return (normalised(masks.heads), normalised(masks.neurons))
    }

    /// The `count` lowest-scoring units over all layers, never the last one of a layer; returns
    /// the indices each layer keeps.
    static func keep(_ scores: [[Double]], removing count: Int) -> [[Int]] {
        var removed = scores.map { _ in Set<Int>() }
        let ranked = scores.enumerated().flatMap { l, row in row.enumerated().map { (l, $0.offset, $0.element) } }.sorted { $0.2 < $1.2 }
        var left = count
        for (l, i, _) in ranked where left > 0 && removed[l].count + 1 < scores[l].count {
            removed[l].insert(i)
            left -= 1
        }
        return scores.enumerated().map { l, row in row.indices.filter { !removed[l].contains($0) } }
    }

    /// Prunes iteratively: each step recomputes importance on the pruned model and removes its share
    /// of heads and neurons. `after` (optional) sees each step's model (step index, whether it is the
    /// last) and returns the model the next step starts from: a recovery fine-tune, a saved curve point.
    public static func run(_ store: ParameterStore, batches: [(Batch, Targets)], options o: Options, log: (String) -> Void,
                           after: ((ParameterStore, Int, Bool) throws -> ParameterStore)? = nil) throws -> (ParameterStore, [Step]) {
        let heads0 = store.spec.layers.map(\.heads).reduce(0, +), neurons0 = store.spec.layers.map(\.ffn).reduce(0, +)
        let removeHeads = heads0 - Int((o.keepHeads * Double(heads0)).rounded()), removeNeurons = neurons0 - Int((o.keepNeurons * Double(neurons0)).rounded())
        let fraction = max(Double(removeHeads) / Double(heads0), Double(removeNeurons) / Double(neurons0))
        let steps = max(1, o.steps ?? Int((fraction / 0.1).rounded(.up)))
        var current = store, done: [Step] = []
        for step in 0..<steps where removeHeads + removeNeurons > 0 {
            let (h, n) = try importance(current, batches)
            // Each step removes its share of what is still to go.
            let doneHeads = heads0 - current.spec.layers.map(\.heads).reduce(0, +), doneNeurons = neurons0 - current.spec.layers.map(\.ffn).reduce(0, +)
            let k = (removeHeads - doneHeads + steps - step - 1) / (steps - step), m = (removeNeurons - doneNeurons + steps - step - 1) / (steps - step)
            current = try Surgery.prune(current, keepHeads: keep(h, removing: k), keepNeurons: keep(n, removing: m))
            let s: ModelSpec = current.spec
            done.append(Step(heads: s.layers.map { l in (0..<(l.heads + l.prunedHeads.count)).filter { !l.prunedHeads.contains($0) } },
                             ffn: s.layers.map(\.ffn), removedHeads: k, removedNeurons: m))
            log("step \(step + 1)/\(steps): removed \(k) heads, \(m) FFN neurons; heads per layer \(s.layers.map(\.heads)), FFN widths \(s.layers.map(\.ffn)), \(s.parameterCount) parameters")
            if let after { current = try after(current, step, step + 1 == steps) }
        }
        return (current, done)
    }
}

public struct PruneCommand: Command {
    public static let name = "prune"
    public static let summary = "remove attention heads (and FFN neurons) by mask-gradient importance, then recover"
    public static let help = """
    zoo prune --weights FINETUNED --keep-heads F --out DIR [--task T] [--keep-ffn F] [--steps N]
              [--recover-epochs E] [--recover-every-step] [--distill [--augment N]] [--lr X]
              [--limit N] [--importance-examples N] [--data DIR] [--threads N] [--seed S]
    zoo prune --weights FINETUNED --curve --out DIR [--keep-heads 0.1] [--steps 9] [--recover-epochs 0] …
    zoo prune --like PRUNED --geometry bert-base|bert-large|minilm-l6|tinybert-4l --out DIR
      Scores every attention head (and, with --keep-ffn, every FFN neuron) by |∂L/∂ξ| of a mask on its
      output over --importance-examples training examples of the task (default 512; Michel et al.
      2019), normalised within each layer, and removes the lowest, about 10 % of them per step (--steps
      N sets the number of steps), recomputing the scores on the pruned model each step; a layer keeps
      at least one head. Heads and neurons are removed from the weights (smaller Q/K/V/output and FFN
      matrices), not masked. Then fine-tunes the pruned model for E epochs (--recover-epochs, default 1;
      0 = none; --recover-every-step also after each step) at --lr (default 2e-5), on the first N
      training examples with --limit N (default: all). --distill: the recovery learns from the
      unpruned model instead of the labels alone (the distillation engine: every layer's hidden
      states by MSE, soft predictions at T = 2 with weight 0.5, labels 0.5). --augment N (with
      --distill): the recovery set gets N augmented copies of each example (TinyBERT's augmentation,
      as `zoo distill --augment`) and learns the unpruned model's predictions only (weight 1, no
      labels: an augmented copy's label is not known).
      --task defaults to the task the checkpoint was fine-tuned on (metrics.json of zoo finetune).
      DIR gets an HF checkpoint: heads only, `pruned_heads` in config.json (transformers loads it);
      with FFN neurons removed, the per-layer widths go into `zoo_intermediate_sizes` (the zoo's own
      field: transformers' BERT has one intermediate size). prune.json records every step and the
      dev score.
      --curve: the accuracy curve. Removes heads in --steps steps (default 9) down to --keep-heads
      (default 0.1), without recovery unless --recover-epochs is given (then after every step), and
      writes each step's model to DIR/step-N with its dev score; DIR/curve.json and the printed table
      list them, step 0 being the unpruned model. bench/prune_curve.py adds measured speed.
      --like: random weights of a --geometry, pruned to the same per-layer fractions of heads and FFN
      neurons as PRUNED (layer l of the geometry follows layer l·L/L' of PRUNED), for speed
      measurements of a pruning pattern on another model size (`zoo bench pruned --weights DIR`).
    """
    public static let options: Set<String> = ["weights", "task", "keep-heads", "keep-ffn", "steps", "recover-epochs", "lr",
                                              "importance-examples", "out", "data", "threads", "seed", "like", "geometry", "limit", "augment"]
    public static let flags: Set<String> = ["recover-every-step", "curve", "distill"]

    public static func run(_ args: Arguments) throws {
        guard args.positional.isEmpty else { throw ZooError.usage("unexpected argument '\(args.positional[0])'") }
        Runtime.setThreads(try args.int("threads"))
        let out = URL(fileURLWithPath: try args.required("out"))
        try lockOutput(out)
        if let like = args["like"] { return try prunedLike(like, geometry: try args.required("geometry"), out: out) }
        let curve = args.flag("curve")
        var o = Pruner.Options()
        o.keepHeads = Double(try args.float("keep-heads", default: curve ? 0.1 : 1, range: 0...1))
        o.keepNeurons = Double(try args.float("keep-ffn", default: 1, range: 0...1))
        guard o.keepHeads < 1 || o.keepNeurons < 1 else { throw ZooError.usage("nothing to prune: give --keep-heads and/or --keep-ffn below 1") }
        o.steps = try args.int("steps", default: curve ? 9 : nil)
        o.importanceExamples = try args.int("importance-examples", default: o.importanceExamples)!
        let recoverEpochs = try args.int("recover-epochs", default: curve ? 0 : 1, range: 0...100)!
        let augment = try args.int("augment", default: 0, range: 0...100)!
        guard augment == 0 || args.flag("distill") else { throw ZooError.usage("--augment needs --distill (augmented copies are learnt from the unpruned model's predictions)") }
        var recipe = TrainOptions()
        recipe.epochs = recoverEpochs
        recipe.lr = try args.float("lr", default: 2e-5, range: 0...1)
        recipe.saveEvery = 0
        recipe.limit = try args.int("limit")
        if let s = args["seed"] { guard let v = UInt64(s) else { throw ZooError.usage("--seed takes a non-negative integer, got '\(s)'") }; recipe.seed = v }
        let ckpt = try Checkpoint(dir: URL(fileURLWithPath: try args.required("weights")))
        guard ckpt.spec.head != .none else { throw ZooError.badFile(path: ckpt.dir.path, problem: "no classifier head; prune a model fine-tuned with `zoo finetune`") }
        let task = try ckpt.task(args["task"])
        let glue = glueDirectory(args["data"])
        let tokenizer = try ckpt.tokenizer()
        let maxLength = min(128, ckpt.spec.positions)
        let examples = Array(try task.load(.train, from: glue).prefix(o.importanceExamples))
        let batches = task.batches(examples, tokenizer: tokenizer, maxLength: maxLength)
        let dev = try DevSet(task: task, glue: glue, tokenizer: tokenizer, maxLength: maxLength)
        func devScore(_ s: ParameterStore) throws -> Double { try dev.score(s).score }
        let store = ParameterStore(spec: ckpt.spec)
        try store.load(ckpt, seed: 0)
        log("pruning \(ckpt.dir.path) on \(task.glueName): importance over \(examples.count) training examples, keep \(o.keepHeads) of the heads, \(o.keepNeurons) of the FFN neurons")

        let work = out.appendingPathComponent(".steps")
        // Recovery: against the unpruned model (--distill, in place), or the pruned model written as a
        // checkpoint and fine-tuned by the core trainer.
        let teacher = args.flag("distill") ? ParameterStore(spec: ckpt.spec, trainable: false) : nil
        try teacher?.load(ckpt, seed: 0)
        func recover(_ s: ParameterStore, into dir: URL) throws -> ParameterStore {
            if let teacher {
                var o = DistillObjective()
                (o.hidden, o.softCE, o.hard, o.temperature) = augment > 0 ? (1, 1, 0, 2) : (1, 0.5, 0.5, 2)
                _ = try DistillStep.recover(s, from: teacher, objective: o, dev: dev, glue: glue, tokenizer: tokenizer, maxLength: maxLength,
                                            options: recipe, augment: augment, work: work.appendingPathComponent("recovery"))
                try s.writeCheckpoint(to: dir, base: ckpt)
                return s
            }
            let stepDir = work.appendingPathComponent("pruned")
            try s.writeCheckpoint(to: stepDir, base: ckpt)
            let tuner = try Finetuner(base: try Checkpoint(dir: stepDir), task: task, glue: glue, options: recipe, out: dir)
            try tuner.run(log: { log("recovery " + $0) })
            let r = ParameterStore(spec: tuner.work.network.spec)
            try r.load(try Checkpoint(dir: dir), seed: 0)
            return r
        }
        func summary(_ s: ModelSpec) -> [String: Any] {
            ["heads": s.layers.map(\.heads), "ffn": s.layers.map(\.ffn), "parameters": s.parameterCount]
        }
        let heads0 = ckpt.spec.layers.map(\.heads).reduce(0, +)
        var points: [[String: Any]] = []
        if curve {
            let score = try devScore(store)
            points.append(summary(ckpt.spec).merging(["step": 0, "removed_heads": 0, "dir": ckpt.dir.path, "dev": score]) { a, _ in a })
            log("step 0: \(task.glueName) dev \(String(format: "%.2f", score))")
        }
        let (pruned, steps) = try Pruner.run(store, batches: batches, options: o, log: log) { s, step, last in
            if curve {
                let dir = out.appendingPathComponent("step-\(step + 1)")
                let r = recoverEpochs > 0 ? try recover(s, into: dir) : s
                if recoverEpochs == 0 { try s.writeCheckpoint(to: dir, base: ckpt) }
                let score = try devScore(r)
                let removed = heads0 - r.spec.layers.map(\.heads).reduce(0, +)
                points.append(summary(r.spec).merging(["step": step + 1, "removed_heads": removed, "dir": dir.path, "dev": score]) { a, _ in a })
                log("step \(step + 1): \(removed) of \(heads0) heads removed, \(task.glueName) dev \(String(format: "%.2f", score))")
                return r
            }
            return !last && recoverEpochs > 0 && args.flag("recover-every-step") ? try recover(s, into: work.appendingPathComponent("step-\(step + 1)")) : s
        }
        var record: [String: Any] = ["base": ckpt.dir.path, "task": task.name, "keep_heads": o.keepHeads, "keep_ffn": o.keepNeurons,
                                     "importance_examples": examples.count, "recover_epochs": recoverEpochs, "recover_limit": recipe.limit ?? 0,
                                     "recovery": augment > 0 ? "distillation from the unpruned model on the training set + \(augment) augmented copies: hidden states, soft predictions"
                                        : args.flag("distill") ? "distillation from the unpruned model: hidden states, soft predictions + labels" : "labels",
                                     "parameters_before": ckpt.spec.parameterCount, "parameters_after": pruned.spec.parameterCount,
                                     "steps": try JSONSerialization.jsonObject(with: JSONEncoder().encode(steps))]
        if curve {
            record["points"] = points
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            try writeAtomically(try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys]), to: out.appendingPathComponent("curve.json"))
            print("| step | heads removed | parameters | \(task.glueName) dev |\n|---:|---:|---:|---:|")
            for p in points {
                print("| \(p["step"]!) | \(p["removed_heads"]!) of \(heads0) | \(p["parameters"]!) | \(String(format: "%.2f", p["dev"] as! Double)) |")
            }
            try? FileManager.default.removeItem(at: work)
            return
        }
        let final = recoverEpochs > 0 ? try recover(pruned, into: out) : pruned
        if recoverEpochs == 0 { try pruned.writeCheckpoint(to: out, base: ckpt) }
        try? FileManager.default.removeItem(at: work)
        record["dev"] = try devScore(final)
        try writeAtomically(try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys]), to: out.appendingPathComponent("prune.json"))
        let heads = pruned.spec.layers.map(\.heads)
        print("\(out.path): heads per layer \(heads) (\(heads.reduce(0, +)) of \(heads0)), FFN widths \(pruned.spec.layers.map(\.ffn)), \(pruned.spec.parameterCount) parameters (\(ckpt.spec.parameterCount) before), \(task.glueName) dev \(String(format: "%.2f", record["dev"] as! Double))")
    }

    /// `--like`: random weights of `geometry` with `like`'s per-layer fractions of heads and neurons.
    static func prunedLike(_ like: String, geometry name: String, out: URL) throws {
        guard let g = Geometry(rawValue: name) else {
            throw ZooError.usage("unknown geometry '\(name)'; known: \(Geometry.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let pattern = try Checkpoint(dir: URL(fileURLWithPath: like))
        let pruned = randomStore(Pruner.spec(like: pattern.spec, on: g.spec), seed: 1)
        try pruned.writeCheckpoint(to: out, base: pattern)
        print("\(out.path): \(name) with heads per layer \(pruned.spec.layers.map(\.heads)), FFN widths \(pruned.spec.layers.map(\.ffn)) (random weights, for speed)")
    }
}
