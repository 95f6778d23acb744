import CKernels
import Foundation

/// The distillation losses over tap buffers, each a forward/backward pair: returns the loss value and
/// adds `weight` × its gradient into the `d…` buffers given (student side and, for a learned
/// projection, its weight and bias). Means as stated per function.
public enum DistillLoss {
    /// The hard-label loss of logits s [B, C]: cross-entropy, or MSE for regression.
    public static func hard(student s: UnsafePointer<Float>, targets: Targets, B: Int, C: Int, weight: Float, ds: UnsafeMutablePointer<Float>) -> Float {
        let g = UnsafeMutablePointer<Float>.allocate(capacity: B * C)
        defer { g.deallocate() }
        let l: Float
        switch targets {
        case .classes(let y): l = zk_cross_entropy_forward_backward(g, s, y, Int32(B), Int32(C))
        case .scores(let y): l = zk_mse_forward_backward(g, s, y, Int32(B))
        }
        for i in 0..<B * C { ds[i] += weight * g[i] }
        return l
    }

    /// Soft cross-entropy on logits (Hinton et al.): mean over the B rows of T²·KL(softmax(t/T) ‖
    /// softmax(s/T)), whose gradient in s is T·(softmax(s/T) − softmax(t/T)); s, t [B, C].
    public static func softCrossEntropy(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, B: Int, C: Int, temperature T: Float,
                                        weight: Float, ds: UnsafeMutablePointer<Float>) -> Float {
        func softmax(_ x: UnsafePointer<Float>) -> [Float] {
            let z = (0..<C).map { x[$0] / T }, m = z.max()!, e = z.map { exp($0 - m) }, sum = e.reduce(0, +)
            return e.map { $0 / sum }
        }
        var kl: Double = 0
        for b in 0..<B {
            let ps = softmax(s + b * C), pt = softmax(t + b * C)
            for c in 0..<C {
                ds[b * C + c] += weight * (T * (ps[c] - pt[c]) / Float(B))
                if pt[c] > 0 { kl += Double(pt[c]) * (log(Double(pt[c])) - log(Double(max(ps[c], 1e-30)))) }
            }
        }
        return Float(Double(T * T) * kl / Double(B))
    }

    /// Hidden-state (or embedding-output) MSE through a learned projection when the widths differ
    /// (TinyBERT): mean over T·Ht of (s·Wᵀ + b − t)², s [T, Hs], t [T, Ht], W [Ht, Hs] (nil: Hs = Ht,
    /// no projection).
    public static func hiddenMSE(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, T: Int, Hs: Int, Ht: Int,
                                 projection W: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
                                 weight: Float = 1, ds: UnsafeMutablePointer<Float>, dW: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?) -> Float {
        precondition(W != nil || Hs == Ht, "widths differ: a projection is needed")
        let r = UnsafeMutablePointer<Float>.allocate(capacity: T * Ht)
        defer { r.deallocate() }
        if let W {
            zk_linear_forward(r, s, W, bias, Int32(T), Int32(Ht), Int32(Hs))
        } else {
            r.update(from: s, count: T * Ht)
        }
        var sum: Double = 0
        let scale = 2 * weight / Float(T * Ht)
        for i in 0..<T * Ht {
            let e = r[i] - t[i]
            sum += Double(e * e)
            r[i] = scale * e
        }
        if let W {
            zk_sgemm_nn(Int32(T), Int32(Hs), Int32(Ht), r, Int32(Ht), W, Int32(Hs), 1, ds, Int32(Hs))   // ds += r·W
            if let dW { zk_sgemm_tn(Int32(Ht), Int32(Hs), Int32(T), r, Int32(Ht), s, Int32(Hs), 1, dW, Int32(Hs)) }   // dW += rᵀ·s
            if let db { for i in 0..<T { for j in 0..<Ht { db[j] += r[i * Ht + j] } } }
        } else {
            for i in 0..<T * Ht { ds[i] += r[i] }
        }
        return Float(sum / Double(T * Ht))
    }

    /// MSE: mean over n values of (s − t)². Attention scores (TinyBERT; laid out as
    /// `Activations.scores`, per sequence and head over its own tokens, so padding never enters) and
    /// logits (the distilled BiLSTM).
    public static func mse(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, count n: Int, weight: Float = 1,
                           ds: UnsafeMutablePointer<Float>) -> Float {
        let g = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { g.deallocate() }
        let l = zk_mse_forward_backward(g, s, t, Int32(n))
        for i in 0..<n { ds[i] += weight * g[i] }
        return l
    }

    /// Cosine loss on hidden states (DistilBERT): mean over the T rows of 1 − cos(s_i, t_i), [T, H].
    public static func cosine(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, T: Int, H: Int, weight: Float = 1,
                              ds: UnsafeMutablePointer<Float>) -> Float {
        var sum: Double = 0
        for i in 0..<T {
            let (a, b) = (s + i * H, t + i * H)
            var ab: Float = 0, aa: Float = 0, bb: Float = 0
            for j in 0..<H { ab += a[j] * b[j]; aa += a[j] * a[j]; bb += b[j] * b[j] }
            let na = max(aa.squareRoot(), 1e-12), nb = max(bb.squareRoot(), 1e-12), c = ab / (na * nb)
            sum += Double(1 - c)
            // d(1 − cos)/da = −(b / (|a||b|) − cos · a / |a|²), averaged over rows
            for j in 0..<H { ds[i * H + j] += -weight * (b[j] / (na * nb) - c * a[j] / (na * na)) / Float(T) }
        }
        return Float(sum / Double(T))
    }

    /// BERT-PKD's patient loss on [CLS] states: mean over the B rows of ‖s/‖s‖ − t/‖t‖‖², [B, H].
    public static func normalisedMSE(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, B: Int, H: Int, weight: Float = 1,
                                     ds: UnsafeMutablePointer<Float>) -> Float {
        var sum: Double = 0
        for i in 0..<B {
            let (a, b) = (s + i * H, t + i * H)
            var aa: Float = 0, bb: Float = 0
            for j in 0..<H { aa += a[j] * a[j]; bb += b[j] * b[j] }
            let na = max(aa.squareRoot(), 1e-12), nb = max(bb.squareRoot(), 1e-12)
            var dot: Float = 0   // uᵀ(u − v)
            for j in 0..<H { let u = a[j] / na, e = u - b[j] / nb; sum += Double(e * e); dot += u * e }
            // dL/da = (2(u − v) − 2u·uᵀ(u − v)) / ‖a‖, averaged over rows
            for j in 0..<H { let u = a[j] / na; ds[i * H + j] += weight * 2 * ((u - b[j] / nb) - u * dot) / (na * Float(B)) }
        }
        return Float(sum / Double(B))
    }
}

/// Which teacher layer each student layer learns from (hidden state l = output of layer l, 0 = the
/// embedding output). For M student and N teacher layers, student layer m = 1…M maps to:
public enum LayerMap: Equatable {
    case uniform              // TinyBERT: m → m·N/M (rounded) for m = 1…M (the embeddings, 0 → 0, separately)
    case skip                 // BERT-PKD-skip: m → m·N/M for m = 1…M−1 (the last layer learns through the prediction)
    case last                 // BERT-PKD-last: m → N−M+m for m = 1…M−1
    case explicit([Int])      // given: teacher layer of each student layer 1…M

    /// Pairs (student hidden index, teacher hidden index).
    /// A student deeper than its teacher (`zoo study teacher-size`: TinyBERT-4L under a 2-layer
    /// teacher) is allowed by the uniform map only: each teacher layer then teaches several student
    /// layers (4 from 2: 1, 1, 2, 2), never the embeddings.
    public func pairs(student M: Int, teacher N: Int) throws -> [(Int, Int)] {
        guard M <= N || self == .uniform else { throw ZooError.usage("the student has more layers (\(M)) than the teacher (\(N))") }
        switch self {
        case .uniform, .skip:
            // m·N/M, rounded half up when M does not divide N (6 → 4 layers: 2, 3, 5, 6)
            return (1...M).dropLast(self == .uniform ? 0 : 1).map { ($0, max(1, Int((Double($0 * N) / Double(M)).rounded()))) }
        case .last:
            return (1..<M).map { ($0, N - M + $0) }
        case .explicit(let list):
            guard list.count == M, list.allSatisfy({ (1...N).contains($0) }) else {
                throw ZooError.usage("a layer map lists one teacher layer (1…\(N)) per student layer (\(M)), got \(list)")
            }
            return zip(1...M, list).map { ($0, $1) }
        }
    }
}

/// What a distillation step minimises: a weight per loss term (0 = off), the softmax temperature of
/// the soft cross-entropy, and which teacher layer each student layer learns from.
public struct DistillObjective {
    public var softCE: Float = 0         // T²·KL on logits softened by T
    public var logitsMSE: Float = 0      // MSE between logits (the distilled BiLSTM)
    public var hard: Float = 0           // the labels (cross-entropy / MSE)
    public var hidden: Float = 0         // hidden-state MSE per mapped layer, through a projection when widths differ
    public var attention: Float = 0      // pre-softmax attention-score MSE per mapped layer (equal head counts)
    public var embedding: Float = 0      // embedding-output MSE, through a projection when widths differ
    public var cosine: Float = 0         // 1 − cos between the last hidden states (equal widths)
    public var pkd: Float = 0            // PKD's normalised [CLS] MSE per mapped layer (equal widths)
    public var temperature: Float = 1
    public var layerMap = LayerMap.uniform
    public init() {}
}

/// One distillation step: a frozen teacher and a trainable student recorded over the same packed
/// batch, the objective's terms read at the taps of both, their gradients injected into the
/// student's backward pass (and into the projections'). Labelled examples (the task stage) or
/// sentences without labels (general distillation: `targets` nil, no hard or prediction terms
/// needed). The `Trainer` runs it like fine-tuning: schedule, clipping, checkpoints, exact resume.
public final class DistillStep: TrainingStep {
    public let teacher: Network<ParamLinear>, student: Network<ParamLinear>
    /// "hidden.weight/bias", "embedding.weight/bias" [Ht, Hs]: present when the widths differ; random,
    /// or for a student cut out of the teacher (`projectionFrom`: the teacher dimension of each
    /// student dimension) the embedding of its dimensions in the teacher's.
    public let projections: ParameterStore?
    public let objective: DistillObjective
    let pairs: [(Int, Int)]
    let examples: [WordPieceTokenizer.Encoding], targets: [Double]?
    let dev: DevSet?

    public var stores: [ParameterStore] { [student.store!] + (projections.map { [$0] } ?? []) }
    public var exampleCount: Int { examples.count }

    public init(teacher: ParameterStore, student: ParameterStore, objective: DistillObjective,
                examples: [WordPieceTokenizer.Encoding], targets: [Double]?, dev: DevSet? = nil, seed: UInt64 = 42,
                projectionFrom dims: [Int]? = nil) throws {
        precondition(teacher.grads == nil, "the teacher is frozen")
        let (t, s): (ModelSpec, ModelSpec) = (teacher.spec, student.spec)
        let o = objective
        guard targets != nil || o.hard == 0 else { throw ZooError.usage("the hard-label loss needs labelled examples") }
        if o.cosine > 0 || o.pkd > 0, t.hidden != s.hidden {
            throw ZooError.usage("cosine and PKD losses compare hidden states of equal width (teacher \(t.hidden), student \(s.hidden))")
        }
        if o.softCE > 0 || o.logitsMSE > 0 || o.hard > 0, t.numLabels != s.numLabels || t.head == .none || s.head == .none {
            throw ZooError.usage("prediction losses need a classifier on both sides with the same outputs (teacher \(t.numLabels), student \(s.numLabels))")
        }
        pairs = try o.layerMap.pairs(student: s.layers.count, teacher: t.layers.count)
        if o.attention > 0, let (m, n) = pairs.first(where: { s.layers[$0.0 - 1].heads != t.layers[$0.1 - 1].heads }) {
            throw ZooError.usage("attention-score loss: student layer \(m) has \(s.layers[m - 1].heads) heads, teacher layer \(n) \(t.layers[n - 1].heads)")
        }
        self.teacher = try Network(spec: t, reader: teacher)
        self.student = try Network(spec: s, reader: student)
        self.objective = o
        (self.examples, self.targets, self.dev) = (examples, targets, dev)
        if t.hidden != s.hidden, o.hidden > 0 || o.embedding > 0 {
            let p = ParameterStore(tensors: ["hidden", "embedding"].flatMap { [($0 + ".weight", [t.hidden, s.hidden], true), ($0 + ".bias", [t.hidden], false)] })
            var rng = SplitMix64(seed: seed)
            for name in ["hidden.weight", "embedding.weight"] {
                let v = p.view(name)
                if let dims {   // student dimension j is teacher dimension dims[j]: the projection starts as that embedding
                    precondition(dims.count == s.hidden && dims.allSatisfy { (0..<t.hidden).contains($0) }, "projection dimensions")
                    for (j, i) in dims.enumerated() { v.value[i * s.hidden + j] = 1 }
                } else {        // nn.Linear-like scale, seeded
                    for i in 0..<v.count { v.value[i] = rng.normal() / Float(s.hidden).squareRoot() }
                }
            }
            projections = p
        } else {
            projections = nil
        }
    }

    public func step(_ indices: [Int], dropoutSeed: UInt64) throws -> (loss: Float, terms: [String: Float], tokens: Int) {
        let batch = Batch(indices.map { examples[$0] })
        let ta = try teacher.record(batch, dropoutSeed: nil)
        let sa = try student.record(batch, dropoutSeed: dropoutSeed)
        let (T, B, o) = (sa.T, sa.B, objective)
        let (Hs, Ht, C) = (student.spec.hidden, teacher.spec.hidden, max(student.spec.numLabels, 1))
        var extra: [Tap: Tensor] = [:]
        func grad(_ tap: Tap, _ n: Int) -> UnsafeMutablePointer<Float> {
            if extra[tap] == nil { extra[tap] = Tensor(shape: [n]) }
            return extra[tap]!.data
        }
        var terms: [String: Float] = [:], total: Float = 0
        func add(_ name: String, _ weight: Float, _ value: Float) { terms[name, default: 0] += value; total += weight * value }
        func hidden(_ m: Int, _ n: Int, _ weight: Float, projection: String) -> Float {
            let p = projections
            return DistillLoss.hiddenMSE(student: sa.hidden(m), teacher: ta.hidden(n), T: T, Hs: Hs, Ht: Ht,
                                         projection: p.map { UnsafePointer($0.view(projection + ".weight").value) },
                                         bias: p.map { UnsafePointer($0.view(projection + ".bias").value) },
                                         weight: weight, ds: grad(.hidden(m), T * Hs),
                                         dW: p?.view(projection + ".weight").grad, db: p?.view(projection + ".bias").grad)
        }
        if o.embedding > 0 { add("embedding", o.embedding, hidden(0, 0, o.embedding, projection: "embedding")) }
        for (m, n) in pairs {
            if o.hidden > 0 { add("hidden", o.hidden, hidden(m, n, o.hidden, projection: "hidden")) }
            if o.attention > 0 {
                let s = sa.scores(m - 1, spec: student.spec), t = ta.scores(n - 1, spec: teacher.spec)
                add("attention", o.attention, DistillLoss.mse(student: s.data, teacher: t.data, count: s.count, weight: o.attention, ds: grad(.scores(m - 1), s.count)))
            }
            if o.pkd > 0 {
                let s = Tensor(shape: [B, Hs]), t = Tensor(shape: [B, Hs]), d = Tensor(shape: [B, Hs])
                for (b, start) in sa.starts.enumerated() {
                    (s.data + b * Hs).update(from: sa.hidden(m) + start * Hs, count: Hs)
                    (t.data + b * Hs).update(from: ta.hidden(n) + start * Hs, count: Hs)
                }
                add("pkd", o.pkd, DistillLoss.normalisedMSE(student: s.data, teacher: t.data, B: B, H: Hs, weight: o.pkd, ds: d.data))
                let g = grad(.hidden(m), T * Hs)
                for (b, start) in sa.starts.enumerated() { for j in 0..<Hs { g[start * Hs + j] += d[b * Hs + j] } }
            }
        }
        if o.cosine > 0 {
            let (M, N) = (student.spec.layers.count, teacher.spec.layers.count)
            add("cosine", o.cosine, DistillLoss.cosine(student: sa.hidden(M), teacher: ta.hidden(N), T: T, H: Hs, weight: o.cosine, ds: grad(.hidden(M), T * Hs)))
        }
        if o.softCE > 0 || o.logitsMSE > 0 || o.hard > 0 {
            let g = grad(.logits, B * C)
            if o.softCE > 0 {
                add("soft_ce", o.softCE, DistillLoss.softCrossEntropy(student: sa.logits, teacher: ta.logits, B: B, C: C, temperature: o.temperature, weight: o.softCE, ds: g))
            }
            if o.logitsMSE > 0 { add("logits_mse", o.logitsMSE, DistillLoss.mse(student: sa.logits, teacher: ta.logits, count: B * C, weight: o.logitsMSE, ds: g)) }
            if o.hard > 0, let targets {
                add("hard", o.hard, DistillLoss.hard(student: sa.logits, targets: Targets(indices.map { targets[$0] }, regression: C == 1), B: B, C: C,
                                                     weight: o.hard, ds: g))
            }
        }
        student.clearLogitGradient(sa)
        student.backward(sa, batch: batch, extra: extra.mapValues { UnsafePointer($0.data) })
        return (total, terms, batch.lengths.reduce(0) { $0 + Int($1) })
    }

    /// The student's dev score on the task (nil in general distillation).
    public func evaluate() throws -> TaskResult? { try dev?.score(student.store!) }
}

extension DistillStep {
    /// Recovery of a compressed model against the model it came from (pruning, ALBERT): the task's
    /// training set (the first `options.limit` examples), `objective` between the frozen `teacher`
    /// and `student` (trained in place), run by the `Trainer` in `work` (removed afterwards);
    /// `augment` > 0 adds that many augmented copies of each example (`Augmenter`, neighbours from
    /// the teacher's word table). Returns the trainer's record (epochs with dev scores, loss terms).
    public static func recover(_ student: ParameterStore, from teacher: ParameterStore, objective: DistillObjective, dev: DevSet, glue: URL,
                               tokenizer: WordPieceTokenizer, maxLength: Int, options: TrainOptions, augment: Int = 0, work: URL) throws -> [String: Any] {
        var train = try dev.task.load(.train, from: glue)
        if let n = options.limit { train = Array(train.prefix(n)) }
        if augment > 0 {
            let texts = train.flatMap { [$0.textA] + ($0.textB.map { [$0] } ?? []) }
            let augmenter = Augmenter(tokenizer: tokenizer, table: teacher.view(teacher.spec.family.names.word).value,
                                      width: teacher.spec.embedding, texts: texts)
            let n = train.count
            train = augmenter.augment(train, copies: augment, cap: 200_000, seed: options.seed)
            log("recovery set: \(n) examples + \(train.count - n) augmented copies (neighbours of \(augmenter.neighbours.count) words)")
        }
        let step = try DistillStep(teacher: teacher, student: student, objective: objective,
                                   examples: train.map { tokenizer.encode($0.textA, $0.textB, maxLength: maxLength) },
                                   targets: train.map(\.labelValue), dev: dev, seed: options.seed)
        let trainer = try Trainer(step, options: options, out: work)
        let progress = Progress("recovery")
        try trainer.run(log: { log("recovery " + $0) }, progress: { progress.update($0, $1) })
        try? FileManager.default.removeItem(at: work)
        return trainer.record
    }
}
