import CKernels
import Foundation

/// Every parameter of a model described by a `ModelSpec`, in one flat buffer under its HF name
/// (so AdamW, clipping and checkpoints see one array), with a gradient buffer of the same layout
/// unless the model is frozen. Tied layers (ALBERT) are one parameter group: stored once, and the
/// layers that share it accumulate into the same gradients. Q, K and V of a group sit next to each
/// other, so they form the fused [3A, H] projection the attention kernels expect.
public final class ParameterStore: WeightReader {
    /// The model whose layout the store holds (nil for named tensors outside any model's layout).
    public let spec: ModelSpec!
    public let values: Tensor
    public let grads: Tensor?                // nil: frozen (a distillation teacher)
    public let slots: [Slot]
    private let index: [String: Int]

    public struct Slot {
        public let name: String              // HF name (`*ForSequenceClassification` naming)
        public let offset: Int
        public let shape: [Int]
        public let decay: Bool               // AdamW weight decay (not for biases and LayerNorm)
        public var count: Int { shape.reduce(1, *) }
    }

    public convenience init(spec: ModelSpec, trainable: Bool = true) {
        self.init(spec: spec, slots: Self.layout(spec), trainable: trainable)
    }

    /// Named tensors outside any model's layout (a distillation's projections, the distilled
    /// BiLSTM), initialised to zero.
    public convenience init(tensors: [(name: String, shape: [Int], decay: Bool)], trainable: Bool = true) {
        var n = 0
        self.init(spec: nil, slots: tensors.map { t in defer { n += t.shape.reduce(1, *) }; return Slot(name: t.name, offset: n, shape: t.shape, decay: t.decay) },
                  trainable: trainable)
    }

    init(spec: ModelSpec?, slots: [Slot], trainable: Bool) {
        self.spec = spec
        self.slots = slots
        index = Dictionary(uniqueKeysWithValues: slots.enumerated().map { ($0.element.name, $0.offset) })
        let n = slots.map(\.count).reduce(0, +)
        values = Tensor(shape: [n])
        grads = trainable ? Tensor(shape: [n]) : nil
    }

    /// The tensors of `spec` in store order.
    static func layout(_ spec: ModelSpec) -> [Slot] {
        let names = spec.family.names
        let (E, H) = (spec.embedding, spec.hidden)
        var slots: [Slot] = [], n = 0
        func add(_ name: String, _ shape: [Int], decay: Bool) {
            slots.append(Slot(name: name, offset: n, shape: shape, decay: decay))
            n += shape.reduce(1, *)
        }
        func linear(_ p: String, _ out: Int, _ inp: Int) { add(p + ".weight", [out, inp], decay: true); add(p + ".bias", [out], decay: false) }
        func norm(_ p: String, _ width: Int) { add(p + ".weight", [width], decay: false); add(p + ".bias", [width], decay: false) }
        add(names.word, [spec.vocab, E], decay: true)
        add(names.position, [spec.positions, E], decay: true)
        if let t = names.tokenType, spec.types > 0 { add(t, [spec.types, E], decay: true) }
        norm(names.embeddingNorm, E)
        if spec.projection, let p = names.projection { linear(p, H, E) }
        for (g, l) in spec.groups.enumerated() {
            let ln = names.layer(g), A = l.attentionWidth
            for p in [ln.query, ln.key, ln.value] { add(p + ".weight", [A, H], decay: true) }
            for p in [ln.query, ln.key, ln.value] { add(p + ".bias", [A], decay: false) }
            linear(ln.attentionOut, H, A)
            norm(ln.attentionNorm, H)
            linear(ln.up, l.ffn, H)
            linear(ln.down, H, l.ffn)
            norm(ln.outputNorm, H)
        }
        if spec.head != .none {
            linear(names.pooler, H, H)
            linear(names.classifier, spec.numLabels, H)
        }
        return slots
    }

    public var count: Int { values.count }

    public func slot(_ name: String) -> Slot? { index[name].map { slots[$0] } }

    func required(_ name: String) -> Slot {
        guard let s = slot(name) else { preconditionFailure("no parameter '\(name)' in the \(spec.family) layout") }
        return s
    }

    /// The parameter `name` (values and, when trainable, gradients) in place.
    public func view(_ name: String) -> Param { view(required(name)) }

    func view(_ s: Slot, count: Int? = nil) -> Param {
        Param(value: values.data + s.offset, grad: grads.map { $0.data + s.offset }, count: count ?? s.count, owner: self)
    }

    public func zeroGrad() { if let g = grads { g.data.update(repeating: 0, count: g.count) } }

    // MARK: WeightReader: views into the store

    public func param(_ name: String, shape: [Int]) throws -> Param {
        let s = required(name)
        precondition(s.shape == shape, "\(name): shape \(s.shape), asked \(shape)")
        return view(s)
    }

    /// Stacked Linear layers must be adjacent in the store (Q, K, V are laid out so).
    public func linear(_ prefixes: [String], outFeatures: [Int], inFeatures: Int) throws -> ParamLinear {
        let w = prefixes.map { required($0 + ".weight") }, b = prefixes.map { required($0 + ".bias") }
        for i in 1..<max(prefixes.count, 1) {
            precondition(w[i].offset == w[i - 1].offset + w[i - 1].count && b[i].offset == b[i - 1].offset + b[i - 1].count, "stacked Linear not adjacent")
        }
        let n = outFeatures.reduce(0, +)
        return ParamLinear(weight: view(w[0], count: n * inFeatures), bias: view(b[0], count: n), outFeatures: n, inFeatures: inFeatures)
    }

    public func wordEmbeddings(_ name: String, shape: [Int]) throws -> WordEmbeddings {
        ParamRows(param: try param(name, shape: shape), width: shape[1])
    }

    // MARK: checkpoints

    /// Loads every tensor of the layout from a checkpoint (`*ForSequenceClassification` or base-model
    /// names). The pooler and classifier, when absent (or, for the classifier, of another label
    /// count), are initialised as HF does (normal(0, 0.02) weights, zero biases) from `seed`.
    /// Returns the names that were initialised rather than loaded.
    @discardableResult
    public func load(_ ckpt: Checkpoint, seed: UInt64) throws -> [String] {
        var rng = SplitMix64(seed: seed)
        let names = spec.family.names
        var initialised: [String] = []
        for s in slots {
            let name = ckpt.name(s.name)
            let isClassifier = s.name.hasPrefix(names.classifier + "."), isHead = isClassifier || s.name.hasPrefix(names.pooler + ".")
            let stored = ckpt.tensors.entries[name]
            if let stored, !(isClassifier && stored.shape != s.shape) {
                let t = try ckpt.tensors.tensor(name, shape: s.shape)
                (values.data + s.offset).update(from: t.data, count: s.count)
            } else if isHead {
                for i in 0..<s.count { values[s.offset + i] = s.decay ? rng.normal() * 0.02 : 0 }
                initialised.append(s.name)
            } else {
                throw ZooError.badFile(path: ckpt.tensors.path, problem: "missing tensor '\(s.name)'")
            }
        }
        return initialised
    }

    /// An HF checkpoint directory of these parameters: config.json (the family adapter's fields for
    /// this spec over `base`'s other fields, then `config`), model.safetensors, `base`'s vocab.txt.
    public func writeCheckpoint(to dir: URL, base: Checkpoint, config extra: [String: Any] = [:]) throws {
        var config = spec.family.config(spec, base: try base.configDictionary())
        if spec.head != .none { config["architectures"] = [spec.family.classifierArchitecture] }
        for (k, v) in extra { config[k] = v }
        try writeFiles([("config.json", try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])),
                        ("model.safetensors", try safetensors()), ("vocab.txt", try Data(contentsOf: base.vocabURL))], in: dir)
    }

    /// The parameters as an HF-compatible safetensors file.
    public func safetensors() throws -> Data {
        try SafeTensors.encode(slots.map { s in
            let t = Tensor(shape: s.shape)
            t.data.update(from: values.data + s.offset, count: s.count)
            return (s.name, t)
        }, metadata: ["format": "pt"])
    }
}

extension ParameterStore {
    /// Layers `layers` (0-based) of this model with its embeddings and head (when it has one), as a
    /// `family` model: DistilBERT and BERT-PKD students, and shallower teachers (`zoo study
    /// teacher-size`). DistilBERT has no token types: the type-0 row is folded into every position
    /// (exact for single sentences; a pair's second segment loses its type-1 offset, for training to
    /// recover).
    public func subset(layers: [Int], family: HFFamily) -> ParameterStore {
        let t: ModelSpec = self.spec
        var spec = t
        spec.family = family
        spec.layers = layers.enumerated().map { i, l in var layer = t.layers[l]; layer.group = i; return layer }
        if family == .distilbert { (spec.types, spec.head, spec.classifierDropout) = (0, t.head == .none ? .none : .preClassifier, 0.2) }
        let s = ParameterStore(spec: spec)
        let (tn, sn) = (t.family.names, family.names)
        func copy(_ a: String, _ b: String) {
            let v = view(a)
            s.view(b).value.update(from: v.value, count: v.count)
        }
        copy(tn.word, sn.word)
        copy(tn.position, sn.position)
        if family == .distilbert, let type = tn.tokenType {
            let p = s.view(sn.position), row = view(type).value
            for i in 0..<spec.positions { for j in 0..<spec.hidden { p.value[i * spec.hidden + j] += row[j] } }
        } else if let a = tn.tokenType, let b = sn.tokenType {
            copy(a, b)
        }
        for x in [".weight", ".bias"] {
            copy(tn.embeddingNorm + x, sn.embeddingNorm + x)
            if t.head != .none {
                copy(tn.pooler + x, sn.pooler + x)       // DistilBERT: pre_classifier starts as the pooler
                copy(tn.classifier + x, sn.classifier + x)
            }
        }
        for (i, l) in layers.enumerated() {   // the families list a layer's tensors in the same order
            for (a, b) in zip(tn.layer(l).tensors, sn.layer(i).tensors) { copy(a, b) }
        }
        return s
    }
}

extension SplitMix64 {
    /// Standard normal (Box–Muller).
    public mutating func normal() -> Float {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-300), u2 = Double(next() >> 11) / Double(1 << 53)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
    }
}
