import Foundation

/// The fields of a Hugging Face BERT `config.json` the zoo uses (names as HF writes them).
public struct BertConfig: Codable, Equatable {
    public var modelType: String = "bert"
    public var vocabSize: Int
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var intermediateSize: Int
    public var hiddenAct: String = "gelu"
    public var maxPositionEmbeddings: Int = 512
    public var typeVocabSize: Int = 2
    public var layerNormEps: Double = 1e-12
    public var hiddenDropoutProb: Double = 0.1
    public var attentionProbsDropoutProb: Double = 0.1
    public var numLabels: Int?
    public var problemType: String?
    public var id2label: [String: String]?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", vocabSize = "vocab_size", hiddenSize = "hidden_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case intermediateSize = "intermediate_size", hiddenAct = "hidden_act"
        case maxPositionEmbeddings = "max_position_embeddings", typeVocabSize = "type_vocab_size"
        case layerNormEps = "layer_norm_eps", hiddenDropoutProb = "hidden_dropout_prob"
        case attentionProbsDropoutProb = "attention_probs_dropout_prob", numLabels = "num_labels"
        case problemType = "problem_type", id2label
    }

    public init(vocabSize: Int, hiddenSize: Int, numHiddenLayers: Int, numAttentionHeads: Int, intermediateSize: Int,
                maxPositionEmbeddings: Int = 512) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.intermediateSize = intermediateSize
        self.maxPositionEmbeddings = maxPositionEmbeddings
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? "bert"
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "gelu"
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 512
        typeVocabSize = try c.decodeIfPresent(Int.self, forKey: .typeVocabSize) ?? 2
        layerNormEps = try c.decodeIfPresent(Double.self, forKey: .layerNormEps) ?? 1e-12
        hiddenDropoutProb = try c.decodeIfPresent(Double.self, forKey: .hiddenDropoutProb) ?? 0.1
        attentionProbsDropoutProb = try c.decodeIfPresent(Double.self, forKey: .attentionProbsDropoutProb) ?? 0.1
        numLabels = try c.decodeIfPresent(Int.self, forKey: .numLabels)
        problemType = try c.decodeIfPresent(String.self, forKey: .problemType)
        id2label = try c.decodeIfPresent([String: String].self, forKey: .id2label)
    }

    public var headDim: Int { hiddenSize / numAttentionHeads }

    /// Model types HF knows that have (or will have) their own plugin; until then, a clear refusal.
    static let plannedTypes = ["distilbert": "DistilBERT", "albert": "ALBERT"]

    /// Reads and validates `config.json`.
    public static func load(_ url: URL) throws -> BertConfig {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ZooError.badFile(path: url.path, problem: "cannot read file (missing or unreadable)")
        }
        guard let obj = try? JSONSerialization.jsonObject(with: data), let dict = obj as? [String: Any] else {
            throw ZooError.badFile(path: url.path, problem: "invalid JSON")
        }
        let type = dict["model_type"] as? String ?? "bert"
        if let family = plannedTypes[type] {
            throw ZooError.badFile(path: url.path, problem: "model_type '\(type)' (\(family)) is not supported yet; its plugin does not exist")
        }
        guard type == "bert" else {
            throw ZooError.badFile(path: url.path, problem: "model_type '\(type)' is not supported (expected 'bert')")
        }
        let cfg: BertConfig
        do {
            cfg = try JSONDecoder().decode(BertConfig.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw ZooError.badFile(path: url.path, problem: "missing field '\(key.stringValue)'")
        } catch let DecodingError.typeMismatch(_, ctx), let DecodingError.valueNotFound(_, ctx) {
            throw ZooError.badFile(path: url.path, problem: "field '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type")
        } catch {
            throw ZooError.badFile(path: url.path, problem: "cannot decode: \(error)")
        }
        try cfg.validate(path: url.path)
        return cfg
    }

    public func validate(path: String) throws {
        func bad(_ m: String) -> ZooError { .badFile(path: path, problem: m) }
        for (name, v) in [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("num_hidden_layers", numHiddenLayers),
                          ("num_attention_heads", numAttentionHeads), ("intermediate_size", intermediateSize),
                          ("max_position_embeddings", maxPositionEmbeddings), ("type_vocab_size", typeVocabSize)] where v < 1 {
            throw bad("field '\(name)' must be positive, got \(v)")
        }
        if hiddenSize % numAttentionHeads != 0 {
            throw bad("hidden_size \(hiddenSize) is not divisible by num_attention_heads \(numAttentionHeads)")
        }
        if !["gelu", "gelu_python"].contains(hiddenAct) {
            throw bad("hidden_act '\(hiddenAct)' is not supported (the zoo implements erf GELU, 'gelu')")
        }
    }

    public func jsonData() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try enc.encode(self)
    }
}

/// Named random-weight shapes for speed measurements (`--geometry`).
public enum Geometry: String, CaseIterable {
    case bertBase = "bert-base", minilmL6 = "minilm-l6", tinybert4l = "tinybert-4l"

    public var config: BertConfig {
        switch self {
        case .bertBase: return BertConfig(vocabSize: 30522, hiddenSize: 768, numHiddenLayers: 12, numAttentionHeads: 12, intermediateSize: 3072)
        case .minilmL6: return BertConfig(vocabSize: 30522, hiddenSize: 384, numHiddenLayers: 6, numAttentionHeads: 12, intermediateSize: 1536)
        case .tinybert4l: return BertConfig(vocabSize: 30522, hiddenSize: 312, numHiddenLayers: 4, numAttentionHeads: 12, intermediateSize: 1200)
        }
    }
}
