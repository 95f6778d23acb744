import CKernels
import Foundation

/// Targets of a batch: class indices, or scores for regression (numLabels == 1).
public enum Targets {
    case classes([Int32])
    case scores([Float])
}

/// Activations of one forward pass, kept for the backward pass. T = batch·seq tokens.
final class Activations {
    let T: Int, B: Int, S: Int
    let embSum: Tensor, embMean: Tensor, embRstd: Tensor
    var xs: [Tensor] = []                     // input of layer l (xs[L] = encoder output)
    var qkv: [Tensor] = [], probs: [Tensor] = [], ctx: [Tensor] = []
    var aPre: [Tensor] = [], mean1: [Tensor] = [], rstd1: [Tensor] = [], a: [Tensor] = []
    var hPre: [Tensor] = [], h: [Tensor] = []
    var oPre: [Tensor] = [], mean2: [Tensor] = [], rstd2: [Tensor] = []
    let cls: Tensor, pooledPre: Tensor, pooled: Tensor, logits: Tensor

    init(_ c: BertConfig, B: Int, S: Int, numLabels: Int) {
        let (H, I, T) = (c.hiddenSize, c.intermediateSize, B * S)
        (self.T, self.B, self.S) = (T, B, S)
        embSum = Tensor(shape: [T, H]); embMean = Tensor(shape: [T]); embRstd = Tensor(shape: [T])
        for _ in 0..<c.numHiddenLayers {
            xs.append(Tensor(shape: [T, H])); qkv.append(Tensor(shape: [T, 3 * H]))
            probs.append(Tensor(shape: [B * c.numAttentionHeads, S, S])); ctx.append(Tensor(shape: [T, H]))
            aPre.append(Tensor(shape: [T, H])); mean1.append(Tensor(shape: [T])); rstd1.append(Tensor(shape: [T])); a.append(Tensor(shape: [T, H]))
            hPre.append(Tensor(shape: [T, I])); h.append(Tensor(shape: [T, I]))
            oPre.append(Tensor(shape: [T, H])); mean2.append(Tensor(shape: [T])); rstd2.append(Tensor(shape: [T]))
        }
        xs.append(Tensor(shape: [T, H]))
        cls = Tensor(shape: [B, H]); pooledPre = Tensor(shape: [B, H]); pooled = Tensor(shape: [B, H])
        logits = Tensor(shape: [B, numLabels])
    }
}

extension BertClassifier {
    /// Dropout sites of one step get distinct seeds derived from the step's seed.
    func dropoutSeed(_ seed: UInt64, site: Int) -> UInt64 {
        var r = SplitMix64(seed: seed &+ UInt64(site) &* 0x9E37_79B9_7F4A_7C15)
        return r.next()
    }

    /// Forward pass of a training step. `dropoutSeed == nil` runs without dropout (evaluation).
    func forward(_ batch: Batch, seed: UInt64?) -> Activations {
        let c = config
        let (B, S, H, I) = (batch.size, batch.seqLen, c.hiddenSize, c.intermediateSize)
        let act = Activations(c, B: B, S: S, numLabels: numLabels)
        let T = act.T
        let P = params.data
        let eps = Float(c.layerNormEps)
        let pHidden = seed == nil ? 0 : Float(c.hiddenDropoutProb), pAttn = seed == nil ? 0 : Float(c.attentionProbsDropoutProb)
        func site(_ i: Int) -> UInt64 { dropoutSeed(seed ?? 0, site: i) }

        for (i, id) in batch.inputIds.enumerated() { (act.embSum.data + i * H).update(from: P + word + Int(id) * H, count: H) }
        batch.tokenTypeIds.withUnsafeBufferPointer { zk_embedding_forward(act.embSum.data, $0.baseAddress, Int32(B), Int32(S), P + position, P + tokenType, Int32(H)) }
        zk_layernorm_forward(act.xs[0].data, act.embMean.data, act.embRstd.data, act.embSum.data, P + embG, P + embB, Int32(T), Int32(H), eps)
        zk_dropout_forward(act.xs[0].data, T * H, pHidden, site(0))
        batch.lengths.withUnsafeBufferPointer { lengths in
            for (l, w) in layers.enumerated() {
                let x = act.xs[l].data
                zk_linear_forward(act.qkv[l].data, x, P + w.qkvW, P + w.qkvB, Int32(T), Int32(3 * H), Int32(H))
                zk_attention_train_forward(act.ctx[l].data, act.probs[l].data, act.qkv[l].data, lengths.baseAddress, Int32(B), Int32(S),
                                           Int32(c.numAttentionHeads), Int32(c.headDim), pAttn, site(10 * l + 1))
                zk_linear_forward(act.aPre[l].data, act.ctx[l].data, P + w.outW, P + w.outB, Int32(T), Int32(H), Int32(H))
                zk_dropout_forward(act.aPre[l].data, T * H, pHidden, site(10 * l + 2))
                zk_residual_forward(act.aPre[l].data, act.aPre[l].data, x, T * H)
                zk_layernorm_forward(act.a[l].data, act.mean1[l].data, act.rstd1[l].data, act.aPre[l].data, P + w.ln1G, P + w.ln1B, Int32(T), Int32(H), eps)
                zk_linear_forward(act.hPre[l].data, act.a[l].data, P + w.upW, P + w.upB, Int32(T), Int32(I), Int32(H))
                zk_gelu_forward(act.h[l].data, act.hPre[l].data, T * I)
                zk_linear_forward(act.oPre[l].data, act.h[l].data, P + w.downW, P + w.downB, Int32(T), Int32(H), Int32(I))
                zk_dropout_forward(act.oPre[l].data, T * H, pHidden, site(10 * l + 3))
                zk_residual_forward(act.oPre[l].data, act.oPre[l].data, act.a[l].data, T * H)
                zk_layernorm_forward(act.xs[l + 1].data, act.mean2[l].data, act.rstd2[l].data, act.oPre[l].data, P + w.ln2G, P + w.ln2B, Int32(T), Int32(H), eps)
            }
        }
        // Pooler on [CLS], dropout, classifier.
        let out = act.xs[layers.count].data
        for b in 0..<B { (act.cls.data + b * H).update(from: out + b * S * H, count: H) }
        zk_linear_forward(act.pooledPre.data, act.cls.data, P + poolW, P + poolB, Int32(B), Int32(H), Int32(H))
        for i in 0..<B * H { act.pooled[i] = tanhf(act.pooledPre[i]) }
        let dropped = Tensor(shape: [B, H])
        dropped.data.update(from: act.pooled.data, count: B * H)
        zk_dropout_forward(dropped.data, B * H, pHidden, site(9999))
        zk_linear_forward(act.logits.data, dropped.data, P + clsW, P + clsB, Int32(B), Int32(numLabels), Int32(H))
        return act
    }

    /// Logits of a batch without dropout: [batch, numLabels].
    public func logits(_ batch: Batch) -> Tensor { forward(batch, seed: nil).logits }

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
        let dlogits = Tensor(shape: [B, numLabels])
        let loss: Float
        switch targets {
        case .classes(let y): loss = zk_cross_entropy_forward_backward(dlogits.data, act.logits.data, y, Int32(B), Int32(numLabels))
        case .scores(let y): loss = zk_mse_forward_backward(dlogits.data, act.logits.data, y, Int32(B))
        }
        let dropped = Tensor(shape: [B, H])
        dropped.data.update(from: act.pooled.data, count: B * H)
        zk_dropout_forward(dropped.data, B * H, pHidden, site(9999))
        let dpooled = Tensor(shape: [B, H])
        zk_linear_backward(dpooled.data, G + clsW, G + clsB, dlogits.data, dropped.data, P + clsW, Int32(B), Int32(numLabels), Int32(H))
        zk_dropout_backward(dpooled.data, B * H, pHidden, site(9999))
        for i in 0..<B * H { dpooled[i] *= 1 - act.pooled[i] * act.pooled[i] }   // tanh'
        let dcls = Tensor(shape: [B, H])
        zk_linear_backward(dcls.data, G + poolW, G + poolB, dpooled.data, act.cls.data, P + poolW, Int32(B), Int32(H), Int32(H))

        // Encoder, last layer first. dx: gradient of the current layer's output.
        var dx = Tensor(shape: [T, H])
        for b in 0..<B { (dx.data + b * S * H).update(from: dcls.data + b * H, count: H) }
        let dA = Tensor(shape: [T, H]), dTmpH = Tensor(shape: [T, H]), dH = Tensor(shape: [T, I]), dQKV = Tensor(shape: [T, 3 * H])
        let dCtx = Tensor(shape: [T, H])
        let scratch = Tensor(shape: [zk_attention_backward_scratch_floats(Int32(S))])
        batch.lengths.withUnsafeBufferPointer { lengths in
            for l in layers.indices.reversed() {
                let w = layers[l]
                // x_{l+1} = LN2(dropout(h·Wd + bd) + a)
                let dOPre = Tensor(shape: [T, H])
                zk_layernorm_backward(dOPre.data, G + w.ln2G, G + w.ln2B, dx.data, act.oPre[l].data, P + w.ln2G, act.mean2[l].data, act.rstd2[l].data, Int32(T), Int32(H))
                dA.data.update(from: dOPre.data, count: T * H)                                  // residual into a
                zk_dropout_backward(dOPre.data, T * H, pHidden, site(10 * l + 3))
                zk_linear_backward(dH.data, G + w.downW, G + w.downB, dOPre.data, act.h[l].data, P + w.downW, Int32(T), Int32(H), Int32(I))
                zk_gelu_backward(dH.data, act.hPre[l].data, dH.data, T * I)
                zk_linear_backward(dTmpH.data, G + w.upW, G + w.upB, dH.data, act.a[l].data, P + w.upW, Int32(T), Int32(I), Int32(H))
                zk_residual_forward(dA.data, dA.data, dTmpH.data, T * H)
                // a = LN1(dropout(ctx·Wo + bo) + x_l)
                let dAPre = Tensor(shape: [T, H])
                zk_layernorm_backward(dAPre.data, G + w.ln1G, G + w.ln1B, dA.data, act.aPre[l].data, P + w.ln1G, act.mean1[l].data, act.rstd1[l].data, Int32(T), Int32(H))
                let dxPrev = Tensor(shape: [T, H])
                dxPrev.data.update(from: dAPre.data, count: T * H)                              // residual into x_l
                zk_dropout_backward(dAPre.data, T * H, pHidden, site(10 * l + 2))
                zk_linear_backward(dCtx.data, G + w.outW, G + w.outB, dAPre.data, act.ctx[l].data, P + w.outW, Int32(T), Int32(H), Int32(H))
                zk_attention_backward(dQKV.data, dCtx.data, act.qkv[l].data, act.probs[l].data, lengths.baseAddress, Int32(B), Int32(S),
                                      Int32(c.numAttentionHeads), Int32(c.headDim), pAttn, site(10 * l + 1), scratch.data)
                zk_linear_backward(dTmpH.data, G + w.qkvW, G + w.qkvB, dQKV.data, act.xs[l].data, P + w.qkvW, Int32(T), Int32(3 * H), Int32(H))
                zk_residual_forward(dxPrev.data, dxPrev.data, dTmpH.data, T * H)
                dx = dxPrev
            }
        }
        // Embeddings: xs[0] = dropout(LN(word + type + position)).
        zk_dropout_backward(dx.data, T * H, pHidden, site(0))
        let dEmb = Tensor(shape: [T, H])
        zk_layernorm_backward(dEmb.data, G + embG, G + embB, dx.data, act.embSum.data, P + embG, act.embMean.data, act.embRstd.data, Int32(T), Int32(H))
        batch.inputIds.withUnsafeBufferPointer { ids in
            batch.tokenTypeIds.withUnsafeBufferPointer { types in
                zk_embedding_backward(G + word, G + position, G + tokenType, dEmb.data, ids.baseAddress, types.baseAddress, Int32(B), Int32(S), Int32(H))
            }
        }
        return loss
    }

    public func zeroGrad() { grads.data.update(repeating: 0, count: grads.count) }
}
