import CKernels
import Foundation

/// Targets of a batch: class indices, or scores for regression (numLabels == 1).
public enum Targets {
    case classes([Int32])
    case scores([Float])
}

/// Activations of one forward pass, kept for the backward pass, and the backward pass's gradient
/// buffers: carved out of one arena that is reused from step to step and grown only when a larger
/// batch arrives (no allocation, no page faults per step).
///
/// Tokens are packed: the T = Σ lengths real tokens of the batch, sequence after sequence, with no
/// padding. Pad tokens never influence real ones (their keys are masked, and the loss reads [CLS]),
/// so the step is the same as on the padded batch, without computing on padding.
final class Activations {
    typealias Buffer = UnsafeMutablePointer<Float>
    private(set) var T = 0, B = 0
    private(set) var starts: [Int] = [], lengths: [Int] = []
    var embSum: Buffer!, embMean: Buffer!, embRstd: Buffer!
    var xs: [Buffer] = []                     // input of layer l (xs[L] = encoder output)
    var qkv: [Buffer] = [], probs: [Buffer] = [], ctx: [Buffer] = []
    var aPre: [Buffer] = [], mean1: [Buffer] = [], rstd1: [Buffer] = [], a: [Buffer] = []
    var hPre: [Buffer] = [], h: [Buffer] = []
    var oPre: [Buffer] = [], mean2: [Buffer] = [], rstd2: [Buffer] = []
    var cls: Buffer!, pooledPre: Buffer!, pooled: Buffer!, dropped: Buffer!, logits: Buffer!
    // backward
    var dlogits: Buffer!, dpooled: Buffer!, dcls: Buffer!, dx: Buffer!, dxPrev: Buffer!, dA: Buffer!, dTmpH: Buffer!
    var dOPre: Buffer!, dAPre: Buffer!, dH: Buffer!, dQKV: Buffer!, dCtx: Buffer!, dEmb: Buffer!
    private var arena: Tensor?

    func prepare(_ c: BertConfig, lengths: [Int], numLabels: Int) {
        let (H, I, L, heads) = (c.hiddenSize, c.intermediateSize, c.numHiddenLayers, c.numAttentionHeads)
        self.lengths = lengths
        B = lengths.count
        starts = []
        var t = 0, pr = 0
        for n in lengths { starts.append(t); t += n; pr += heads * n * n }
        T = t
        var sizes: [Int] = [T * H, T, T]
        for _ in 0..<L { sizes += [T * H, T * 3 * H, pr, T * H, T * H, T, T, T * H, T * I, T * I, T * H, T, T] }
        sizes += [T * H, B * H, B * H, B * H, B * H, B * numLabels]
        sizes += [B * numLabels, B * H, B * H, T * H, T * H, T * H, T * H, T * H, T * H, T * I, T * 3 * H, T * H, T * H]
        let padded = sizes.map { ($0 + 15) / 16 * 16 }
        let need = padded.reduce(0, +)
        if arena == nil || arena!.count < need { arena = Tensor(shape: [max(need, (arena?.count ?? 0) * 3 / 2)]) }   // grown by half: evaluation's length-sorted batches grow T at every batch
        var p = arena!.data
        var it = padded.makeIterator()
        func take() -> Buffer { let q = p; p += it.next()!; return q }
        embSum = take(); embMean = take(); embRstd = take()
        xs = []; qkv = []; probs = []; ctx = []; aPre = []; mean1 = []; rstd1 = []; a = []; hPre = []; h = []; oPre = []; mean2 = []; rstd2 = []
        for _ in 0..<L {
            xs.append(take()); qkv.append(take()); probs.append(take()); ctx.append(take()); aPre.append(take()); mean1.append(take())
            rstd1.append(take()); a.append(take()); hPre.append(take()); h.append(take()); oPre.append(take()); mean2.append(take()); rstd2.append(take())
        }
        xs.append(take())
        cls = take(); pooledPre = take(); pooled = take(); dropped = take(); logits = take()
        dlogits = take(); dpooled = take(); dcls = take(); dx = take(); dxPrev = take(); dA = take(); dTmpH = take()
        dOPre = take(); dAPre = take(); dH = take(); dQKV = take(); dCtx = take(); dEmb = take()
    }
}

extension BertClassifier {
    /// Dropout sites of one step get distinct seeds derived from the step's seed.
    func dropoutSeed(_ seed: UInt64, site: Int) -> UInt64 {
        var r = SplitMix64(seed: seed &+ UInt64(site) &* 0x9E37_79B9_7F4A_7C15)
        return r.next()
    }

    /// The attention-dropout seeds of a site's B sequences (each sequence its own masks).
    func sequenceSeeds(_ siteSeed: UInt64, _ B: Int) -> [UInt64] { (0..<B).map { siteSeed ^ (UInt64($0 + 1) &* 0xD1B5_4A32_D192_ED03) } }

    /// Forward pass of a training step (`seed == nil`: no dropout). The activations live in the
    /// model's reused arena, valid until the next call.
    func forward(_ batch: Batch, seed: UInt64?) -> Activations {
        let c = config
        let (B, S, H, I) = (batch.size, batch.seqLen, c.hiddenSize, c.intermediateSize)
        let act = activations
        act.prepare(c, lengths: batch.lengths.map { Int($0) }, numLabels: numLabels)
        let T = act.T
        let P = params.data
        let eps = Float(c.layerNormEps)
        let pHidden = seed == nil ? 0 : Float(c.hiddenDropoutProb), pAttn = seed == nil ? 0 : Float(c.attentionProbsDropoutProb)
        func site(_ i: Int) -> UInt64 { dropoutSeed(seed ?? 0, site: i) }

        for b in 0..<B {
            let (t0, n) = (act.starts[b], act.lengths[b])
            for i in 0..<n {
                let row: Int = word + Int(batch.inputIds[b * S + i]) * H
                (act.embSum + (t0 + i) * H).update(from: P + row, count: H)
            }
            batch.tokenTypeIds[(b * S)..<(b * S + n)].withUnsafeBufferPointer {
                zk_embedding_forward(act.embSum + t0 * H, $0.baseAddress, 1, Int32(n), P + position, P + tokenType, Int32(H))
            }
        }
        zk_layernorm_forward(act.xs[0], act.embMean, act.embRstd, act.embSum, P + embG, P + embB, Int32(T), Int32(H), eps)
        zk_dropout_forward(act.xs[0], T * H, pHidden, site(0))
        for (l, w) in layers.enumerated() {
            let x = act.xs[l]
            zk_linear_forward(act.qkv[l], x, P + w.qkvW, P + w.qkvB, Int32(T), Int32(3 * H), Int32(H))
            zk_attention_train_forward(act.ctx[l], act.probs[l], act.qkv[l], batch.lengths, sequenceSeeds(site(10 * l + 1), B),
                                       Int32(B), Int32(c.numAttentionHeads), Int32(c.headDim), pAttn)
            zk_linear_forward(act.aPre[l], act.ctx[l], P + w.outW, P + w.outB, Int32(T), Int32(H), Int32(H))
            zk_dropout_forward(act.aPre[l], T * H, pHidden, site(10 * l + 2))
            zk_residual_forward(act.aPre[l], act.aPre[l], x, T * H)
            zk_layernorm_forward(act.a[l], act.mean1[l], act.rstd1[l], act.aPre[l], P + w.ln1G, P + w.ln1B, Int32(T), Int32(H), eps)
            zk_linear_forward(act.hPre[l], act.a[l], P + w.upW, P + w.upB, Int32(T), Int32(I), Int32(H))
            zk_gelu_forward(act.h[l], act.hPre[l], T * I)
            zk_linear_forward(act.oPre[l], act.h[l], P + w.downW, P + w.downB, Int32(T), Int32(H), Int32(I))
            zk_dropout_forward(act.oPre[l], T * H, pHidden, site(10 * l + 3))
            zk_residual_forward(act.oPre[l], act.oPre[l], act.a[l], T * H)
            zk_layernorm_forward(act.xs[l + 1], act.mean2[l], act.rstd2[l], act.oPre[l], P + w.ln2G, P + w.ln2B, Int32(T), Int32(H), eps)
        }
        // Pooler on [CLS], dropout, classifier.
        let out = act.xs[layers.count]
        for b in 0..<B { (act.cls + b * H).update(from: out + act.starts[b] * H, count: H) }
        zk_linear_forward(act.pooledPre, act.cls, P + poolW, P + poolB, Int32(B), Int32(H), Int32(H))
        for i in 0..<B * H { act.pooled[i] = tanhf(act.pooledPre[i]) }
        act.dropped.update(from: act.pooled, count: B * H)
        zk_dropout_forward(act.dropped, B * H, pHidden, site(9999))
        zk_linear_forward(act.logits, act.dropped, P + clsW, P + clsB, Int32(B), Int32(numLabels), Int32(H))
        return act
    }

    /// Logits of a batch without dropout: [batch, numLabels].
    public func logits(_ batch: Batch) -> Tensor {
        let act = forward(batch, seed: nil)
        let out = Tensor(shape: [batch.size, numLabels])
        out.data.update(from: act.logits, count: out.count)
        return out
    }

    /// One forward + backward pass: returns the mean loss and adds the gradients into `grads`.
    /// `seed == nil` disables dropout.
    @discardableResult
    public func backward(_ batch: Batch, targets: Targets, seed: UInt64?) -> Float {
        let c = config
        let act = forward(batch, seed: seed)
        let (B, S, H, I, T) = (batch.size, batch.seqLen, c.hiddenSize, c.intermediateSize, act.T)
        let (P, G) = (params.data, grads.data)
        let pHidden = seed == nil ? 0 : Float(c.hiddenDropoutProb), pAttn = seed == nil ? 0 : Float(c.attentionProbsDropoutProb)
        func site(_ i: Int) -> UInt64 { dropoutSeed(seed ?? 0, site: i) }

        // Loss and classifier.
        let (dlogits, dpooled, dcls) = (act.dlogits!, act.dpooled!, act.dcls!)
        let loss: Float
        switch targets {
        case .classes(let y): loss = zk_cross_entropy_forward_backward(dlogits, act.logits, y, Int32(B), Int32(numLabels))
        case .scores(let y): loss = zk_mse_forward_backward(dlogits, act.logits, y, Int32(B))
        }
        zk_linear_backward(dpooled, G + clsW, G + clsB, dlogits, act.dropped, P + clsW, Int32(B), Int32(numLabels), Int32(H))
        zk_dropout_backward(dpooled, B * H, pHidden, site(9999))
        for i in 0..<B * H { dpooled[i] *= 1 - act.pooled[i] * act.pooled[i] }   // tanh'
        zk_linear_backward(dcls, G + poolW, G + poolB, dpooled, act.cls, P + poolW, Int32(B), Int32(H), Int32(H))

        // Encoder, last layer first. dx: gradient of the current layer's output.
        var (dx, dxPrev) = (act.dx!, act.dxPrev!)
        dx.update(repeating: 0, count: T * H)
        for b in 0..<B { (dx + act.starts[b] * H).update(from: dcls + b * H, count: H) }
        let (dA, dTmpH, dH, dQKV, dCtx, dOPre, dAPre) = (act.dA!, act.dTmpH!, act.dH!, act.dQKV!, act.dCtx!, act.dOPre!, act.dAPre!)
        for l in layers.indices.reversed() {
            let w = layers[l]
            // x_{l+1} = LN2(dropout(h·Wd + bd) + a)
            zk_layernorm_backward(dOPre, G + w.ln2G, G + w.ln2B, dx, act.oPre[l], P + w.ln2G, act.mean2[l], act.rstd2[l], Int32(T), Int32(H))
            dA.update(from: dOPre, count: T * H)                                  // residual into a
            zk_dropout_backward(dOPre, T * H, pHidden, site(10 * l + 3))
            zk_linear_backward(dH, G + w.downW, G + w.downB, dOPre, act.h[l], P + w.downW, Int32(T), Int32(H), Int32(I))
            zk_gelu_backward(dH, act.hPre[l], dH, T * I)
            zk_linear_backward(dTmpH, G + w.upW, G + w.upB, dH, act.a[l], P + w.upW, Int32(T), Int32(I), Int32(H))
            zk_residual_forward(dA, dA, dTmpH, T * H)
            // a = LN1(dropout(ctx·Wo + bo) + x_l)
            zk_layernorm_backward(dAPre, G + w.ln1G, G + w.ln1B, dA, act.aPre[l], P + w.ln1G, act.mean1[l], act.rstd1[l], Int32(T), Int32(H))
            dxPrev.update(from: dAPre, count: T * H)                              // residual into x_l
            zk_dropout_backward(dAPre, T * H, pHidden, site(10 * l + 2))
            zk_linear_backward(dCtx, G + w.outW, G + w.outB, dAPre, act.ctx[l], P + w.outW, Int32(T), Int32(H), Int32(H))
            zk_attention_backward(dQKV, dCtx, act.qkv[l], act.probs[l], batch.lengths, sequenceSeeds(site(10 * l + 1), B),
                                  Int32(B), Int32(c.numAttentionHeads), Int32(c.headDim), pAttn)
            zk_linear_backward(dTmpH, G + w.qkvW, G + w.qkvB, dQKV, act.xs[l], P + w.qkvW, Int32(T), Int32(3 * H), Int32(H))
            zk_residual_forward(dxPrev, dxPrev, dTmpH, T * H)
            swap(&dx, &dxPrev)
        }
        // Embeddings: xs[0] = dropout(LN(word + type + position)).
        zk_dropout_backward(dx, T * H, pHidden, site(0))
        let dEmb = act.dEmb!
        zk_layernorm_backward(dEmb, G + embG, G + embB, dx, act.embSum, P + embG, act.embMean, act.embRstd, Int32(T), Int32(H))
        for b in 0..<B {
            let (t0, n) = (act.starts[b], act.lengths[b])
            batch.inputIds[(b * S)..<(b * S + n)].withUnsafeBufferPointer { ids in
                batch.tokenTypeIds[(b * S)..<(b * S + n)].withUnsafeBufferPointer { types in
                    zk_embedding_backward(G + word, G + position, G + tokenType, dEmb + t0 * H, ids.baseAddress, types.baseAddress, 1, Int32(n), Int32(H))
                }
            }
        }
        return loss
    }

    public func zeroGrad() { grads.data.update(repeating: 0, count: grads.count) }
}
