import CKernels
import Foundation
import ZooCore

/// `bert`: the dense fp32 BERT encoder, the baseline every compressed variant is measured against.
public let variants: [Variant] = [
    Variant(name: "bert", summary: "dense fp32 BERT encoder (HF BertModel weights), the uncompressed baseline") { source in
        switch source {
        case .checkpoint(let ckpt): return try BertEncoder(checkpoint: ckpt)
        case .geometry(let g, let seed): return BertEncoder(randomWith: g.config, seed: seed)
        }
    },
]

/// Weights of one encoder layer. Q/K/V are fused into one [3H, H] projection, and every Linear
/// weight is packed once into the GEMM kernel's panel layout (`Linear`).
struct LayerWeights {
    let qkv: Linear                       // [3H, H]
    let out: Linear                       // [H, H]
    let ln1G: Tensor, ln1B: Tensor
    let up: Linear                        // [I, H]
    let down: Linear                      // [H, I]
    let ln2G: Tensor, ln2B: Tensor

    var parameterCount: Int { [qkv, out, up, down].map(\.parameterCount).reduce(0, +) + 2 * ln1G.count + 2 * ln2G.count }
}

/// A Linear layer y = x·Wᵀ + b with W packed for `zk_linear_packed_forward`.
struct Linear {
    let packed: Tensor
    let bias: Tensor
    let outFeatures: Int, inFeatures: Int

    init(weight: Tensor, bias: Tensor) {
        (outFeatures, inFeatures) = (weight.shape[0], weight.shape[1])
        packed = Tensor(shape: [zk_packed_weight_floats(Int32(outFeatures), Int32(inFeatures))])
        zk_pack_weight(packed.data, weight.data, Int32(outFeatures), Int32(inFeatures))
        self.bias = bias
    }

    var parameterCount: Int { outFeatures * inFeatures + bias.count }

    /// out[M, outFeatures] = inp[M, inFeatures]·Wᵀ + b, then GELU when `gelu`; `withBias: false`
    /// leaves the bias to a fused epilogue later.
    func forward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, rows: Int, withBias: Bool = true, gelu: Bool = false) {
        zk_linear_packed_forward(out, inp, packed.data, withBias ? bias.data : nil, Int32(rows), Int32(outFeatures), Int32(inFeatures), gelu ? 1 : 0)
    }
}

public final class BertEncoder: Model {
    public let config: BertConfig
    let word: RowTable
    let position: Tensor, tokenType: Tensor, embG: Tensor, embB: Tensor
    let layers: [LayerWeights]
    private var workspace = Workspace()

    public var parameterCount: Int {
        let n = word.count + position.count + tokenType.count + embG.count + embB.count
        return n + layers.map(\.parameterCount).reduce(0, +)
    }

    /// Loads HF `BertModel` / `BertFor*` weights (with or without the `bert.` prefix), checking every
    /// shape against config.json.
    public init(checkpoint: Checkpoint) throws {
        let c = checkpoint.config, st = checkpoint.tensors
        let prefix = st.entries["bert.embeddings.word_embeddings.weight"] != nil ? "bert." : ""
        let (H, I) = (c.hiddenSize, c.intermediateSize)
        func t(_ name: String, _ shape: [Int]) throws -> Tensor { try st.tensor(prefix + name, shape: shape) }
        config = c
        // The word embedding table stays in the file; rows are read as tokens need them.
        word = try st.rows(prefix + "embeddings.word_embeddings.weight", shape: [c.vocabSize, H])
        position = try t("embeddings.position_embeddings.weight", [c.maxPositionEmbeddings, H])
        tokenType = try t("embeddings.token_type_embeddings.weight", [c.typeVocabSize, H])
        embG = try t("embeddings.LayerNorm.weight", [H])
        embB = try t("embeddings.LayerNorm.bias", [H])
        layers = try (0..<c.numHiddenLayers).map { i in
            let p = "encoder.layer.\(i)."
            let qkv = try ["query", "key", "value"].map { try t(p + "attention.self.\($0).weight", [H, H]) }
            let qkvBias = try ["query", "key", "value"].map { try t(p + "attention.self.\($0).bias", [H]) }
            return LayerWeights(
                qkv: Linear(weight: concat(qkv, shape: [3 * H, H]), bias: concat(qkvBias, shape: [3 * H])),
                out: Linear(weight: try t(p + "attention.output.dense.weight", [H, H]), bias: try t(p + "attention.output.dense.bias", [H])),
                ln1G: try t(p + "attention.output.LayerNorm.weight", [H]), ln1B: try t(p + "attention.output.LayerNorm.bias", [H]),
                up: Linear(weight: try t(p + "intermediate.dense.weight", [I, H]), bias: try t(p + "intermediate.dense.bias", [I])),
                down: Linear(weight: try t(p + "output.dense.weight", [H, I]), bias: try t(p + "output.dense.bias", [H])),
                ln2G: try t(p + "output.LayerNorm.weight", [H]), ln2B: try t(p + "output.LayerNorm.bias", [H]))
        }
    }

    /// Random weights of a given shape (uniform, small), for speed measurements only.
    public init(randomWith c: BertConfig, seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        func r(_ shape: [Int], scale: Float = 0.02) -> Tensor {
            let t = Tensor(shape: shape)
            for i in 0..<t.count { t.data[i] = rng.symmetric() * scale }
            return t
        }
        func ones(_ n: Int) -> Tensor { Tensor(shape: [n], values: [Float](repeating: 1, count: n)) }
        let (H, I) = (c.hiddenSize, c.intermediateSize)
        config = c
        word = .memory(r([c.vocabSize, H])); position = r([c.maxPositionEmbeddings, H]); tokenType = r([c.typeVocabSize, H])
        embG = ones(H); embB = r([H])
        layers = (0..<c.numHiddenLayers).map { _ in
            LayerWeights(qkv: Linear(weight: r([3 * H, H]), bias: r([3 * H])), out: Linear(weight: r([H, H]), bias: r([H])),
                         ln1G: ones(H), ln1B: r([H]), up: Linear(weight: r([I, H]), bias: r([I])),
                         down: Linear(weight: r([H, I]), bias: r([H])), ln2G: ones(H), ln2B: r([H]))
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
                l.qkv.forward(qkv, x, rows: T)
                zk_attention_forward(ctx, qkv, lengths.baseAddress, Int32(B), Int32(S), Int32(c.numAttentionHeads), Int32(c.headDim), ws.scratch)
                l.out.forward(a, ctx, rows: T, withBias: false)
                zk_bias_residual_layernorm_forward(a, l.out.bias.data, x, l.ln1G.data, l.ln1B.data, Int32(T), Int32(H), eps)
                l.up.forward(h, a, rows: T, gelu: true)
                l.down.forward(x, h, rows: T, withBias: false)
                zk_bias_residual_layernorm_forward(x, l.down.bias.data, a, l.ln2G.data, l.ln2B.data, Int32(T), Int32(H), eps)
            }
        }
    }
}

func concat(_ parts: [Tensor], shape: [Int]) -> Tensor {
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
