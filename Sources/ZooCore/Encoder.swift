import CKernels
import Foundation

/// A Linear layer y = x·Wᵀ + b as a variant stores and computes it (fp32 packed, int8, …).
public protocol LinearLayer {
    var outFeatures: Int { get }
    var inFeatures: Int { get }
    var bias: Tensor { get }
    /// out[rows, outFeatures] = inp[rows, inFeatures]·Wᵀ (+ b unless `withBias` is false: the bias is
    /// then left to a fused epilogue), then GELU when `gelu`.
    func forward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, rows: Int, withBias: Bool, gelu: Bool)
}

extension LinearLayer {
    public var parameterCount: Int { outFeatures * inFeatures + bias.count }
}

/// A word-embedding table as a variant stores it.
public protocol WordEmbeddings {
    var count: Int { get }
    /// dst[i] = the embedding of ids[i], as float32.
    func gather(_ ids: UnsafeBufferPointer<Int32>, into dst: UnsafeMutablePointer<Float>) throws
}
extension RowTable: WordEmbeddings {}

/// Weights of one encoder layer. Q/K/V are fused into one [3H, H] projection.
public struct EncoderLayer<L: LinearLayer> {
    let qkv: L, out: L                    // [3H, H], [H, H]
    let ln1G: Tensor, ln1B: Tensor
    let up: L, down: L                    // [I, H], [H, I]
    let ln2G: Tensor, ln2B: Tensor

    var parameterCount: Int { qkv.parameterCount + out.parameterCount + up.parameterCount + down.parameterCount + 2 * ln1G.count + 2 * ln2G.count }
}

/// How a variant reads its encoder weights from a checkpoint (HF `BertModel` names): Linear layers
/// (several HF layers fused by rows, e.g. query|key|value), word embeddings, and small tables.
public protocol EncoderWeightReader {
    associatedtype L: LinearLayer
    /// The Linear layers named `prefixes` (each `<prefix>.weight` [rows, inFeatures] and `<prefix>.bias`) stacked by rows.
    func linear(_ prefixes: [String], outFeatures: [Int], inFeatures: Int) throws -> L
    func wordEmbeddings(_ name: String, shape: [Int]) throws -> WordEmbeddings
    /// A float32 tensor (position/type tables, LayerNorm, biases).
    func tensor(_ name: String, shape: [Int]) throws -> Tensor
}

/// The BERT encoder every variant runs: embeddings, then per layer fused-QKV attention and FFN with
/// post-LayerNorm residuals. Variants differ in how they store and multiply (`L`).
public final class Encoder<L: LinearLayer>: ChunkedModel {
    public let config: BertConfig
    let word: WordEmbeddings
    let position: Tensor, tokenType: Tensor, embG: Tensor, embB: Tensor
    public let layers: [EncoderLayer<L>]
    private var workspace = Workspace()

    public var parameterCount: Int {
        let n = word.count + position.count + tokenType.count + embG.count + embB.count
        return n + layers.map(\.parameterCount).reduce(0, +)
    }

    /// Loads HF `BertModel` / `BertFor*` weights (with or without the `bert.` prefix) through `reader`,
    /// checking every shape against config.json.
    public init<R: EncoderWeightReader>(checkpoint: Checkpoint, reader: R) throws where R.L == L {
        let c = checkpoint.config
        let p = checkpoint.tensors.entries["bert.embeddings.word_embeddings.weight"] != nil ? "bert." : ""
        let (H, I) = (c.hiddenSize, c.intermediateSize)
        func t(_ name: String, _ shape: [Int]) throws -> Tensor { try reader.tensor(p + name, shape: shape) }
        config = c
        word = try reader.wordEmbeddings(p + "embeddings.word_embeddings.weight", shape: [c.vocabSize, H])
        position = try t("embeddings.position_embeddings.weight", [c.maxPositionEmbeddings, H])
        tokenType = try t("embeddings.token_type_embeddings.weight", [c.typeVocabSize, H])
        embG = try t("embeddings.LayerNorm.weight", [H])
        embB = try t("embeddings.LayerNorm.bias", [H])
        layers = try (0..<c.numHiddenLayers).map { i in
            let l = p + "encoder.layer.\(i)."
            return EncoderLayer(
                qkv: try reader.linear(["query", "key", "value"].map { l + "attention.self.\($0)" }, outFeatures: [H, H, H], inFeatures: H),
                out: try reader.linear([l + "attention.output.dense"], outFeatures: [H], inFeatures: H),
                ln1G: try reader.tensor(l + "attention.output.LayerNorm.weight", shape: [H]),
                ln1B: try reader.tensor(l + "attention.output.LayerNorm.bias", shape: [H]),
                up: try reader.linear([l + "intermediate.dense"], outFeatures: [I], inFeatures: H),
                down: try reader.linear([l + "output.dense"], outFeatures: [H], inFeatures: I),
                ln2G: try reader.tensor(l + "output.LayerNorm.weight", shape: [H]),
                ln2B: try reader.tensor(l + "output.LayerNorm.bias", shape: [H]))
        }
    }

    /// Random weights of a given shape (uniform, small; LayerNorm gains 1), for speed measurements.
    /// `linear(weight, bias)` turns an fp32 weight into the variant's layer.
    public init(randomWith c: BertConfig, seed: UInt64, linear: (Tensor, Tensor) -> L) {
        var rng = SplitMix64(seed: seed)
        func r(_ shape: [Int], scale: Float = 0.02) -> Tensor {
            let t = Tensor(shape: shape)
            for i in 0..<t.count { t.data[i] = rng.symmetric() * scale }
            return t
        }
        func ones(_ n: Int) -> Tensor { Tensor(shape: [n], values: [Float](repeating: 1, count: n)) }
        let (H, I) = (c.hiddenSize, c.intermediateSize)
        config = c
        word = RowTable.memory(r([c.vocabSize, H])); position = r([c.maxPositionEmbeddings, H]); tokenType = r([c.typeVocabSize, H])
        embG = ones(H); embB = r([H])
        layers = (0..<c.numHiddenLayers).map { _ in
            EncoderLayer(qkv: linear(r([3 * H, H]), r([3 * H])), out: linear(r([H, H]), r([H])),
                         ln1G: ones(H), ln1B: r([H]), up: linear(r([I, H]), r([I])),
                         down: linear(r([H, I]), r([H])), ln2G: ones(H), ln2B: r([H]))
        }
    }

    /// Sequences are run through all layers in chunks of at most `chunkTokens` tokens, so the
    /// activation buffers stay small (and in cache) whatever the batch size. Each chunk streams all
    /// weights once, so wide models take larger chunks (measured with `zoo bench`: 256 tokens is
    /// fastest for MiniLM-L6 and tinybert, 1024 for bert-base).
    public lazy var chunkTokens = config.hiddenSize >= 768 ? 1024 : 256

    public func forward(_ batch: Batch) throws -> Tensor {
        let c = config
        let (B, S, H) = (batch.size, batch.seqLen, c.hiddenSize)
        guard S <= c.maxPositionEmbeddings else {
            throw ZooError.usage("sequence length \(S) exceeds max_position_embeddings \(c.maxPositionEmbeddings)")
        }
        if let bad = batch.inputIds.first(where: { $0 < 0 || Int($0) >= c.vocabSize }) {
            throw ZooError.usage("token id \(bad) is outside the vocabulary (\(c.vocabSize))")
        }
        if let bad = batch.tokenTypeIds.first(where: { $0 < 0 || Int($0) >= c.typeVocabSize }) {
            throw ZooError.usage("token type id \(bad) is outside type_vocab_size (\(c.typeVocabSize))")
        }
        let out = Tensor(shape: [B * S, H])
        let perChunk = max(1, chunkTokens / max(S, 1))
        for b0 in stride(from: 0, to: B, by: perChunk) {
            let n = min(perChunk, B - b0)
            try encode(batch, sequences: b0..<(b0 + n), into: out.data + b0 * S * H)
        }
        return out
    }

    /// Runs sequences `range` of the batch through the encoder, writing their last hidden states.
    private func encode(_ batch: Batch, sequences range: Range<Int>, into result: UnsafeMutablePointer<Float>) throws {
        let c = config
        let (B, S, H, I) = (range.count, batch.seqLen, c.hiddenSize, c.intermediateSize)
        let T = B * S
        let ws = workspace.reserve(tokens: T, hidden: H, intermediate: I, seqLen: S, headDim: c.headDim)
        let eps = Float(c.layerNormEps)
        let (x, qkv, ctx, a, h) = (result, ws.qkv, ws.ctx, ws.a, ws.h)
        let tokens = (range.lowerBound * S)..<(range.upperBound * S)
        try batch.inputIds[tokens].withUnsafeBufferPointer { try word.gather($0, into: x) }
        batch.tokenTypeIds[tokens].withUnsafeBufferPointer { types in
            zk_embedding_forward(x, types.baseAddress, Int32(B), Int32(S), position.data, tokenType.data, Int32(H))
        }
        zk_layernorm_forward(x, nil, nil, x, embG.data, embB.data, Int32(T), Int32(H), eps)
        batch.lengths[range].withUnsafeBufferPointer { lengths in
            for l in layers {
                l.qkv.forward(qkv, x, rows: T, withBias: true, gelu: false)
                zk_attention_forward(ctx, qkv, lengths.baseAddress, Int32(B), Int32(S), Int32(c.numAttentionHeads), Int32(c.headDim), ws.scratch)
                l.out.forward(a, ctx, rows: T, withBias: false, gelu: false)
                zk_bias_residual_layernorm_forward(a, l.out.bias.data, x, l.ln1G.data, l.ln1B.data, Int32(T), Int32(H), eps)
                l.up.forward(h, a, rows: T, withBias: true, gelu: true)
                l.down.forward(x, h, rows: T, withBias: false, gelu: false)
                zk_bias_residual_layernorm_forward(x, l.down.bias.data, a, l.ln2G.data, l.ln2B.data, Int32(T), Int32(H), eps)
            }
        }
    }
}

/// Tensors stacked along their first dimension.
public func concat(_ parts: [Tensor], shape: [Int]) -> Tensor {
    let out = Tensor(shape: shape)
    var off = 0
    for p in parts { (out.data + off).update(from: p.data, count: p.count); off += p.count }
    return out
}

/// Activation buffers reused across forward passes; grown only when a larger batch arrives.
struct Workspace {
    private var storage: Tensor?
    private var capacity = 0
    struct Buffers { let qkv, ctx, a, h, scratch: UnsafeMutablePointer<Float> }

    mutating func reserve(tokens T: Int, hidden H: Int, intermediate I: Int, seqLen S: Int, headDim: Int) -> Buffers {
        let scratch = zk_attention_scratch_floats(Int32(S), Int32(headDim))
        let sizes = [T * 3 * H, T * H, T * H, T * I, scratch].map { ($0 + 15) / 16 * 16 }
        let need = sizes.reduce(0, +)
        if need > capacity { storage = Tensor(shape: [need]); capacity = need }
        var p = storage!.data
        var ptrs: [UnsafeMutablePointer<Float>] = []
        for s in sizes { ptrs.append(p); p += s }
        return Buffers(qkv: ptrs[0], ctx: ptrs[1], a: ptrs[2], h: ptrs[3], scratch: ptrs[4])
    }
}
