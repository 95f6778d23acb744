import Foundation

/// One adapter per Hugging Face `model_type`: config.json ⇄ `ModelSpec`, and the only table of HF
/// tensor names in the zoo. Tensor names are the `*ForSequenceClassification` ones (with the family
/// prefix, e.g. `bert.`); base-model checkpoints (`BertModel`, …) store them without it.
public enum HFFamily: String, Codable, CaseIterable {
    case bert, distilbert, albert

    /// The names of one parameter group's tensors (prefixes: `<p>.weight`, `<p>.bias`).
    public struct LayerNames {
        public let query, key, value, attentionOut, attentionNorm, up, down, outputNorm: String
        /// Every tensor of the group, `.weight` and `.bias` of each prefix.
        public var tensors: [String] {
            [query, key, value, attentionOut, attentionNorm, up, down, outputNorm].flatMap { [$0 + ".weight", $0 + ".bias"] }
        }
    }

    /// Where each tensor of the description lives in an HF checkpoint.
    public struct Names {
        public let prefix: String                  // dropped in base-model checkpoints
        public let word, position: String          // full tensor names
        public let tokenType: String?
        public let embeddingNorm: String           // LayerNorm prefix
        public let projection: String?             // ALBERT's E→H Linear
        public let layer: (Int) -> LayerNames      // by parameter group
        public let pooler: String                  // BERT/ALBERT pooler; DistilBERT pre_classifier
        public let classifier: String
    }

    public var names: Names {
        switch self {
        case .bert:
            return Names(prefix: "bert.", word: "bert.embeddings.word_embeddings.weight", position: "bert.embeddings.position_embeddings.weight",
                         tokenType: "bert.embeddings.token_type_embeddings.weight", embeddingNorm: "bert.embeddings.LayerNorm", projection: nil,
                         layer: { i in
                             let p = "bert.encoder.layer.\(i)."
                             return LayerNames(query: p + "attention.self.query", key: p + "attention.self.key", value: p + "attention.self.value",
                                               attentionOut: p + "attention.output.dense", attentionNorm: p + "attention.output.LayerNorm",
                                               up: p + "intermediate.dense", down: p + "output.dense", outputNorm: p + "output.LayerNorm")
                         }, pooler: "bert.pooler.dense", classifier: "classifier")
        case .distilbert:
            return Names(prefix: "distilbert.", word: "distilbert.embeddings.word_embeddings.weight",
                         position: "distilbert.embeddings.position_embeddings.weight", tokenType: nil,
                         embeddingNorm: "distilbert.embeddings.LayerNorm", projection: nil,
                         layer: { i in
                             let p = "distilbert.transformer.layer.\(i)."
                             return LayerNames(query: p + "attention.q_lin", key: p + "attention.k_lin", value: p + "attention.v_lin",
                                               attentionOut: p + "attention.out_lin", attentionNorm: p + "sa_layer_norm",
                                               up: p + "ffn.lin1", down: p + "ffn.lin2", outputNorm: p + "output_layer_norm")
                         }, pooler: "pre_classifier", classifier: "classifier")
        case .albert:
            return Names(prefix: "albert.", word: "albert.embeddings.word_embeddings.weight", position: "albert.embeddings.position_embeddings.weight",
                         tokenType: "albert.embeddings.token_type_embeddings.weight", embeddingNorm: "albert.embeddings.LayerNorm",
                         projection: "albert.encoder.embedding_hidden_mapping_in",
                         layer: { g in
                             let p = "albert.encoder.albert_layer_groups.\(g).albert_layers.0."
                             return LayerNames(query: p + "attention.query", key: p + "attention.key", value: p + "attention.value",
                                               attentionOut: p + "attention.dense", attentionNorm: p + "attention.LayerNorm",
                                               up: p + "ffn", down: p + "ffn_output", outputNorm: p + "full_layer_layer_norm")
                         }, pooler: "albert.pooler", classifier: "classifier")
        }
    }

    /// The HF class a fine-tuned checkpoint of this family is loaded with.
    public var classifierArchitecture: String {
        switch self {
        case .bert: return "BertForSequenceClassification"
        case .distilbert: return "DistilBertForSequenceClassification"
        case .albert: return "AlbertForSequenceClassification"
        }
    }

    // MARK: config.json → ModelSpec

    /// Reads and validates a config.json (head: none; `Checkpoint` adds the head its tensors have).
    public static func spec(configAt url: URL) throws -> ModelSpec {
        guard let data = readFile(url) else {
            throw ZooError.badFile(path: url.path, problem: "cannot read file (missing or unreadable)")
        }
        guard let obj = try? JSONSerialization.jsonObject(with: data), let dict = obj as? [String: Any] else {
            throw ZooError.badFile(path: url.path, problem: "invalid JSON")
        }
        let type = dict["model_type"] as? String ?? "bert"
        guard let family = HFFamily(rawValue: type) else {
            throw ZooError.badFile(path: url.path, problem: "model_type '\(type)' is not supported (the zoo reads \(allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let spec = try family.spec(ConfigReader(dict: dict, path: url.path))
        try spec.validate(path: url.path)
        return spec
    }

    func spec(_ c: ConfigReader) throws -> ModelSpec {
        switch self {
        case .bert:
            let H = try c.int("hidden_size"), n = try c.int("num_hidden_layers", max: ConfigReader.maxLayers), heads = try c.int("num_attention_heads")
            guard heads > 0, H % heads == 0 else { throw c.bad("hidden_size \(H) is not divisible by num_attention_heads \(heads)") }
            try c.absolutePositions()
            let act = try c.activation("hidden_act", default: "gelu")
            // The zoo's own field: per-layer FFN widths after neuron pruning (HF's BERT has one
            // intermediate_size, which then holds the width before pruning).
            let full = try c.int("intermediate_size"), ffn = try c.intList("zoo_intermediate_sizes", count: n) ?? [Int](repeating: full, count: n)
            let pruned = try c.prunedHeads(layers: n, heads: heads)
            let hidden = try c.double("hidden_dropout_prob", default: 0.1)
            return ModelSpec(family: .bert, vocab: try c.int("vocab_size"), embedding: H, positions: try c.int("max_position_embeddings", default: 512),
                             types: try c.int("type_vocab_size", default: 2), hidden: H,
                             layers: (0..<n).map { i in
                                 .init(heads: heads - pruned[i].count, headDim: H / heads, ffn: ffn[i], activation: act, group: i, prunedHeads: pruned[i],
                                       prunedNeurons: max(0, full - ffn[i]))
                             },
                             head: .none, numLabels: 0, layerNormEps: Float(try c.double("layer_norm_eps", default: 1e-12)),
                             hiddenDropout: Float(hidden), attentionDropout: Float(try c.double("attention_probs_dropout_prob", default: 0.1)),
                             classifierDropout: Float(try c.optionalDouble("classifier_dropout") ?? hidden))
        case .distilbert:
            let H = try c.int("dim"), n = try c.int("n_layers", max: ConfigReader.maxLayers), heads = try c.int("n_heads")
            guard heads > 0, H % heads == 0 else { throw c.bad("dim \(H) is not divisible by n_heads \(heads)") }
            let act = try c.activation("activation", default: "gelu"), ffn = try c.int("hidden_dim", default: 4 * H)
            return ModelSpec(family: .distilbert, vocab: try c.int("vocab_size"), embedding: H, positions: try c.int("max_position_embeddings", default: 512),
                             types: 0, hidden: H,
                             layers: (0..<n).map { .init(heads: heads, headDim: H / heads, ffn: ffn, activation: act, group: $0) },
                             head: .none, numLabels: 0, layerNormEps: 1e-12,   // DistilBERT's LayerNorms use eps 1e-12, not a config field
                             hiddenDropout: Float(try c.double("dropout", default: 0.1)),
                             attentionDropout: Float(try c.double("attention_dropout", default: 0.1)),
                             classifierDropout: Float(try c.double("seq_classif_dropout", default: 0.2)))
        case .albert:
            let H = try c.int("hidden_size"), n = try c.int("num_hidden_layers", max: ConfigReader.maxLayers), heads = try c.int("num_attention_heads")
            let groups = try c.int("num_hidden_groups", default: 1, max: ConfigReader.maxLayers)
            guard heads > 0, H % heads == 0 else { throw c.bad("hidden_size \(H) is not divisible by num_attention_heads \(heads)") }
            guard try c.int("inner_group_num", default: 1) == 1 else { throw c.bad("inner_group_num other than 1 is not supported") }
            guard groups >= 1, groups <= n else { throw c.bad("num_hidden_groups \(groups) must be in 1...num_hidden_layers (\(n))") }
            try c.absolutePositions()
            let act = try c.activation("hidden_act", default: "gelu_new")
            let ffn = try c.int("intermediate_size")
            return ModelSpec(family: .albert, vocab: try c.int("vocab_size"), embedding: try c.int("embedding_size", default: 128),
                             positions: try c.int("max_position_embeddings", default: 512), types: try c.int("type_vocab_size", default: 2), hidden: H,
                             // HF: layer i runs group int(i / (num_hidden_layers / num_hidden_groups)).
                             layers: (0..<n).map { i in .init(heads: heads, headDim: H / heads, ffn: ffn, activation: act, group: Int(Double(i) / (Double(n) / Double(groups)))) },
                             head: .none, numLabels: 0, layerNormEps: Float(try c.double("layer_norm_eps", default: 1e-12)),
                             hiddenDropout: Float(try c.double("hidden_dropout_prob", default: 0)),
                             attentionDropout: Float(try c.double("attention_probs_dropout_prob", default: 0)),
                             classifierDropout: Float(try c.double("classifier_dropout_prob", default: 0.1)))
        }
    }

    // MARK: ModelSpec → config.json

    /// A float field as the shortest decimal that reads back as the same Float (1e-12, 0.1 — not
    /// 9.999999960041972e-13), so config.json reads as written and prints alike on every platform.
    func decimal(_ x: Float) -> Double { Double("\(x)") ?? Double(x) }

    /// The config.json of `spec`, over the fields of `base` (the source checkpoint's config, whose
    /// other fields are kept).
    public func config(_ spec: ModelSpec, base: [String: Any] = [:]) -> [String: Any] {
        var c = base
        c["model_type"] = rawValue
        c["vocab_size"] = spec.vocab
        c["max_position_embeddings"] = spec.positions
        let l0 = spec.layers[0]
        let hfAct: String = l0.activation == .geluTanh ? "gelu_new" : l0.activation.rawValue
        switch self {
        case .bert:
            let heads = l0.heads + l0.prunedHeads.count
            c["hidden_size"] = spec.hidden
            c["num_hidden_layers"] = spec.layers.count
            c["num_attention_heads"] = heads
            // FFN neurons removed: the widths go into `zoo_intermediate_sizes` and `intermediate_size`
            // keeps the width before pruning (so transformers refuses the file instead of misreading it).
            let widths = spec.layers.map(\.ffn)
            if Set(widths).count > 1 || spec.layers.contains(where: { $0.prunedNeurons > 0 }) {
                c["zoo_intermediate_sizes"] = widths
                c["intermediate_size"] = spec.layers.map { $0.ffn + $0.prunedNeurons }.max()!
            } else {
                c["zoo_intermediate_sizes"] = nil
                c["intermediate_size"] = widths[0]
            }
            let pruned = spec.layers.enumerated().filter { !$0.element.prunedHeads.isEmpty }
            c["pruned_heads"] = pruned.isEmpty ? nil : Dictionary(uniqueKeysWithValues: pruned.map { ("\($0.offset)", $0.element.prunedHeads) })
            c["hidden_act"] = hfAct
            c["type_vocab_size"] = spec.types
            c["layer_norm_eps"] = decimal(spec.layerNormEps)
            c["hidden_dropout_prob"] = decimal(spec.hiddenDropout)
            c["attention_probs_dropout_prob"] = decimal(spec.attentionDropout)
        case .distilbert:
            // A student written over a BERT teacher's config: its BERT-named fields would alias dim,
            // n_layers and n_heads in transformers' DistilBertConfig, so they go.
            for k in ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act", "type_vocab_size",
                      "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "pruned_heads", "zoo_intermediate_sizes"] { c[k] = nil }
            c["dim"] = spec.hidden
            c["n_layers"] = spec.layers.count
            c["n_heads"] = l0.heads
            c["hidden_dim"] = l0.ffn
            c["activation"] = hfAct
            c["dropout"] = decimal(spec.hiddenDropout)
            c["attention_dropout"] = decimal(spec.attentionDropout)
            c["seq_classif_dropout"] = decimal(spec.classifierDropout)
        case .albert:
            c["embedding_size"] = spec.embedding
            c["hidden_size"] = spec.hidden
            c["num_hidden_layers"] = spec.layers.count
            c["num_hidden_groups"] = spec.groups.count
            c["inner_group_num"] = 1
            c["num_attention_heads"] = l0.heads
            c["intermediate_size"] = l0.ffn
            c["hidden_act"] = hfAct
            c["type_vocab_size"] = spec.types
            c["layer_norm_eps"] = decimal(spec.layerNormEps)
            c["hidden_dropout_prob"] = decimal(spec.hiddenDropout)
            c["attention_probs_dropout_prob"] = decimal(spec.attentionDropout)
            c["classifier_dropout_prob"] = decimal(spec.classifierDropout)
        }
        return c
    }
}

/// Typed reads of config.json fields, each failure naming the file and the field.
struct ConfigReader {
    let dict: [String: Any]
    let path: String

    func bad(_ m: String) -> ZooError { .badFile(path: path, problem: m) }

    /// Every integer field is a size: 0...maxSize (2^24), layer counts 0...maxLayers, so that the
    /// model's sizes and parameter counts cannot overflow.
    static let maxSize = 1 << 24, maxLayers = 1024

    func int(_ key: String, default d: Int? = nil, max: Int = maxSize) throws -> Int {
        guard let v = dict[key], !(v is NSNull) else {
            if let d { return d }
            throw bad("missing field '\(key)'")
        }
        return try size(v, key, max: max)
    }

    func size(_ v: Any, _ key: String, max: Int = maxSize) throws -> Int {
        guard let n = v as? NSNumber, n.doubleValue == n.doubleValue.rounded() else {
            throw bad("field '\(key)' has the wrong type (expected an integer)")
        }
        guard n.doubleValue >= 0, n.doubleValue <= Double(max) else { throw bad("field '\(key)' is \(n), outside 0...\(max)") }
        return n.intValue
    }

    /// The real-valued fields (dropout probabilities, LayerNorm epsilon) are all in 0...1.
    func optionalDouble(_ key: String) throws -> Double? {
        guard let v = dict[key], !(v is NSNull) else { return nil }
        guard let n = v as? NSNumber else { throw bad("field '\(key)' has the wrong type (expected a number)") }
        guard (0...1).contains(n.doubleValue) else { throw bad("field '\(key)' is \(n), outside 0...1") }
        return n.doubleValue
    }

    func double(_ key: String, default d: Double) throws -> Double { try optionalDouble(key) ?? d }

    func intList(_ key: String, count: Int) throws -> [Int]? {
        guard let v = dict[key], !(v is NSNull) else { return nil }
        guard let a = v as? [Any], a.count == count else { throw bad("field '\(key)' must be a list of \(count) integers") }
        return try a.map { try size($0, key) }
    }

    func activation(_ key: String, default d: String) throws -> Activation {
        let name = dict[key] as? String ?? d
        guard let a = Activation(hf: name) else {
            throw bad("\(key) '\(name)' is not supported (the zoo implements gelu, gelu_new / gelu_pytorch_tanh and relu)")
        }
        return a
    }

    func absolutePositions() throws {
        if let t = dict["position_embedding_type"] as? String, t != "absolute" {
            throw bad("position_embedding_type '\(t)' is not supported (only absolute)")
        }
    }

    /// HF's `pruned_heads`: {"layer": [original head indices]} → per layer, sorted.
    func prunedHeads(layers: Int, heads: Int) throws -> [[Int]] {
        var out = [[Int]](repeating: [], count: layers)
        guard let v = dict["pruned_heads"], !(v is NSNull) else { return out }
        guard let d = v as? [String: Any] else { throw bad("field 'pruned_heads' must map layer indices to lists of heads") }
        for (k, list) in d {
            guard let l = Int(k), (0..<layers).contains(l), let hs = (list as? [NSNumber])?.map(\.intValue),
                  hs.allSatisfy({ (0..<heads).contains($0) }), Set(hs).count == hs.count else {
                throw bad("pruned_heads entry '\(k)': expected a layer in 0..<\(layers) and distinct heads in 0..<\(heads)")
            }
            out[l] = hs.sorted()
        }
        return out
    }
}
