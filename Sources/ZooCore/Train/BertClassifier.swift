import CKernels
import Foundation

/// HF `BertForSequenceClassification`, trainable: every parameter in one flat buffer (so AdamW and
/// checkpoints see one array), gradients in a second buffer of the same layout, and a forward pass
/// that keeps what the backward pass needs. Q, K and V of a layer sit next to each other, so they
/// form the fused [3H, H] projection the attention kernels expect; `slots` maps HF names into it.
public final class BertClassifier {
    public let config: BertConfig
    public let numLabels: Int                // 1 = regression (MSE), else classification (cross-entropy)
    public let params: Tensor
    public let grads: Tensor
    public private(set) var slots: [Slot] = []

    public struct Slot {
        public let name: String              // HF name, with the `bert.` prefix of BertFor* models
        public let offset: Int
        public let shape: [Int]
        public let decay: Bool               // AdamW weight decay (not for biases and LayerNorm)
        public var count: Int { shape.reduce(1, *) }
    }

    struct Layer { var qkvW = 0, qkvB = 0, outW = 0, outB = 0, ln1G = 0, ln1B = 0, upW = 0, upB = 0, downW = 0, downB = 0, ln2G = 0, ln2B = 0 }
    var word = 0, position = 0, tokenType = 0, embG = 0, embB = 0, poolW = 0, poolB = 0, clsW = 0, clsB = 0
    var layers: [Layer] = []
    let activations = Activations()

    /// Builds the layout; parameters start at zero (`load` / `initialize` fill them).
    public init(config c: BertConfig, numLabels: Int) {
        config = c
        self.numLabels = numLabels
        let (H, I) = (c.hiddenSize, c.intermediateSize)
        var n = 0
        var slots: [Slot] = []
        func add(_ name: String, _ shape: [Int], decay: Bool? = nil) -> Int {
            let o = n
            slots.append(Slot(name: name, offset: o, shape: shape, decay: decay ?? name.hasSuffix(".weight") && !name.contains("LayerNorm")))
            n += shape.reduce(1, *)
            return o
        }
        word = add("bert.embeddings.word_embeddings.weight", [c.vocabSize, H])
        position = add("bert.embeddings.position_embeddings.weight", [c.maxPositionEmbeddings, H])
        tokenType = add("bert.embeddings.token_type_embeddings.weight", [c.typeVocabSize, H])
        embG = add("bert.embeddings.LayerNorm.weight", [H])
        embB = add("bert.embeddings.LayerNorm.bias", [H])
        for i in 0..<c.numHiddenLayers {
            let p = "bert.encoder.layer.\(i)."
            var l = Layer()
            l.qkvW = add(p + "attention.self.query.weight", [H, H])
            _ = add(p + "attention.self.key.weight", [H, H])
            _ = add(p + "attention.self.value.weight", [H, H])
            l.qkvB = add(p + "attention.self.query.bias", [H])
            _ = add(p + "attention.self.key.bias", [H])
            _ = add(p + "attention.self.value.bias", [H])
            l.outW = add(p + "attention.output.dense.weight", [H, H])
            l.outB = add(p + "attention.output.dense.bias", [H])
            l.ln1G = add(p + "attention.output.LayerNorm.weight", [H])
            l.ln1B = add(p + "attention.output.LayerNorm.bias", [H])
            l.upW = add(p + "intermediate.dense.weight", [I, H])
            l.upB = add(p + "intermediate.dense.bias", [I])
            l.downW = add(p + "output.dense.weight", [H, I])
            l.downB = add(p + "output.dense.bias", [H])
            l.ln2G = add(p + "output.LayerNorm.weight", [H])
            l.ln2B = add(p + "output.LayerNorm.bias", [H])
            layers.append(l)
        }
        poolW = add("bert.pooler.dense.weight", [H, H])
        poolB = add("bert.pooler.dense.bias", [H])
        clsW = add("classifier.weight", [numLabels, H])
        clsB = add("classifier.bias", [numLabels])
        self.slots = slots
        params = Tensor(shape: [n])
        grads = Tensor(shape: [n])
    }

    public var parameterCount: Int { params.count }

    public func slot(_ name: String) -> Slot? { slots.first { $0.name == name } }

    /// Loads every tensor a checkpoint has (BertModel names with or without `bert.`); the pooler and
    /// classifier, when absent, are initialised as HF does (normal(0, 0.02) weights, zero biases),
    /// from `seed`. Returns the names that were initialised rather than loaded.
    @discardableResult
    public func load(_ st: SafeTensors, seed: UInt64) throws -> [String] {
        var rng = SplitMix64(seed: seed)
        var initialised: [String] = []
        for s in slots {
            let candidates = [s.name, String(s.name.dropFirst(s.name.hasPrefix("bert.") ? 5 : 0))]
            if let name = candidates.first(where: { st.entries[$0] != nil }) {
                let t = try st.tensor(name, shape: s.shape)
                (params.data + s.offset).update(from: t.data, count: s.count)
            } else if s.name.hasPrefix("bert.pooler") || s.name.hasPrefix("classifier") {
                for i in 0..<s.count { params[s.offset + i] = s.decay ? rng.normal() * 0.02 : 0 }
                initialised.append(s.name)
            } else {
                throw ZooError.badFile(path: st.path, problem: "missing tensor '\(s.name)'")
            }
        }
        return initialised
    }

    /// Writes the parameters as an HF-compatible safetensors file (`BertForSequenceClassification` names).
    public func save(to url: URL) throws {
        try SafeTensors.write(slots.map { s in
            let t = Tensor(shape: s.shape)
            t.data.update(from: params.data + s.offset, count: s.count)
            return (s.name, t)
        }, metadata: ["format": "pt"], to: url)
    }
}

extension SplitMix64 {
    /// Standard normal (Box–Muller).
    public mutating func normal() -> Float {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-300), u2 = Double(next() >> 11) / Double(1 << 53)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
    }
}
