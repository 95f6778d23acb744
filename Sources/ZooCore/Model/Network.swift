import CKernels
import Foundation

/// The one forward pass of every model in the zoo, for inference and training alike.
///
/// A `Network` is a `ModelSpec` plus weights read through a `WeightReader`; `L` is how its Linear
/// layers are stored and multiplied: `Linear` (fp32, packed), `QLinear` (int8, QBERT plugin) or
/// `ParamLinear` (trainable, in a `ParameterStore`). Tokens are packed: the T = Σ lengths real tokens
/// of a batch, sequence after sequence. `encode` runs embeddings and layers in one of two modes:
/// inference (fused epilogues, buffers reused, long batches in chunks) or recording (dropout when
/// seeded, every activation kept in an `Activations` for the backward pass and the distillation taps).
public final class Network<L: LinearLayer>: ChunkedModel {
    public let spec: ModelSpec
    let embeddings: Embeddings
    let layers: [Layer]                 // one per executed layer; tied layers hold the same weights
    let head: Head?
    /// The trainable (or frozen) parameters, when the network was built on a store.
    public let store: ParameterStore?
    private var workspace = Workspace()
    let activations = Activations()

    struct Embeddings {
        let word: WordEmbeddings
        let position: Param, tokenType: Param?, normW: Param, normB: Param
        let projection: L?              // ALBERT: E → H
    }

    struct Layer {
        let shape: ModelSpec.Layer
        let qkv: L, out: L              // [3A, H], [H, A]
        let norm1W: Param, norm1B: Param
        let up: L, down: L              // [F, H], [H, F]
        let norm2W: Param, norm2B: Param
    }

    /// Pooler (or DistilBERT's pre_classifier) and classifier, always fp32.
    struct Head {
        let pooler: ParamLinear, classifier: ParamLinear
        let act: Activation?            // nil: tanh (pooler); .relu for pre_classifier
    }

    /// Builds the network of `spec` from `reader` (a checkpoint's tensors, or a parameter store).
    public init<R: WeightReader>(spec: ModelSpec, reader: R) throws where R.L == L {
        self.spec = spec
        store = reader as? ParameterStore
        let names = spec.family.names
        let (E, H) = (spec.embedding, spec.hidden)
        func vec(_ p: String, _ n: Int) throws -> (Param, Param) { (try reader.param(p + ".weight", shape: [n]), try reader.param(p + ".bias", shape: [n])) }
        let (nw, nb) = try vec(names.embeddingNorm, E)
        embeddings = Embeddings(
            word: try reader.wordEmbeddings(names.word, shape: [spec.vocab, E]),
            position: try reader.param(names.position, shape: [spec.positions, E]),
            tokenType: try names.tokenType.flatMap { spec.types > 0 ? try reader.param($0, shape: [spec.types, E]) : nil },
            normW: nw, normB: nb,
            projection: spec.projection ? try reader.linear([names.projection!], outFeatures: [H], inFeatures: E) : nil)
        let groups = try spec.groups.enumerated().map { g, l -> Layer in
            let n = names.layer(g), A = l.attentionWidth
            let (w1, b1) = try vec(n.attentionNorm, H), (w2, b2) = try vec(n.outputNorm, H)
            return Layer(shape: l,
                         qkv: try reader.linear([n.query, n.key, n.value], outFeatures: [A, A, A], inFeatures: H),
                         out: try reader.linear([n.attentionOut], outFeatures: [H], inFeatures: A),
                         norm1W: w1, norm1B: b1,
                         up: try reader.linear([n.up], outFeatures: [l.ffn], inFeatures: H),
                         down: try reader.linear([n.down], outFeatures: [H], inFeatures: l.ffn),
                         norm2W: w2, norm2B: b2)
        }
        let groupIndex = Dictionary(uniqueKeysWithValues: spec.groups.enumerated().map { ($0.element.group, $0.offset) })
        layers = spec.layers.map { groups[groupIndex[$0.group]!] }
        if spec.head == .none {
            head = nil
        } else {
            func dense(_ p: String, _ out: Int) throws -> ParamLinear {
                ParamLinear(weight: try reader.param(p + ".weight", shape: [out, H]), bias: try reader.param(p + ".bias", shape: [out]), outFeatures: out, inFeatures: H)
            }
            head = Head(pooler: try dense(names.pooler, H), classifier: try dense(names.classifier, spec.numLabels),
                        act: spec.head == .preClassifier ? .relu : nil)
        }
    }

    public var parameterCount: Int { spec.parameterCount }

    /// Sequences run through all layers in chunks of about `chunkTokens` tokens, so activation
    /// buffers stay small (and in cache) whatever the batch size. Each chunk streams all weights
    /// once, so wide models take larger chunks (measured with `zoo bench --chunk-tokens`: 256 tokens
    /// is fastest for MiniLM-L6 and tinybert, 1024 for bert-base).
    public lazy var chunkTokens = spec.hidden >= 768 ? 1024 : 256
    /// Inference attention with bf16 products where the CPU has them (`zk_attention_packed_forward_bf16`):
    /// the int8 models' choice; training and the fp32 models keep fp32 attention.
    public var bf16Attention = false

    // MARK: inference

    public func forward(_ batch: Batch) throws -> Tensor {
        try check(batch)
        let (S, H) = (batch.seqLen, spec.hidden)
        let out = Tensor(shape: [batch.size * S, H])
        // Each chunk is encoded packed at its first sequence's place in `out`, then spread out to the
        // padded layout, last sequence first (rows only move forward); pad rows are zero.
        try inChunks(batch, output: out) { range, x in
            var t = batch.lengths[range].reduce(0) { $0 + Int($1) }
            for b in range.reversed() {
                let n = Int(batch.lengths[b]), dst = out.data + b * S * H
                t -= n
                if dst != x + t * H { memmove(dst, x + t * H, n * H * MemoryLayout<Float>.size) }
                (dst + n * H).update(repeating: 0, count: (S - n) * H)
            }
        }
        return out
    }

    public func logits(_ batch: Batch) throws -> Tensor {
        guard let head else { throw ZooError.usage("this checkpoint has no classifier head; fine-tune it first with `zoo finetune`, or use --zero-shot") }
        try check(batch)
        let (H, C) = (spec.hidden, spec.numLabels)
        let cls = Tensor(shape: [batch.size, H]), pooled = Tensor(shape: [batch.size, H]), out = Tensor(shape: [batch.size, C])
        try inChunks(batch) { range, x in
            var t = 0
            for b in range { (cls.data + b * H).update(from: x + t * H, count: H); t += Int(batch.lengths[b]) }
        }
        headForward(head, cls: cls.data, pooled: pooled.data, logits: out.data, rows: batch.size)
        return out
    }

    /// Runs the batch chunk by chunk; `body` receives each chunk's sequences and their packed last
    /// hidden states (in `output` at the chunk's first sequence when given, else in the workspace).
    private func inChunks(_ batch: Batch, output: Tensor? = nil, _ body: (Range<Int>, Floats) throws -> Void) throws {
        var b0 = 0
        while b0 < batch.size {
            var b1 = b0, tokens = 0
            repeat { tokens += Int(batch.lengths[b1]); b1 += 1 } while b1 < batch.size && tokens + Int(batch.lengths[b1]) <= chunkTokens
            var ws = workspace.reserve(spec, tokens: tokens, longest: Int(batch.lengths[b0..<b1].max()!))
            if let output { ws.x = output.data + b0 * batch.seqLen * spec.hidden }
            try encode(batch, sequences: b0..<b1, into: ws, recording: nil)
            try body(b0..<b1, ws.x)
            b0 = b1
        }
    }

    func check(_ batch: Batch) throws {
        guard batch.seqLen <= spec.positions else {
            throw ZooError.usage("sequence length \(batch.seqLen) exceeds max_position_embeddings \(spec.positions)")
        }
        if let bad = batch.inputIds.first(where: { $0 < 0 || Int($0) >= spec.vocab }) {
            throw ZooError.usage("token id \(bad) is outside the vocabulary (\(spec.vocab))")
        }
        if spec.types > 0, let bad = batch.tokenTypeIds.first(where: { $0 < 0 || Int($0) >= spec.types }) {
            throw ZooError.usage("token type id \(bad) is outside type_vocab_size (\(spec.types))")
        }
        if let bad = batch.lengths.first(where: { $0 < 1 }) { throw ZooError.usage("empty sequence (length \(bad)) in a batch") }
    }

    // MARK: recording (training, distillation)

    /// Forward pass that keeps every activation (in the network's reused arena, valid until the next
    /// call) for `backward` and the taps. `dropoutSeed` nil: no dropout.
    public func record(_ batch: Batch, dropoutSeed: UInt64?) throws -> Activations {
        try check(batch)
        let act = activations
        act.prepare(spec, lengths: batch.lengths, dropoutSeed: dropoutSeed)
        try encode(batch, sequences: 0..<batch.size, into: nil, recording: act)
        if let head {
            let H = spec.hidden
            for b in 0..<batch.size { (act.cls + b * H).update(from: act.xs[layers.count] + act.starts[b] * H, count: H) }
            headForward(head, cls: act.cls, pooled: act.pooled, logits: act.logits, rows: batch.size,
                        dropout: (act.dropped, dropoutSeed == nil ? 0 : spec.classifierDropout, act.siteSeed(9999)))
        }
        return act
    }

    // MARK: the forward

    /// Embeddings and every layer for sequences `range` of the batch, packed. Inference (`ws`) writes
    /// the last hidden states to `ws.x`; recording (`rec`) keeps each activation.
    private func encode(_ batch: Batch, sequences range: Range<Int>, into ws: Workspace.Buffers?, recording rec: Activations?) throws {
        let (E, H, S) = (spec.embedding, spec.hidden, batch.seqLen)
        let eps = spec.layerNormEps
        let lengths = Array(batch.lengths[range])
        let T = lengths.reduce(0) { $0 + Int($1) }
        let pHidden = rec?.dropoutSeed == nil ? 0 : spec.hiddenDropout, pAttn = rec?.dropoutSeed == nil ? 0 : spec.attentionDropout
        func seed(_ site: Int) -> UInt64 { rec?.siteSeed(site) ?? 0 }

        // Embeddings: LayerNorm(word + type + position), dropout, then ALBERT's projection E → H.
        let sum: Floats = rec?.embSum ?? (spec.projection ? ws!.e : ws!.x)
        let normed: Floats = rec.map { spec.projection ? $0.embNormed! : $0.xs[0] } ?? sum
        var t = 0
        for b in range {
            let n = Int(batch.lengths[b])
            try batch.inputIds[(b * S)..<(b * S + n)].withUnsafeBufferPointer { try embeddings.word.gather($0, into: sum + t * E) }
            batch.tokenTypeIds[(b * S)..<(b * S + n)].withUnsafeBufferPointer {
                zk_embedding_forward(sum + t * E, $0.baseAddress, 1, Int32(n), embeddings.position.value, embeddings.tokenType?.value, Int32(E))
            }
            t += n
        }
        zk_layernorm_forward(normed, rec?.embMean, rec?.embRstd, sum, embeddings.normW.value, embeddings.normB.value, Int32(T), Int32(E), eps)
        zk_dropout_forward(normed, T * E, pHidden, seed(0))
        if let p = embeddings.projection { p.forward(rec?.xs[0] ?? ws!.x, normed, rows: T, withBias: true, act: Int32(ZK_ACT_NONE)) }

        lengths.withUnsafeBufferPointer { lens in
            for (l, w) in layers.enumerated() {
                let s = w.shape
                if let r = rec {
                    let x = r.xs[l]
                    w.qkv.forward(r.qkv[l], x, rows: T, withBias: true, act: Int32(ZK_ACT_NONE))
                    zk_attention_train_forward(r.ctx[l], r.probs[l], r.qkv[l], lens.baseAddress, r.sequenceSeeds(10 * l + 1),
                                               Int32(lens.count), Int32(s.heads), Int32(s.headDim), pAttn)
                    // a = LN1(dropout(ctx·Wo + bo) + x)
                    w.out.forward(r.aPre[l], r.ctx[l], rows: T, withBias: true, act: Int32(ZK_ACT_NONE))
                    zk_dropout_forward(r.aPre[l], T * H, pHidden, seed(10 * l + 2))
                    zk_residual_forward(r.aPre[l], r.aPre[l], x, T * H)
                    zk_layernorm_forward(r.a[l], r.mean1[l], r.rstd1[l], r.aPre[l], w.norm1W.value, w.norm1B.value, Int32(T), Int32(H), eps)
                    // x' = LN2(dropout(act(a·Wu + bu)·Wd + bd) + a)
                    w.up.forward(r.hPre[l], r.a[l], rows: T, withBias: true, act: Int32(ZK_ACT_NONE))
                    zk_activation_forward(r.h[l], r.hPre[l], T * s.ffn, s.activation.code)
                    w.down.forward(r.oPre[l], r.h[l], rows: T, withBias: true, act: Int32(ZK_ACT_NONE))
                    zk_dropout_forward(r.oPre[l], T * H, pHidden, seed(10 * l + 3))
                    zk_residual_forward(r.oPre[l], r.oPre[l], r.a[l], T * H)
                    zk_layernorm_forward(r.xs[l + 1], r.mean2[l], r.rstd2[l], r.oPre[l], w.norm2W.value, w.norm2B.value, Int32(T), Int32(H), eps)
                } else {
                    let ws = ws!
                    w.qkv.forward(ws.qkv, ws.x, rows: T, withBias: true, act: Int32(ZK_ACT_NONE))
                    (bf16Attention ? zk_attention_packed_forward_bf16 : zk_attention_packed_forward)(
                        ws.ctx, ws.qkv, lens.baseAddress, Int32(lens.count), Int32(s.heads), Int32(s.headDim), ws.scratch)
                    w.out.forward(ws.a, ws.ctx, rows: T, withBias: false, act: Int32(ZK_ACT_NONE))
                    zk_bias_residual_layernorm_forward(ws.a, w.out.bias, ws.x, w.norm1W.value, w.norm1B.value, Int32(T), Int32(H), eps)
                    w.up.forward(ws.h, ws.a, rows: T, withBias: true, act: s.activation.code)
                    w.down.forward(ws.x, ws.h, rows: T, withBias: false, act: Int32(ZK_ACT_NONE))
                    zk_bias_residual_layernorm_forward(ws.x, w.down.bias, ws.a, w.norm2W.value, w.norm2B.value, Int32(T), Int32(H), eps)
                }
            }
        }
    }

    /// Head on [CLS] rows: pooled = tanh(pooler(cls)) (or relu(pre_classifier(cls))), then
    /// logits = classifier(dropout(pooled)); recording keeps the dropped copy in `dropout.kept`.
    private func headForward(_ head: Head, cls: Floats, pooled: Floats, logits: Floats, rows B: Int,
                             dropout: (kept: Floats, p: Float, seed: UInt64)? = nil) {
        let H = spec.hidden
        head.pooler.forward(pooled, cls, rows: B, withBias: true, act: Int32(ZK_ACT_NONE))
        if head.act == .relu {
            for i in 0..<B * H { pooled[i] = max(pooled[i], 0) }
        } else {
            for i in 0..<B * H { pooled[i] = tanhf(pooled[i]) }
        }
        var input = pooled
        if let d = dropout {
            d.kept.update(from: pooled, count: B * H)
            zk_dropout_forward(d.kept, B * H, d.p, d.seed)
            input = d.kept
        }
        head.classifier.forward(logits, input, rows: B, withBias: true, act: Int32(ZK_ACT_NONE))
    }
}

/// Inference buffers reused across forward passes; grown only when a larger chunk arrives.
struct Workspace {
    private var storage: Tensor?
    private var capacity = 0
    struct Buffers { var x: Floats; let e, qkv, ctx, a, h, scratch: Floats }

    mutating func reserve(_ spec: ModelSpec, tokens T: Int, longest: Int) -> Buffers {
        let A = spec.layers.map(\.attentionWidth).max()!, F = spec.layers.map(\.ffn).max()!, H = spec.hidden
        let scratch = spec.layers.map { zk_attention_scratch_floats(Int32(longest), Int32($0.headDim)) }.max()!
        let sizes = [T * H, spec.projection ? T * spec.embedding : 0, T * 3 * A, T * A, T * H, T * F, scratch].map { ($0 + 15) / 16 * 16 }
        let need = sizes.reduce(0, +)
        if need > capacity { storage = Tensor(shape: [need]); capacity = need }
        var p = storage!.data
        var ptrs: [Floats] = []
        for s in sizes { ptrs.append(p); p += s }
        return Buffers(x: ptrs[0], e: ptrs[1], qkv: ptrs[2], ctx: ptrs[3], a: ptrs[4], h: ptrs[5], scratch: ptrs[6])
    }
}

/// Random weights of a given shape (uniform, small; LayerNorm gains 1), for speed measurements and
/// tests: a frozen parameter store filled from `seed`.
public func randomStore(_ spec: ModelSpec, seed: UInt64) -> ParameterStore {
    let store = ParameterStore(spec: spec, trainable: false)
    var rng = SplitMix64(seed: seed)
    for s in store.slots {
        let isNormGain = !s.decay && s.shape.count == 1 && s.name.hasSuffix(".weight")
        for i in 0..<s.count { store.values[s.offset + i] = isNormGain ? 1 : rng.symmetric() * 0.02 }
    }
    return store
}

extension Network where L == Linear {
    /// The fp32 inference network of a checkpoint (packed weights, the word table read from the file).
    public convenience init(checkpoint: Checkpoint) throws { try self.init(spec: checkpoint.spec, reader: Fp32Reader(checkpoint)) }
    /// The fp32 inference network over a store's current values (packed copies).
    public convenience init(packing store: ParameterStore) throws { try self.init(spec: store.spec, reader: PackingReader(store: store)) }
}

/// Packs a store's Linear weights for inference and copies its other tensors, so the network keeps
/// no reference to the store (a random geometry's store is freed once the network is built).
public struct PackingReader<Layer: LinearLayer>: WeightReader {
    let store: ParameterStore
    let make: (UnsafePointer<Float>, Tensor, Int, Int) -> Layer

    public init(store: ParameterStore, make: @escaping (_ weight: UnsafePointer<Float>, _ bias: Tensor, _ out: Int, _ inp: Int) -> Layer) {
        (self.store, self.make) = (store, make)
    }

    public func linear(_ prefixes: [String], outFeatures: [Int], inFeatures: Int) throws -> Layer {
        let p = try store.linear(prefixes, outFeatures: outFeatures, inFeatures: inFeatures)
        let bias = Tensor(shape: [p.outFeatures])
        bias.data.update(from: p.bias, count: p.outFeatures)
        return make(p.weight.value, bias, p.outFeatures, p.inFeatures)
    }
    public func wordEmbeddings(_ name: String, shape: [Int]) throws -> WordEmbeddings { RowTable.memory(try copy(name, shape)) }
    public func param(_ name: String, shape: [Int]) throws -> Param { Param(try copy(name, shape)) }

    func copy(_ name: String, _ shape: [Int]) throws -> Tensor {
        let p = try store.param(name, shape: shape), t = Tensor(shape: shape)
        t.data.update(from: p.value, count: p.count)
        return t
    }
}

extension PackingReader where Layer == Linear {
    public init(store: ParameterStore) { self.init(store: store) { Linear(weight: $0, bias: $1, outFeatures: $2, inFeatures: $3) } }
}
