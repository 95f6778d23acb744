import CKernels
import Foundation

/// The model description every forward reads (training and inference alike): the shapes of the
/// embeddings, of each layer and of the task head, and which layers share their parameters.
/// A family adapter (`HFFamily`, HFAdapters.swift) builds it from a checkpoint's config.json and
/// writes it back; nothing else knows a family's config fields or tensor names.
public struct ModelSpec: Codable, Equatable {
    public var family: HFFamily
    public var vocab: Int
    public var embedding: Int                // E: width of the embedding tables (ALBERT: E < H, then a projection E→H)
    public var positions: Int
    public var types: Int                    // token-type table rows; 0 = none (DistilBERT)
    public var hidden: Int                   // H
    public var layers: [Layer]               // executed in order; layers with the same `group` share one set of weights
    public var head: Head
    public var numLabels: Int                // classifier outputs (1 = regression); 0 without a head
    public var layerNormEps: Float
    public var hiddenDropout: Float
    public var attentionDropout: Float
    public var classifierDropout: Float

    public struct Layer: Codable, Equatable {
        public var heads: Int
        public var headDim: Int
        public var ffn: Int                  // intermediate width
        public var activation: Activation
        public var group: Int                // parameter group (ALBERT: shared; otherwise the layer's own index)
        public var prunedHeads: [Int] = []   // BERT `pruned_heads`: original indices of removed heads
        public var prunedNeurons = 0         // FFN neurons removed (the width before pruning: ffn + prunedNeurons)
        public var attentionWidth: Int { heads * headDim }

        public init(heads: Int, headDim: Int, ffn: Int, activation: Activation = .gelu, group: Int, prunedHeads: [Int] = [], prunedNeurons: Int = 0) {
            (self.heads, self.headDim, self.ffn, self.activation, self.group) = (heads, headDim, ffn, activation, group)
            (self.prunedHeads, self.prunedNeurons) = (prunedHeads, prunedNeurons)
        }
    }

    /// The task head on the [CLS] state.
    public enum Head: String, Codable {
        case none
        case pooler          // BERT, ALBERT: classifier(dropout(tanh(pooler(cls))))
        case preClassifier   // DistilBERT: classifier(dropout(relu(pre_classifier(cls))))
    }

    /// True when the embeddings are narrower than the layers (ALBERT's factorised embedding).
    public var projection: Bool { embedding != hidden }

    /// One layer description per parameter group, in group order.
    public var groups: [Layer] {
        var seen: [Int: Layer] = [:]
        for l in layers where seen[l.group] == nil { seen[l.group] = l }
        return seen.keys.sorted().map { seen[$0]! }
    }

    /// Parameters stored, shared weights counted once.
    public var parameterCount: Int {
        let (E, H) = (embedding, hidden)
        var n = (vocab + positions + types) * E + 2 * E
        if projection { n += H * E + H }
        for l in groups {
            let A = l.attentionWidth
            n += 3 * (A * H + A) + (H * A + H) + 2 * H + (l.ffn * H + l.ffn) + (H * l.ffn + H) + 2 * H
        }
        if head != .none { n += H * H + H + numLabels * H + numLabels }
        return n
    }

    /// Floating-point operations of one encoder forward over `batch` sequences of `seq` tokens
    /// (2 per multiply-add; each executed layer counted, shared or not).
    public func flops(batch B: Int, seq S: Int) -> Double {
        let T = Double(B * S), H = Double(hidden)
        var f = projection ? 2 * T * Double(embedding) * H : 0
        for l in layers {
            let A = Double(l.attentionWidth), F = Double(l.ffn)
            f += 2 * T * (3 * A * H + A * H + 2 * H * F) + 2 * 2 * Double(B) * Double(S) * Double(S) * A
        }
        return f
    }

    /// The same model with a classification head of `numLabels` outputs (the family's kind of head).
    public func withHead(numLabels: Int) -> ModelSpec {
        var s = self
        s.head = family == .distilbert ? .preClassifier : .pooler
        s.numLabels = numLabels
        return s
    }

    /// A uniform BERT (`Geometry`, tests).
    public static func bert(vocab: Int = 30522, hidden: Int, layers: Int, heads: Int, ffn: Int, positions: Int = 512) -> ModelSpec {
        ModelSpec(family: .bert, vocab: vocab, embedding: hidden, positions: positions, types: 2, hidden: hidden,
                  layers: (0..<layers).map { Layer(heads: heads, headDim: hidden / heads, ffn: ffn, group: $0) },
                  head: .none, numLabels: 0, layerNormEps: 1e-12, hiddenDropout: 0.1, attentionDropout: 0.1, classifierDropout: 0.1)
    }

    func validate(path: String) throws {
        func bad(_ m: String) -> ZooError { .badFile(path: path, problem: m) }
        for (name, v) in [("vocabulary size", vocab), ("embedding width", embedding), ("max positions", positions), ("hidden size", hidden),
                          ("layer count", layers.count)] where v < 1 {
            throw bad("\(name) must be positive, got \(v)")
        }
        for (i, l) in layers.enumerated() {
            if l.heads < 1 { throw bad("layer \(i) has no attention heads left (all pruned); not supported") }
            if l.headDim < 1 || l.ffn < 1 { throw bad("layer \(i): head size \(l.headDim) and FFN width \(l.ffn) must be positive") }
        }
    }
}

/// FFN activation (HF `hidden_act`, DistilBERT `activation`). Raw values are the zoo's spelling.
public enum Activation: String, Codable {
    case gelu                      // erf form (HF "gelu")
    case geluTanh = "gelu_new"     // tanh approximation (HF "gelu_new", "gelu_pytorch_tanh"; ALBERT's default)
    case relu

    /// HF's names for the activations the zoo implements.
    public init?(hf name: String) {
        switch name {
        case "gelu", "gelu_python": self = .gelu
        case "gelu_new", "gelu_pytorch_tanh": self = .geluTanh
        case "relu": self = .relu
        default: return nil
        }
    }

    /// The CKernels `ZK_ACT_*` code.
    public var code: Int32 {
        switch self {
        case .gelu: return Int32(ZK_ACT_GELU)
        case .geluTanh: return Int32(ZK_ACT_GELU_TANH)
        case .relu: return Int32(ZK_ACT_RELU)
        }
    }
}

/// Named random-weight shapes for speed measurements (`--geometry`).
public enum Geometry: String, CaseIterable {
    case bertBase = "bert-base", bertLarge = "bert-large", minilmL6 = "minilm-l6", tinybert4l = "tinybert-4l"

    public var spec: ModelSpec {
        switch self {
        case .bertBase: return .bert(hidden: 768, layers: 12, heads: 12, ffn: 3072)
        case .bertLarge: return .bert(hidden: 1024, layers: 24, heads: 16, ffn: 4096)
        case .minilmL6: return .bert(hidden: 384, layers: 6, heads: 12, ffn: 1536)
        case .tinybert4l: return .bert(hidden: 312, layers: 4, heads: 12, ffn: 1200)
        }
    }
}
