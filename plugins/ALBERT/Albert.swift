import CKernels
import Foundation
import ZooCore

/// ALBERT (Lan et al., 2020): a factorised embedding (V×E tables, then a projection E→H) and layers
/// that share one set of weights (or G groups). The `albert` variant runs HF ALBERT checkpoints;
/// `zoo albertize` makes one from a dense BERT the user already fine-tuned.
public let plugin = Plugin(
    variants: [
        Variant(name: "albert", summary: "ALBERT: factorised embedding + cross-layer sharing (HF ALBERT checkpoints, `zoo albertize` output; fp32)") { source in
            switch source {
            case .checkpoint(let ckpt):
                guard ckpt.spec.family == .albert else {
                    throw ZooError.badFile(path: ckpt.dir.path, problem: "model_type is \(ckpt.spec.family.rawValue), not albert; make an ALBERT with `zoo albertize`, or run it as bert")
                }
                return try Network<Linear>(checkpoint: ckpt)
            case .geometry(let g, let seed):
                return try Network<Linear>(packing: randomStore(Albertize.spec(g.spec, embedding: 128, groups: 1), seed: seed))
            }
        },
    ],
    commands: [AlbertizeCommand.self],
    methods: [
        Method(name: "albert", variant: "albert", summary: "factorised embedding E = 128, one shared layer, 2 epochs of recovery by distillation",
               geometry: { result, _, target in Albertize.spec(target, embedding: result.embedding, groups: result.groups.count) }) { i in
            ["albertize", "--weights", i.source, "--embedding-size", "128", "--share", "all", "--recover-epochs", "2", "--seed", "\(i.seed)", "--out", i.out]
                + (i.limit.map { ["--limit", "\($0)"] } ?? [])
        },
    ])

/// A dense BERT turned into an ALBERT: the weights of the new shape, initialised from the old.
public enum Albertize {
    /// The ALBERT description of a dense BERT: its layers, run in `groups` shared parameter groups
    /// (HF's assignment: layer i uses group ⌊i / (L / G)⌋), E-wide embeddings and a projection E→H.
    public static func spec(_ dense: ModelSpec, embedding: Int, groups: Int) -> ModelSpec {
        var s = dense
        s.family = .albert
        s.embedding = embedding
        let n = dense.layers.count
        s.layers = dense.layers.enumerated().map { i, l in
            var l = l
            l.group = Int(Double(i) / (Double(n) / Double(groups)))
            return l
        }
        return s
    }

    /// The top-`E` eigenvectors (E×H, row-major, largest first) of the sum of each table's mean outer
    /// product (and that of `tokens`, rows of real tokens' embedding sums), and the share of that
    /// matrix's trace they keep.
    static func basis(_ tables: [Param], rows: [Int], H: Int, E: Int, tokens: Tensor? = nil) throws -> ([Float], kept: Double) {
        var gram = [Float](repeating: 0, count: H * H)
        // Each table's mean outer product (every token adds one row of each table, so the 512 position
        // rows weigh as much as the 30k word rows), plus that of real tokens' embedding sums.
        var parts = zip(tables.map { UnsafePointer($0.value) }, rows).map { ($0, $1) }
        if let tokens { parts.append((UnsafePointer(tokens.data), tokens.shape[0])) }
        for (t, n) in parts {
            var g = [Float](repeating: 0, count: H * H)
            zk_sgemm_tn(Int32(H), Int32(H), Int32(n), t, Int32(H), t, Int32(H), 0, &g, Int32(H))
            for i in 0..<H * H { gram[i] += g[i] / Float(n) }
        }
        var a = gram.map(Double.init), w = [Double](repeating: 0, count: H)
        let info = zk_symmetric_eigen(Int32(H), &a, &w)
        guard info == 0 else { throw ZooError.failed("eigen-decomposition of the embedding Gram matrix failed (LAPACK info \(info))") }
        var u = [Float](repeating: 0, count: E * H)
        for e in 0..<E { for h in 0..<H { u[e * H + h] = Float(a[(H - 1 - e) * H + h]) } }
        return (u, w.suffix(E).reduce(0, +) / w.reduce(0, +))
    }

    /// The factorised embedding from the dense one. Each table T (n×H) becomes T·Uᵀ (n×E) for the
    /// basis U; BERT's LayerNorm over H moves behind the projection: LN_H(x) ≈ √(H/E)·Uᵀ·LN_E(x·Uᵀ)
    /// when x lies in the span of U and has zero mean over both widths, so the projection weight is
    /// √(H/E)·diag(γ)·Uᵀ, its bias β, and the new LayerNorm over E starts as the identity (γ = 1, β = 0).
    static func factorise(_ dense: ParameterStore, into albert: ParameterStore, sample: [Batch]) throws -> Double {
        let (d, a) = (dense.spec.family.names, albert.spec.family.names)
        let (H, E) = (dense.spec.hidden, albert.spec.embedding)
        var pairs = [(d.word, a.word, dense.spec.vocab), (d.position, a.position, dense.spec.positions)]
        if let t = d.tokenType, let ta = a.tokenType, dense.spec.types > 0 { pairs.append((t, ta, dense.spec.types)) }
        // The embedding sums (word + position + type) of the sample's real tokens.
        let n = sample.reduce(0) { $0 + $1.lengths.reduce(0) { $0 + Int($1) } }
        let tokens = Tensor(shape: [max(n, 1), H])
        let word = dense.view(d.word).value, pos = dense.view(d.position).value, type = d.tokenType.flatMap { dense.spec.types > 0 ? dense.view($0).value : nil }
        var row = 0
        for batch in sample {
            for b in 0..<batch.size {
                for i in 0..<Int(batch.lengths[b]) {
                    let k = b * batch.seqLen + i, x = tokens.data + row * H
                    for h in 0..<H {
                        x[h] = word[Int(batch.inputIds[k]) * H + h] + pos[i * H + h] + (type.map { $0[Int(batch.tokenTypeIds[k]) * H + h] } ?? 0)
                    }
                    row += 1
                }
            }
        }
        let (u, kept) = try basis(pairs.map { dense.view($0.0) }, rows: pairs.map(\.2), H: H, E: E, tokens: n > 0 ? tokens : nil)
        for (from, to, n) in pairs { zk_sgemm_nt(Int32(n), Int32(E), Int32(H), dense.view(from).value, Int32(H), u, Int32(H), 0, albert.view(to).value, Int32(E)) }
        let gamma = dense.view(d.embeddingNorm + ".weight").value, beta = dense.view(d.embeddingNorm + ".bias").value
        let w = albert.view(a.projection! + ".weight").value, scale = Float((Double(H) / Double(E)).squareRoot())
        for h in 0..<H { for e in 0..<E { w[h * E + e] = scale * gamma[h] * u[e * H + h] } }
        albert.view(a.projection! + ".bias").value.update(from: beta, count: H)
        albert.view(a.embeddingNorm + ".weight").value.update(repeating: 1, count: E)
        albert.view(a.embeddingNorm + ".bias").value.update(repeating: 0, count: E)
        return kept
    }

    /// A shared group's starting weights: the mean of its member layers, or one member layer.
    enum Candidate: CustomStringConvertible, Equatable {
        case mean, layer(Int)
        var description: String { if case .layer(let i) = self { return "layer \(i)" } else { return "mean" } }
        /// The dense layers averaged into the group.
        func layers(_ members: [Int]) -> [Int] { if case .layer(let i) = self { return [i] } else { return members } }
    }

    static func setGroup(_ g: Int, to c: Candidate, members: [Int], dense: ParameterStore, albert: ParameterStore) {
        let to = albert.spec.family.names.layer(g).tensors
        for (k, name) in to.enumerated() {
            let out = albert.view(name)
            let sources = c.layers(members).map { dense.view(dense.spec.family.names.layer($0).tensors[k]).value }
            let inv = 1 / Float(sources.count)
            for i in 0..<out.count { out.value[i] = sources.reduce(0) { $0 + $1[i] } * inv }
        }
    }

    /// Mean loss of the ALBERT store over labelled batches (no dropout).
    static func loss(_ store: ParameterStore, _ batches: [(Batch, Targets)]) throws -> Double {
        let net = try Network(spec: store.spec, reader: store)
        var total = 0.0
        for (batch, targets) in batches { total += Double(net.loss(try net.record(batch, dropoutSeed: nil), targets: targets)) }
        return total / Double(batches.count)
    }

    /// Builds the (trainable) ALBERT store: factorised embedding, head copied, each shared group set to the
    /// candidate (mean of its layers, or one of them) with the lowest training loss on `batches`,
    /// group by group (the others held at their current choice, all starting at the mean).
    public static func run(_ dense: ParameterStore, embedding: Int, groups: Int, batches: [(Batch, Targets)],
                           log: (String) -> Void) throws -> (ParameterStore, record: [String: Any]) {
        let albert = ParameterStore(spec: spec(dense.spec, embedding: embedding, groups: groups))
        let kept = try factorise(dense, into: albert, sample: batches.map(\.0))
        log(String(format: "embedding: %d×%d → %d×%d · %d×%d on the top eigenvectors, %.1f %% of the weighted squared norm kept", dense.spec.vocab, dense.spec.hidden,
                   dense.spec.vocab, embedding, embedding, dense.spec.hidden, 100 * kept))
        let (d, a) = (dense.spec.family.names, albert.spec.family.names)
        for (from, to) in [(d.pooler, a.pooler), (d.classifier, a.classifier)] where dense.spec.head != .none {
            for s in [".weight", ".bias"] { let v = dense.view(from + s); albert.view(to + s).value.update(from: v.value, count: v.count) }
        }
        let members = (0..<groups).map { g in albert.spec.layers.indices.filter { albert.spec.layers[$0].group == g } }
        var choice = members.map { _ in Candidate.mean }
        for g in 0..<groups { setGroup(g, to: .mean, members: members[g], dense: dense, albert: albert) }
        var tried: [[String: Any]] = []
        for g in 0..<groups {
            var best = (Double.infinity, Candidate.mean)
            for c in [Candidate.mean] + members[g].map({ .layer($0) }) {
                setGroup(g, to: c, members: members[g], dense: dense, albert: albert)
                let l = try loss(albert, batches)
                tried.append(["group": g, "candidate": c.description, "loss": l])
                log(String(format: "group %d (layers %@) from %@: training loss %.4f", g, members[g].map(String.init).joined(separator: ","), c.description, l))
                if l < best.0 { best = (l, c) }
            }
            choice[g] = best.1
            setGroup(g, to: best.1, members: members[g], dense: dense, albert: albert)
        }
        return (albert, ["embedding_norm_kept": kept, "candidates": tried, "chosen": choice.map(\.description)])
    }
}

public struct AlbertizeCommand: Command {
    public static let name = "albertize"
    public static let summary = "turn a fine-tuned BERT into an ALBERT (factorised embedding, shared layers), then recover"
    public static let help = """
    zoo albertize --weights FINETUNED --out DIR [--task T] [--embedding-size E] [--share all|groups:G]
                  [--recover-epochs N] [--lr X] [--batch B] [--limit N] [--alpha A] [--temperature T] [--no-distill]
                  [--general-epochs N] [--corpus FILE] [--candidate-examples N] [--data DIR] [--threads N] [--seed S]
      Factorises the embedding (V×H ≈ V×E · E×H, default E = 128) on one basis for the word, position
      and token-type tables: the top eigenvectors of their mean outer products plus that of real
      tokens' embedding sums (the candidate examples); BERT's LayerNorm moves behind the projection
      E→H. Then replaces the layers by one shared layer (--share all, default) or G shared groups
      (--share groups:G, HF's layer-to-group assignment). Each group starts from the candidate — the mean of its layers or one
      of them — with the lowest training loss over --candidate-examples examples (default 256); all
      candidates' losses are in albertize.json. --general-epochs N (default 0): first N epochs of
      distillation from the dense model on unlabelled sentences (--corpus FILE, one per line; default
      every sentence of the GLUE files in --data, as zoo distill's general stage; --limit caps it
      too): embedding output, hidden states and attention scores, layer to layer, so the shared
      layer learns what ALBERT's pre-training would teach it. Then recovers for --recover-epochs (default 3) at
      --lr (default 5e-5) on the task's training set against the dense model it came from, with the
      distillation engine's losses: embedding output, every layer's hidden states and attention
      scores (MSE, layer to layer), and (1 − A)·labels + A·T²·KL(dense ‖ ALBERT) on the predictions
      (regression: MSE to the dense model's prediction); A = 0.5, T = 2 by default; --no-distill: the
      labels only; --limit N: on the first N training examples. DIR gets an HF ALBERT checkpoint
      (AlbertForSequenceClassification loads it) and albertize.json (parameters, dev scores before
      and after recovery). Run it with `zoo eval albert --weights DIR`.
    """
    public static let options: Set<String> = ["weights", "task", "embedding-size", "share", "recover-epochs", "lr", "batch",
                                              "candidate-examples", "out", "data", "threads", "seed", "alpha", "temperature", "limit",
                                              "general-epochs", "corpus"]
    public static let flags: Set<String> = ["no-distill"]

    public static func run(_ args: Arguments) throws {
        guard args.positional.isEmpty else { throw ZooError.usage("unexpected argument '\(args.positional[0])'") }
        Runtime.setThreads(try args.int("threads"))
        let out = URL(fileURLWithPath: try args.required("out"))
        try lockOutput(out)
        let ckpt = try Checkpoint(dir: URL(fileURLWithPath: try args.required("weights")))
        let dense = ckpt.spec
        guard dense.family == .bert, !dense.projection, Set(dense.layers.map(\.group)).count == dense.layers.count else {
            throw ZooError.badFile(path: ckpt.dir.path, problem: "albertize takes a dense BERT (model_type bert, no shared layers), got \(dense.family.rawValue)")
        }
        let shapes = dense.layers.map { l -> ModelSpec.Layer in var l = l; l.group = 0; return l }
        guard shapes.allSatisfy({ $0 == shapes[0] }) else {
            throw ZooError.badFile(path: ckpt.dir.path, problem: "layers of different shapes (pruned?) cannot share weights; albertize a model before pruning it")
        }
        guard dense.head != .none else { throw ZooError.badFile(path: ckpt.dir.path, problem: "no classifier head; albertize a model fine-tuned with `zoo finetune`") }
        let E = try args.int("embedding-size", default: min(128, dense.hidden - 1), range: 1...(dense.hidden - 1))!
        let groups: Int
        switch args["share"] ?? "all" {
        case "all": groups = 1
        case let s where s.hasPrefix("groups:"):
            guard let g = Int(s.dropFirst(7)), g >= 1, g <= dense.layers.count, dense.layers.count % g == 0 else {
                throw ZooError.usage("--share groups:G needs G dividing the \(dense.layers.count) layers, got '\(s)'")
            }
            groups = g
        case let s: throw ZooError.usage("--share takes all or groups:G, got '\(s)'")
        }
        let task = try ckpt.task(args["task"])
        var recipe = TrainOptions()
        recipe.epochs = try args.int("recover-epochs", default: 3, range: 0...100)!
        recipe.lr = try args.float("lr", default: 5e-5, range: 0...1)
        recipe.batch = try args.int("batch", default: recipe.batch)!
        recipe.saveEvery = 0
        recipe.limit = try args.int("limit")
        if let s = args["seed"] { guard let v = UInt64(s) else { throw ZooError.usage("--seed takes a non-negative integer, got '\(s)'") }; recipe.seed = v }
        let glue = glueDirectory(args["data"])
        let tokenizer = try ckpt.tokenizer()
        let maxLength = min(128, dense.positions)
        let generalEpochs = try args.int("general-epochs", default: 0, range: 0...100)!
        if generalEpochs == 0, args["corpus"] != nil { throw ZooError.usage("--corpus is read by the general stage: give --general-epochs N") }
        let corpus = try args["corpus"].map { try Corpus.load(URL(fileURLWithPath: $0)) }
        let examples = Array(try task.load(.train, from: glue).prefix(try args.int("candidate-examples", default: 256)!))
        let batches = task.batches(examples, tokenizer: tokenizer, maxLength: maxLength)
        let dev = try DevSet(task: task, glue: glue, tokenizer: tokenizer, maxLength: maxLength)
        func devScore(_ s: ParameterStore) throws -> Double { try dev.score(s).score }
        let store = ParameterStore(spec: dense, trainable: false)
        try store.load(ckpt, seed: 0)
        log("albertizing \(ckpt.dir.path) (\(task.glueName)): embedding \(E), \(groups == 1 ? "all layers shared" : "\(groups) groups")")
        var (albert, record) = try Albertize.run(store, embedding: E, groups: groups, batches: batches, log: log)
        let before = try devScore(albert)
        log(String(format: "%@ dev before recovery %.2f", task.glueName, before))
        if generalEpochs > 0 {
            let all = corpus ?? Corpus.glue(glue), sentences = recipe.limit.map { Array(all.prefix($0)) } ?? all
            log("general stage: \(sentences.count) of \(all.count) sentences (\(args["corpus"] ?? "every distinct GLUE sentence in \(glue.path)"))")
            var o = DistillObjective()
            (o.embedding, o.hidden, o.attention) = (1, 1, 1)
            var options = recipe
            options.epochs = generalEpochs
            let work = out.appendingPathComponent(".general")
            let trainer = try Trainer(try DistillStep(teacher: store, student: albert, objective: o,
                                                      examples: sentences.map { tokenizer.encode($0, nil, maxLength: maxLength) }, targets: nil, seed: recipe.seed),
                                      options: options, out: work)
            let progress = Progress("general")
            try trainer.run(log: { log("general " + $0) }, progress: { progress.update($0, $1) })
            try? FileManager.default.removeItem(at: work)
            (record["general_epochs"], record["general_loss_terms"], record["dev_after_general"]) = (generalEpochs, trainer.record["loss_terms"], try devScore(albert))
            log(String(format: "%@ dev after the general stage %.2f", task.glueName, record["dev_after_general"] as! Double))
        }
        if recipe.epochs > 0 {
            // Recovery against the dense model: the distillation engine's intermediate and prediction
            // losses (same width and heads, so no projections), or the labels alone.
            var o = DistillObjective()
            if args.flag("no-distill") {
                o.hard = 1
            } else {
                let alpha = try args.float("alpha", default: 0.5, range: 0...1)
                (o.embedding, o.hidden, o.attention) = (1, 1, 1)
                (o.softCE, o.hard, o.temperature) = (alpha, 1 - alpha, try args.float("temperature", default: 2, range: 0.01...100))
            }
            let r = try DistillStep.recover(albert, from: store, objective: o, dev: dev, glue: glue, tokenizer: tokenizer, maxLength: maxLength,
                                            options: recipe, work: out.appendingPathComponent(".recovery"))
            (record["recovery_epochs"], record["recovery_loss_terms"]) = (r["epochs"], r["loss_terms"])
        }
        try albert.writeCheckpoint(to: out, base: ckpt)
        record.merge(["base": ckpt.dir.path, "task": task.name, "embedding_size": E, "groups": groups, "recover_epochs": recipe.epochs, "recover_limit": recipe.limit ?? 0,
                      "recovery": args.flag("no-distill") ? "hard labels" : "distillation from the dense model: embedding, hidden states, attention scores, soft predictions + labels",
                      "parameters_before": dense.parameterCount, "parameters_after": albert.spec.parameterCount,
                      "dev_before_recovery": before, "dev": try devScore(albert)]) { _, b in b }
        try writeAtomically(try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys]), to: out.appendingPathComponent("albertize.json"))
        print(String(format: "%@: ALBERT, embedding %d, %d shared group(s), %d parameters (%d before, %.1f×fewer); %@ dev %.2f before recovery, %.2f after",
                     out.path, E, groups, albert.spec.parameterCount, dense.parameterCount, Double(dense.parameterCount) / Double(albert.spec.parameterCount),
                     task.glueName, before, record["dev"] as! Double))
    }
}
