import Foundation
import ZooCore

/// Knowledge distillation (the seed's KD table) as recipes on the core `DistillStep`: a fine-tuned
/// teacher, a student of another shape, losses at the places each method distils.
public let plugin = Plugin(
    variants: [Variant(name: Recipe.bilstmSoft.rawValue, summary: Recipe.bilstmSoft.summary) { try BiLSTM(directory: $0) }]
        + Recipe.allCases.filter { $0 != .bilstmSoft }.map { recipe in
        Variant(name: recipe.rawValue, summary: recipe.summary) { source in
            switch source {
            case .checkpoint(let ckpt):
                guard ckpt.spec.family == recipe.family else {
                    throw ZooError.badFile(path: ckpt.dir.path, problem: "model_type is \(ckpt.spec.family.rawValue); a \(recipe.rawValue) student is \(recipe.family.rawValue) (make one with `zoo distill --recipe \(recipe.rawValue)`)")
                }
                return try Network<Linear>(checkpoint: ckpt)
            case .geometry(let g, let seed):
                guard recipe == .tinybert, g == .tinybert4l else { throw ZooError.usage("\(recipe.rawValue) has no geometry of its own; tinybert has tinybert-4l") }
                return try Network<Linear>(packing: randomStore(g.spec, seed: seed))
            }
        }
    },
    commands: [DistillCommand.self],
    methods: Recipe.allCases.map { distillMethod($0) } + [distillMethod(.tinybert, cut: true)]
        // the seed's KD-stage experiment: TinyBERT (random start or cut) with one place of distillation switched off
        + [false, true].flatMap { cut in Recipe.parts.map { distillMethod(.tinybert, without: $0, cut: cut) } })

/// A `zoo table` row of a recipe (the settings the distillation table ran with). TinyBERT's
/// general student is its shared step; ablations that leave the general stage as it is share
/// TinyBERT's. `cut`: TinyBERT with its student cut out of the teacher (`--student-init teacher`:
/// out of the pre-trained base for its general stage, out of the fine-tuned teacher without one),
/// with a general student of its own.
func distillMethod(_ recipe: Recipe, without part: String? = nil, cut: Bool = false) -> Method {
    let changesGeneral = ["embedding", "attention", "hidden"].contains(part ?? "")
    let general: ((String, UInt64, String, Int?) -> [String])? = recipe != .tinybert || part == "general" ? nil : { base, seed, out, limit in
        ["distill", "--teacher", base, "--recipe", "tinybert", "--general-only", "--seed", "\(seed)", "--out", out] + (changesGeneral ? ["--without", part!] : [])
            + (cut ? ["--student-init", "teacher"] : []) + (limit.map { ["--limit", "\($0)"] } ?? [])
    }
    let summary = part.map { "TinyBERT\(cut ? "-cut" : "") with its \($0) switched off (zoo distill --without; the KD-stage experiment)" }
        ?? (cut ? "TinyBERT-4L-312 cut out of the teacher's weights (zoo distill --student-init teacher; TinyBERT's own starts random)" : recipe.summary)
    return Method(name: recipe.rawValue + (cut ? "-cut" : "") + (part.map { "-without-\($0)" } ?? ""), variant: recipe.rawValue, summary: summary,
                  resumable: true, shared: changesGeneral ? nil : cut ? "tinybert-cut" : "tinybert", prepare: general, geometry: recipe.geometry) { i in
        ["distill", "--teacher", i.source, "--recipe", recipe.rawValue, "--seed", "\(i.seed)", "--out", i.out]
            + (i.shared.map { ["--general", $0] } ?? []) + (recipe == .bilstmSoft ? ["--augment", "1", "--epochs", "2"] : recipe == .tinybert ? ["--epochs", "2", "--augment", "1"] : [])
            + (part.map { ["--without", $0] } ?? []) + (cut && part == "general" ? ["--student-init", "teacher"] : [])
            + (i.limit.map { ["--limit", "\($0)"] } ?? [])
    }
}

/// Where each method distils (Table 1 of the seed) and how its student starts.
public enum Recipe: String, CaseIterable {
    case tinybert, distilbert, bertPKD = "bert-pkd", bilstmSoft = "bilstm-soft"

    var family: HFFamily { self == .distilbert ? .distilbert : .bert }

    /// The student this recipe would make at another scale (`Method.geometry`): TinyBERT's is the
    /// recipe's own 4L-312 whatever the teacher (with the target's vocabulary and positions);
    /// DistilBERT's and BERT-PKD's are the same share of the target's layers as here (layers of one
    /// geometry are alike, so which ones does not matter for speed); the BiLSTM has no transformer
    /// shape.
    var geometry: Method.Rescale? {
        switch self {
        case .tinybert:
            return { result, _, target in
                var s = result
                (s.vocab, s.positions, s.types) = (target.vocab, target.positions, target.types)
                return s
            }
        case .bilstmSoft:
            return nil
        case .distilbert, .bertPKD:
            return { result, source, target in
                var s = target
                s.family = result.family
                if s.family == .distilbert { s.types = 0 }
                let n = max(1, target.layers.count * result.layers.count / source.layers.count)
                s.layers = target.layers.prefix(n).enumerated().map { i, l in var l = l; l.group = i; return l }
                return s
            }
        }
    }

    var summary: String {
        switch self {
        case .tinybert: return "TinyBERT student (default 4 layers, width 312, FFN 1200): embeddings, attention, hidden states, then predictions (zoo distill)"
        case .distilbert: return "DistilBERT student: every other teacher layer, predictions distilled (zoo distill); HF DistilBERT checkpoints"
        case .bertPKD: return "BERT-PKD student: the teacher's first layers, patient [CLS] loss on skipped layers + predictions (zoo distill)"
        case .bilstmSoft: return "distilled BiLSTM (Tang et al. 2019): one bidirectional LSTM layer, teacher's logits by MSE (zoo distill)"
        }
    }

    /// The stages, in order: name, objective, whether it trains on the corpus (else the task's
    /// training set). For a regression task (one output, STS-B) the soft cross-entropy, which is
    /// constant over a single logit, becomes the MSE to the teacher's prediction.
    func stages(temperature: Float, regression: Bool) -> [(name: String, objective: DistillObjective, corpus: Bool)] {
        stages(temperature: temperature).map { stage in
            var o = stage.objective
            if regression { (o.logitsMSE, o.softCE) = (o.softCE, 0) }
            return (stage.name, o, stage.corpus)
        }
    }

    /// What `--without` can switch off (TinyBERT's places of distillation, the seed's KD table).
    static let parts = ["general", "embedding", "attention", "hidden", "prediction", "augmentation"]

    /// A stage with the parts in `without` switched off; nil when nothing is left to learn.
    static func ablated(_ stage: (name: String, objective: DistillObjective, corpus: Bool), without: Set<String>)
        -> (name: String, objective: DistillObjective, corpus: Bool)? {
        var o = stage.objective
        if stage.corpus && without.contains("general") { return nil }
        if without.contains("embedding") { o.embedding = 0 }
        if without.contains("attention") { o.attention = 0 }
        if without.contains("hidden") { o.hidden = 0 }
        if stage.name == "prediction", without.contains("prediction") { o = DistillObjective(); o.hard = 1 }
        let weights = [o.embedding, o.attention, o.hidden, o.softCE, o.logitsMSE, o.hard, o.cosine, o.pkd]
        return weights.contains { $0 > 0 } ? (stage.name, o, stage.corpus) : nil
    }

    func stages(temperature: Float) -> [(name: String, objective: DistillObjective, corpus: Bool)] {
        var prediction = DistillObjective()
        (prediction.softCE, prediction.hard, prediction.temperature) = (0.5, 0.5, temperature)
        switch self {
        case .tinybert:
            var intermediate = DistillObjective()
            (intermediate.embedding, intermediate.hidden, intermediate.attention) = (1, 1, 1)
            var pred = DistillObjective()
            (pred.softCE, pred.temperature) = (1, temperature)   // TinyBERT's prediction layer: soft cross-entropy only
            return [("general", intermediate, true), ("intermediate", intermediate, false), ("prediction", pred, false)]
        case .distilbert:
            // DistilBERT's general stage learns the MLM head's predictions and the last hidden states
            // (cosine); the base here has no MLM head, so the cosine loss alone. Run only when asked
            // (`--general-only`, then `--general`), not on every task.
            var general = DistillObjective()
            general.cosine = 1
            return [("general", general, true), ("task", prediction, false)]
        case .bilstmSoft:       // the BiLSTM's step has its own loss (BiLSTMStep)
            return [("task", prediction, false)]
        case .bertPKD:
            var pkd = prediction
            (pkd.pkd, pkd.layerMap) = (100, .skip)    // β = 100 (Sun et al. 2019 search 10…1000)
            return [("task", pkd, false)]
        }
    }
}

/// Students shaped after the teacher (those made of its layers: `ParameterStore.subset`).
enum Students {
    /// A randomly initialised BERT (normal(0, 0.02) weights, unit LayerNorms, zero biases) with the
    /// teacher's vocabulary, positions and head (none for a pre-trained teacher).
    static func random(like t: ModelSpec, layers: Int, hidden: Int, heads: Int, ffn: Int, seed: UInt64) -> ParameterStore {
        var spec = ModelSpec.bert(vocab: t.vocab, hidden: hidden, layers: layers, heads: heads, ffn: ffn, positions: t.positions)
        if t.head != .none { spec = spec.withHead(numLabels: t.numLabels) }
        spec.types = t.types
        let r = randomStore(spec, seed: seed), s = ParameterStore(spec: spec)
        s.values.data.update(from: r.values.data, count: r.count)
        return s
    }

    /// A student cut out of the teacher's own weights (`--student-init teacher`; TinyBERT's student
    /// starts random, and a corpus as small as this one does not train it, see the README). Student
    /// layer m starts as teacher layer round(m·N/M), the one its hidden states learn from (the
    /// uniform map). Of the teacher's residual dimensions it keeps the `hidden` with the largest
    /// Σ(γ² + β²) over the embedding LayerNorm and those of the layers it takes (the mean square a
    /// dimension has after a LayerNorm); in each head the query-key and the value-output dimensions with the largest
    /// products of row norms (‖W_q[i]‖·‖W_k[i]‖, ‖W_v[i]‖·‖W_o[:, i]‖); in each FFN the `ffn`
    /// neurons with the largest ‖W_up[j]‖·‖W_down[:, j]‖. Queries are scaled by √(d'/d) so that
    /// the attention logits keep their scale. Returns the store and the kept residual dimensions
    /// (student dimension j is teacher dimension kept[j]).
    static func cut(from teacher: ParameterStore, layers M: Int, hidden: Int, heads: Int, ffn: Int) throws -> (ParameterStore, [Int]) {
        let t: ModelSpec = teacher.spec, N = t.layers.count, d = t.layers[0].headDim
        guard heads == t.layers[0].heads, hidden % heads == 0, hidden / heads <= d, hidden <= t.hidden, ffn <= t.layers.map(\.ffn).min()! else {
            throw ZooError.usage("--student-init teacher cuts the student out of the teacher: it needs the teacher's \(t.layers[0].heads) heads, "
                                 + "a width of at most \(t.hidden) (a multiple of the heads) and an FFN of at most \(t.layers.map(\.ffn).min()!)")
        }
        let from = try LayerMap.uniform.pairs(student: M, teacher: N).map { $0.1 - 1 }
        var spec = ModelSpec.bert(vocab: t.vocab, hidden: hidden, layers: M, heads: heads, ffn: ffn, positions: t.positions)
        if t.head != .none { spec = spec.withHead(numLabels: t.numLabels) }
        spec.types = t.types
        let s = ParameterStore(spec: spec)
        let (tn, sn) = (t.family.names, spec.family.names)

        /// Element [i, j] of the teacher's matrix `name` (row-major, as HF stores a Linear's [out, in]).
        func at(_ name: String) -> (Int, Int) -> Float {
            let p = teacher.view(name).value, shape = teacher.slot(name)!.shape, width = shape.count == 2 ? shape[1] : 1
            return { i, j in p[i * width + j] }
        }
        func norm(_ n: Int, _ x: (Int) -> Float) -> Float { (0..<n).reduce(0) { $0 + x($1) * x($1) }.squareRoot() }
        func top(_ k: Int, of n: Int, by score: (Int) -> Float) -> [Int] {
            Array((0..<n).map { ($0, score($0)) }.sorted { $0.1 > $1.1 }.prefix(k).map(\.0)).sorted()
        }
        /// The student's `name` as the teacher's rows × columns (nil: all), times `scale`.
        func copy(_ name: String, as target: String? = nil, rows: [Int]?, columns: [Int]?, scale: Float = 1) {
            let shape = teacher.slot(name)!.shape, get = at(name), out = s.view(target ?? name).value
            let r = rows ?? Array(0..<shape[0]), c = shape.count == 1 ? [0] : columns ?? Array(0..<shape[1])
            for (a, i) in r.enumerated() { for (b, j) in c.enumerated() { out[a * c.count + b] = scale * get(i, j) } }
        }

        let norms = [tn.embeddingNorm] + from.flatMap { [tn.layer($0).attentionNorm, tn.layer($0).outputNorm] }
        let kept = top(hidden, of: t.hidden) { h in norms.reduce(0) { sum, n in
            let (g, b) = (teacher.view(n + ".weight").value[h], teacher.view(n + ".bias").value[h])
            return sum + g * g + b * b
        } }
        for name in [tn.word, tn.position] + (tn.tokenType.map { t.types > 0 ? [$0] : [] } ?? []) { copy(name, rows: nil, columns: kept) }
        for x in [".weight", ".bias"] { copy(tn.embeddingNorm + x, rows: kept, columns: nil) }
        let dk = hidden / heads
        for (m, l) in from.enumerated() {
            let (a, b) = (tn.layer(l), sn.layer(m))
            let (q, k, v, o) = (at(a.query + ".weight"), at(a.key + ".weight"), at(a.value + ".weight"), at(a.attentionOut + ".weight"))
            var qk: [Int] = [], vo: [Int] = []
            for h in 0..<heads {
                qk += top(dk, of: d) { i in norm(hidden) { q(h * d + i, kept[$0]) } * norm(hidden) { k(h * d + i, kept[$0]) } }.map { h * d + $0 }
                vo += top(dk, of: d) { i in norm(hidden) { v(h * d + i, kept[$0]) } * norm(hidden) { o(kept[$0], h * d + i) } }.map { h * d + $0 }
            }
            let up = at(a.up + ".weight"), down = at(a.down + ".weight")
            let neurons = top(ffn, of: t.layers[l].ffn) { j in norm(hidden) { up(j, kept[$0]) } * norm(hidden) { down(kept[$0], j) } }
            let scale = (Float(dk) / Float(d)).squareRoot()
            for x in [".weight", ".bias"] {
                copy(a.query + x, as: b.query + x, rows: qk, columns: kept, scale: scale)
                copy(a.key + x, as: b.key + x, rows: qk, columns: kept)
                copy(a.value + x, as: b.value + x, rows: vo, columns: kept)
                copy(a.up + x, as: b.up + x, rows: neurons, columns: kept)
                copy(a.attentionNorm + x, as: b.attentionNorm + x, rows: kept, columns: nil)
                copy(a.outputNorm + x, as: b.outputNorm + x, rows: kept, columns: nil)
            }
            copy(a.attentionOut + ".weight", as: b.attentionOut + ".weight", rows: kept, columns: vo)
            copy(a.attentionOut + ".bias", as: b.attentionOut + ".bias", rows: kept, columns: nil)
            copy(a.down + ".weight", as: b.down + ".weight", rows: kept, columns: neurons)
            copy(a.down + ".bias", as: b.down + ".bias", rows: kept, columns: nil)
        }
        if t.head != .none {
            for x in [".weight", ".bias"] { copy(tn.pooler + x, rows: kept, columns: kept) }
            copy(tn.classifier + ".weight", rows: nil, columns: kept)
            copy(tn.classifier + ".bias", rows: nil, columns: nil)
        }
        return (s, kept)
    }
}

/// The student being distilled: BERT-shaped (an HF checkpoint) or the BiLSTM (the zoo's own format).
enum Student {
    case bert(ParameterStore)
    case bilstm(BiLSTM)

    var parameterCount: Int {
        switch self { case .bert(let s): return s.spec.parameterCount; case .bilstm(let b): return b.parameterCount }
    }
    var shape: String {
        switch self {
        case .bert(let s): return "\(s.spec.layers.count) layers, width \(s.spec.hidden)"
        case .bilstm(let b): return "one BiLSTM layer, \(b.config.hiddenSize) units per direction"
        }
    }
    func score(_ dev: DevSet) throws -> TaskResult {
        switch self { case .bert(let s): return try dev.score(s); case .bilstm(let b): return try dev.score(b) }
    }
    func save(to dir: URL, base: Checkpoint, config: [String: Any] = [:]) throws {
        switch self { case .bert(let s): try s.writeCheckpoint(to: dir, base: base, config: config); case .bilstm(let b): try b.save(to: dir, vocab: base.vocabURL) }
    }
    func load(_ dir: URL) throws {
        switch self {
        case .bert(let s): try s.load(try Checkpoint(dir: dir), seed: 0)
        case .bilstm(let b):
            let saved = try BiLSTM(directory: dir)
            withExtendedLifetime(saved) { b.store.values.data.update(from: saved.store.values.data, count: b.store.count) }
        }
    }
}

public struct DistillCommand: Command {
    public static let name = "distill"
    public static let summary = "distil a fine-tuned teacher into a smaller student (tinybert, distilbert, bert-pkd, bilstm-soft)"
    public static let help = """
    zoo distill --teacher FINETUNED --recipe tinybert|distilbert|bert-pkd|bilstm-soft --out DIR [--task T]
                [--general GENERAL | --general-only] [--student-layers L] [--student-width H] [--student-heads A] [--student-ffn F]
                [--student-init random|teacher]
                [--epochs N] [--general-epochs N] [--corpus FILE] [--lr X] [--batch B] [--temperature T]
                [--augment N] [--augment-cap N] [--without PARTS] [--limit N] [--save-every N] [--data DIR] [--threads N]
                [--seed S] [--resume]
      tinybert: a new student (default 4 layers, width 312, the teacher's head count, FFN 1200: TinyBERT-4L-312),
        general distillation on unlabelled sentences (--corpus FILE, one per line; default every
        sentence of the GLUE files in --data) for --general-epochs (default 1): embedding output,
        hidden states (through learned projections) and attention scores, layer m of the student
        learning from teacher layer round(m·N/M); then on the task: the same losses (--epochs), then
        the soft cross-entropy of the predictions at --temperature (default 1; --epochs).
        --student-init teacher (not TinyBERT's recipe, whose student starts random): the student is
        cut out of the teacher: layer m from teacher layer round(m·N/M), the residual dimensions,
        head dimensions and FFN neurons of largest weight (see the README), and the hidden-state
        projections start as the embedding of its dimensions in the teacher's (recorded in its
        config.json as zoo_teacher_dims, so a general student made so keeps it for the task stages).
        As in TinyBERT, the general stage can be made once from the pre-trained model and reused
        for every task: `--general-only --teacher PRETRAINED` writes that student to --out (no task,
        no head needed); `--general GENERAL` starts a task's student from it and skips the stage.
      distilbert: the student is every other teacher layer (--student-layers overrides the count,
        --student-from 1,3,5 names the teacher layers, from 0),
        written as an HF DistilBERT checkpoint; trained on the task with 0.5·labels + 0.5·T²·KL at
        --temperature (default 2). Its general stage runs only when asked: `--general-only --teacher
        PRETRAINED` makes every other layer of the pre-trained model learn its last hidden states on
        the corpus (DistilBERT's cosine loss; its MLM-prediction losses need an MLM head, which
        all-MiniLM-L6-v2 has not); `--general GENERAL` starts a task's student from that one, with
        the fine-tuned teacher's pooler and classifier as its head.
        --cosine W adds DistilBERT's cosine loss on the last hidden states (weight W) to the task
        stage (the recipe distils predictions only there).
      bert-pkd: the student is the teacher's first --student-layers layers (default half; or the
        --student-from layers); labels + soft predictions as above + 100 × PKD's normalised [CLS]
        MSE on skipped teacher layers.
      bilstm-soft: Tang et al. (2019): word vectors from the teacher's table, one bidirectional LSTM
        layer (--student-width units per direction, default 300), a ReLU layer of 400, the classifier
        (a pair: both sentences through the same LSTM, [r1, r2, r1*r2, |r1-r2|]); trained on the MSE
        to the teacher's logits (default --lr 1e-3, --epochs 3); pair it with --augment. Written in
        the zoo's own format (config.json model_type "zoo_bilstm", PyTorch nn.LSTM tensor names).
      Each stage is a resumable run of the core trainer in DIR/<stage> (--resume continues); DIR gets
      the student as an HF checkpoint and distill.json (stages, losses, dev score, parameters).
      The general stage's corpus can be capped with --limit N sentences (also caps the task set).
      --augment N: the task stages train on the training set plus N augmented copies of each example
      (TinyBERT's augmentation: each whole word replaced with probability 0.4 by one of its 15 nearest
      words in the teacher's word-embedding table — not GloVe or an MLM, which do not exist here), at
      most --augment-cap examples (default 200,000); cached in DIR/augmented.json.
      --without PARTS (tinybert; comma-separated, for the seed's KD-stage experiment): general (no
      general stage), embedding, attention, hidden (that loss off in every stage; a stage left with
      no loss is skipped), prediction (the last stage learns the labels instead of the teacher's
      predictions), augmentation (--augment ignored).
    """
    public static let options: Set<String> = ["teacher", "recipe", "out", "task", "student-layers", "student-width", "student-heads",
                                              "student-ffn", "student-init", "student-from", "cosine", "epochs", "general-epochs", "corpus", "lr", "batch", "temperature", "limit",
                                              "save-every", "data", "threads", "seed", "augment", "augment-cap", "general", "without"]
    public static let flags: Set<String> = ["resume", "general-only"]

    public static func run(_ args: Arguments) throws {
        guard args.positional.isEmpty else { throw ZooError.usage("unexpected argument '\(args.positional[0])'") }
        Runtime.setThreads(try args.int("threads"))
        guard let recipe = Recipe(rawValue: try args.required("recipe")) else {
            throw ZooError.usage("unknown recipe '\(args["recipe"]!)'; known: \(Recipe.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let out = URL(fileURLWithPath: try args.required("out"))
        try lockOutput(out)
        let ckpt = try Checkpoint(dir: URL(fileURLWithPath: try args.required("teacher")))
        let t = ckpt.spec
        let generalOnly = args.flag("general-only"), general = try args["general"].map { try Checkpoint(dir: URL(fileURLWithPath: $0)) }
        if ![.tinybert, .distilbert].contains(recipe), generalOnly || general != nil { throw ZooError.usage("--general and --general-only apply to the tinybert and distilbert recipes only") }
        if generalOnly, general != nil { throw ZooError.usage("--general-only makes a general student; --general uses one: give one of them") }
        guard generalOnly || t.head != .none, t.family == .bert, t.layers.allSatisfy({ $0.prunedHeads.isEmpty }) else {
            throw ZooError.badFile(path: ckpt.dir.path, problem: generalOnly ? "the teacher must be a dense BERT" : "the teacher must be a fine-tuned dense BERT (zoo finetune output)")
        }
        let task = generalOnly ? nil : try ckpt.task(args["task"])
        let without = Set((args["without"] ?? "").split(separator: ",").map(String.init))
        if let bad = without.first(where: { !Recipe.parts.contains($0) }) {
            throw ZooError.usage("--without takes \(Recipe.parts.joined(separator: ", ")), got '\(bad)'")
        }
        if !without.isEmpty, recipe != .tinybert { throw ZooError.usage("--without applies to the tinybert recipe only") }
        if without.contains("general"), generalOnly || general != nil { throw ZooError.usage("--without general and --general/--general-only contradict each other") }
        let seed = try args.int("seed", default: 42, range: 0...Int.max).map(UInt64.init)!
        let teacher = ParameterStore(spec: t, trainable: false)
        try teacher.load(ckpt, seed: 0)
        let N = t.layers.count
        let student: Student
        var teacherDims: [Int]?      // a student cut out of the teacher: the teacher dimension of each of its own
        switch recipe {
        case .tinybert where general != nil:
            let g = general!
            guard g.spec.family == .bert, g.spec.vocab == t.vocab, g.spec.types == t.types, g.spec.positions >= min(128, t.positions) else {
                throw ZooError.badFile(path: g.dir.path, problem: "not a general student of this teacher (a BERT with its vocabulary, from zoo distill --general-only)")
            }
            for flag in ["student-layers", "student-width", "student-heads", "student-ffn", "student-init"] where args[flag] != nil {
                throw ZooError.usage("--\(flag): the student's shape comes from --general")
            }
            let s = ParameterStore(spec: g.spec.withHead(numLabels: t.numLabels))
            try s.load(g, seed: seed)
            student = .bert(s)
            if let dims = try g.configDictionary()["zoo_teacher_dims"] {
                guard let dims = dims as? [Int], dims.count == g.spec.hidden, dims.allSatisfy({ (0..<t.hidden).contains($0) }) else {
                    throw ZooError.badFile(path: g.configURL.path, problem: "zoo_teacher_dims must list \(g.spec.hidden) dimensions of the teacher's \(t.hidden)")
                }
                teacherDims = dims
            }
        case .tinybert:
            let width = try args.int("student-width", default: 312)!, heads = try args.int("student-heads", default: t.layers[0].heads)!
            guard heads > 0, width % heads == 0 else { throw ZooError.usage("--student-width must be a multiple of --student-heads") }
            let (layers, ffn) = (try args.int("student-layers", default: 4, range: 1...N)!, try args.int("student-ffn", default: 1200)!)
            switch args["student-init"] ?? "random" {
            case "random": student = .bert(Students.random(like: t, layers: layers, hidden: width, heads: heads, ffn: ffn, seed: seed))
            case "teacher":
                let (s, dims) = try Students.cut(from: teacher, layers: layers, hidden: width, heads: heads, ffn: ffn)
                (student, teacherDims) = (.bert(s), dims)
            case let other: throw ZooError.usage("--student-init takes random or teacher, got '\(other)'")
            }
        case .distilbert where general != nil:
            // The general student's layers and embeddings; the head (pre_classifier, classifier) from
            // the fine-tuned teacher, as the student without a general stage has it.
            let g = general!
            guard g.spec.family == .distilbert, g.spec.vocab == t.vocab, g.spec.hidden == t.hidden, g.spec.positions >= min(128, t.positions) else {
                throw ZooError.badFile(path: g.dir.path, problem: "not a general DistilBERT student of this teacher (its vocabulary and width; from zoo distill --recipe distilbert --general-only)")
            }
            if args["student-layers"] != nil { throw ZooError.usage("--student-layers: the student's shape comes from --general") }
            let body = ParameterStore(spec: g.spec)
            try body.load(g, seed: seed)
            let s = teacher.subset(layers: Array(0..<g.spec.layers.count), family: .distilbert)
            for slot in body.slots { s.view(slot.name).value.update(from: body.view(slot.name).value, count: slot.count) }
            student = .bert(s)
        case .distilbert:
            let M = try args.int("student-layers", default: (N + 1) / 2, range: 1...N)!
            student = .bert(teacher.subset(layers: try studentFrom(args, teacherLayers: N) ?? (0..<M).map { $0 * N / M }, family: .distilbert))
        case .bertPKD:
            let M = try args.int("student-layers", default: N / 2, range: 1...N)!
            student = .bert(teacher.subset(layers: try studentFrom(args, teacherLayers: N) ?? Array(0..<M), family: .bert))
        case .bilstmSoft:
            let config = BiLSTM.Config(vocabSize: t.vocab, embeddingSize: t.embedding, hiddenSize: try args.int("student-width", default: 300)!,
                                       classifierSize: 400, numLabels: t.numLabels, pair: task!.isPair, maxLength: min(128, t.positions))
            student = .bilstm(BiLSTM(config: config, table: teacher.view(t.family.names.word).value, seed: seed))
        }
        for flag in ["student-width", "student-heads", "student-ffn", "student-init", "general-epochs", "corpus"] where recipe != .tinybert && args[flag] != nil
            && !(recipe == .bilstmSoft && flag == "student-width") && !(recipe == .distilbert && generalOnly && ["general-epochs", "corpus"].contains(flag)) {
            throw ZooError.usage("--\(flag) applies to the tinybert recipe" + (["general-epochs", "corpus"].contains(flag) ? " and distilbert's --general-only" : " only"))
        }
        if ![.distilbert, .bertPKD].contains(recipe) || general != nil, args["student-from"] != nil {
            throw ZooError.usage("--student-from applies to the distilbert and bert-pkd recipes (without --general)")
        }
        if args["cosine"] != nil, recipe != .distilbert { throw ZooError.usage("--cosine applies to the distilbert recipe only") }
        let cosine = try args.float("cosine", default: 0, range: 0...1000)
        if recipe == .bilstmSoft, args["student-layers"] != nil { throw ZooError.usage("--student-layers: the BiLSTM student has one layer") }
        var recipeOptions = TrainOptions()
        recipeOptions.epochs = try args.int("epochs", default: 3, range: 1...1000)!
        recipeOptions.lr = try args.float("lr", default: [.tinybert: 1e-4, .bilstmSoft: 1e-3][recipe] ?? 5e-5, range: 0...1)
        recipeOptions.batch = try args.int("batch", default: 32)!
        recipeOptions.seed = seed
        recipeOptions.saveEvery = try args.int("save-every", default: recipeOptions.saveEvery, range: 0...Int.max)!
        let limit = try args.int("limit")
        let glue = glueDirectory(args["data"])
        let tokenizer = try ckpt.tokenizer()
        let maxLength = min(128, t.positions)
        var train = try task?.load(.train, from: glue) ?? []
        if let limit { train = Array(train.prefix(limit)) }
        if let copies = try args.int("augment"), copies > 0, task != nil, !without.contains("augmentation") {
            train = try augmented(train, copies: copies, cap: try args.int("augment-cap", default: 200_000)!, teacher: teacher, from: ckpt.dir.path,
                                  tokenizer: tokenizer, seed: seed, cache: out.appendingPathComponent("augmented.json"))
        }
        let dev = try task.map { try DevSet(task: $0, glue: glue, tokenizer: tokenizer, maxLength: maxLength) }
        // --corpus is read before anything is logged: a bad file gives the only line.
        let corpus = try args["corpus"].map { try Corpus.load(URL(fileURLWithPath: $0)) }
        log("distilling \(ckpt.dir.path) (\(task?.glueName ?? "general stage only"), \(N) layers, \(t.parameterCount) parameters) into \(recipe.rawValue): \(student.shape), \(student.parameterCount) parameters")

        var record: [[String: Any]] = []
        let stages = recipe.stages(temperature: try args.float("temperature", default: recipe == .tinybert ? 1 : 2, range: 0.01...100),
                                   regression: task?.isRegression ?? false).compactMap { Recipe.ablated($0, without: without) }
            .map { stage in var s = stage; if !s.corpus { s.objective.cosine += cosine }; return s }
        for (name, objective, onCorpus) in stages where generalOnly ? onCorpus : !(onCorpus && (general != nil || recipe == .distilbert)) {
            let dir = out.appendingPathComponent(name)
            let done = dir.appendingPathComponent("stage.json")
            if args.flag("resume"), let data = FileManager.default.contents(atPath: done.path) {
                guard let stage = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                    throw ZooError.badFile(path: done.path, problem: "not a stage record (JSON object); delete it to redo the stage")
                }
                try student.load(dir)
                record.append(stage)
                log("\(name): done earlier, loaded \(dir.path)")
                continue
            }
            var options = recipeOptions
            let step: TrainingStep
            switch student {
            case .bilstm(let b):
                let progress = Progress("teacher logits")
                step = try BiLSTMStep(teacher: try Network<Linear>(packing: teacher), student: b,
                                      examples: train.map { tokenizer.encode($0.textA, $0.textB, maxLength: maxLength) }, dev: dev, progress: progress.update)
            case .bert(let student) where onCorpus:
                options.epochs = try args.int("general-epochs", default: 1, range: 1...1000)!
                let all = try corpus ?? Corpus.glue(glue)
                let sentences = limit.map { Array(all.prefix($0)) } ?? all
                log("\(name): \(sentences.count) of \(all.count) sentences (\(args["corpus"] ?? "every distinct GLUE sentence in \(glue.path)"))")
                step = try DistillStep(teacher: teacher, student: student, objective: objective,
                                       examples: sentences.map { tokenizer.encode($0, nil, maxLength: maxLength) }, targets: nil, seed: seed,
                                       projectionFrom: teacherDims)
            case .bert(let student):
                step = try DistillStep(teacher: teacher, student: student, objective: objective,
                                       examples: train.map { tokenizer.encode($0.textA, $0.textB, maxLength: maxLength) },
                                       targets: train.map(\.labelValue), dev: dev, seed: seed, projectionFrom: teacherDims)
            }
            let trainer = try Trainer(step, options: options, out: dir)
            if args.flag("resume"), FileManager.default.fileExists(atPath: trainer.checkpointURL.path) {
                try trainer.resume()
                log("\(name): resumed from \(trainer.checkpointURL.path) at step \(trainer.step)")
            }
            let progress = Progress(name)
            try trainer.run(log: { log("\(name) " + $0) }, progress: { progress.update($0, $1) })
            try student.save(to: dir, base: ckpt, config: teacherDims.map { ["zoo_teacher_dims": $0] } ?? [:])
            var stage = trainer.record
            stage["stage"] = name
            record.append(stage)
            try writeAtomically(try JSONSerialization.data(withJSONObject: stage, options: [.prettyPrinted, .sortedKeys]), to: done)
        }
        try student.save(to: out, base: ckpt, config: teacherDims.map { ["zoo_teacher_dims": $0] } ?? [:])
        let score = try dev.map { try student.score($0) }
        var summary: [String: Any] = ["teacher": ckpt.dir.path, "recipe": recipe.rawValue, "stages": record,
                                      "parameters_teacher": t.parameterCount, "parameters": student.parameterCount]
        (summary["task"], summary["dev"], summary["general"]) = (task?.name, score?.score, general?.dir.path)
        try writeAtomically(try JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys]), to: out.appendingPathComponent("distill.json"))
        print(String(format: "%@: %@ student, %@, %d parameters (teacher %d); %@", out.path, recipe.rawValue, student.shape,
                     student.parameterCount, t.parameterCount,
                     score.map { String(format: "%@ dev %.2f", task!.glueName, $0.score) } ?? "general stage only"))
    }

    /// `--student-from 1,3,5`: the teacher layers (from 0, increasing) a student made of them keeps.
    static func studentFrom(_ args: Arguments, teacherLayers N: Int) throws -> [Int]? {
        guard let list = args["student-from"] else { return nil }
        if args["student-layers"] != nil { throw ZooError.usage("--student-from names the layers; leave out --student-layers") }
        let layers = list.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !layers.isEmpty, layers.allSatisfy({ $0 != nil && (0..<N).contains($0!) }), zip(layers, layers.dropFirst()).allSatisfy({ $0! < $1! }) else {
            throw ZooError.usage("--student-from takes increasing teacher layers from 0 to \(N - 1), comma-separated; got '\(list)'")
        }
        return layers.map { $0! }
    }

    /// The training set with augmented copies (`Augmenter`), read from `cache` when a run made it.
    static func augmented(_ train: [Example], copies: Int, cap: Int, teacher: ParameterStore, from path: String, tokenizer: WordPieceTokenizer,
                          seed: UInt64, cache: URL) throws -> [Example] {
        let key = "teacher \(path), \(train.count) examples, \(copies) copies, cap \(cap), seed \(seed)"
        if let data = FileManager.default.contents(atPath: cache.path),
           let saved = try? JSONSerialization.jsonObject(with: data) as? [String: Any], saved["key"] as? String == key,
           let rows = saved["examples"] as? [[String: Any]] {
            let examples = rows.enumerated().compactMap { i, r -> Example? in
                guard let a = r["a"] as? String else { return nil }
                return Example(index: i, textA: a, textB: r["b"] as? String,
                               label: (r["y"] as? Double).map { r["regression"] as? Bool == true ? .score($0) : .classIndex(Int($0)) })
            }
            if examples.count == rows.count {
                log("augmented training set: \(rows.count) examples from \(cache.path)")
                return examples
            }
            log("\(cache.path): damaged, augmenting again")
        }
        let names = teacher.spec.family.names
        let texts = train.flatMap { [$0.textA] + ($0.textB.map { [$0] } ?? []) }
        let augmenter = Augmenter(tokenizer: tokenizer, table: teacher.view(names.word).value, width: teacher.spec.embedding, texts: texts)
        let out = augmenter.augment(train, copies: copies, cap: cap, seed: seed)
        log("augmented training set: \(train.count) examples + \(out.count - train.count) copies (neighbours of \(augmenter.neighbours.count) words)")
        let rows: [[String: Any]] = out.map { e in
            var r: [String: Any] = ["a": e.textA]
            if let b = e.textB { r["b"] = b }
            if let y = e.label { r["y"] = y.classIndex.map(Double.init) ?? y.score!; r["regression"] = y.score != nil }
            return r
        }
        try FileManager.default.createDirectory(at: cache.deletingLastPathComponent(), withIntermediateDirectories: true)
        try writeAtomically(try JSONSerialization.data(withJSONObject: ["key": key, "examples": rows]), to: cache)
        return out
    }
}
