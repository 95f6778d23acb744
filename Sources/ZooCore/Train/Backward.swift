import CKernels
import Foundation

/// Targets of a batch: class indices, or scores for regression (numLabels == 1).
public enum Targets {
    case classes([Int32])
    case scores([Float])
}

/// Where a distillation loss reads a recorded forward pass and injects its gradient.
public enum Tap: Hashable {
    case hidden(Int)       // 0: embedding output; l: output of layer l − 1
    case scores(Int)       // pre-softmax attention scores of layer l (layout: `Activations.scores`)
    case logits
}

extension Network where L == ParamLinear {
    /// Mean loss of the recorded logits (cross-entropy, or MSE for regression); its gradient goes to
    /// `act.dlogits` for `backward`.
    public func loss(_ act: Activations, targets: Targets) -> Float {
        switch targets {
        case .classes(let y): return zk_cross_entropy_forward_backward(act.dlogits, act.logits, y, Int32(act.B), Int32(spec.numLabels))
        case .scores(let y): return zk_mse_forward_backward(act.dlogits, act.logits, y, Int32(act.B))
        }
    }

    /// One forward (recording, with dropout when seeded) and backward pass on a task loss: returns the
    /// mean loss and adds the gradients into the store's gradients.
    @discardableResult
    public func step(_ batch: Batch, targets: Targets, dropoutSeed: UInt64?) throws -> Float {
        let act = try record(batch, dropoutSeed: dropoutSeed)
        let l = loss(act, targets: targets)
        backward(act, batch: batch)
        return l
    }

    /// Zeroes `act.dlogits` (a backward driven by taps only).
    public func clearLogitGradient(_ act: Activations) { act.dlogits.update(repeating: 0, count: act.B * max(spec.numLabels, 1)) }

    /// The backward pass of the recorded forward `act`: from `act.dlogits` (set by `loss`, or cleared)
    /// plus `extra` gradients at taps (laid out as the taps are). Parameter gradients accumulate into
    /// the store (tied layers into their shared slots); `masks`, when given, accumulates the gradients
    /// of unit masks on every head and FFN neuron.
    public func backward(_ act: Activations, batch: Batch, extra: [Tap: UnsafePointer<Float>] = [:], masks: MaskGradients? = nil) {
        guard let store, store.grads != nil else { preconditionFailure("backward needs a trainable parameter store") }
        let (E, H, T, B, S) = (spec.embedding, spec.hidden, act.T, act.B, batch.seqLen)
        let dropping = act.dropoutSeed != nil
        let pHidden = dropping ? spec.hiddenDropout : 0, pAttn = dropping ? spec.attentionDropout : 0
        func seed(_ site: Int) -> UInt64 { act.siteSeed(site) }
        func add(_ tap: Tap, into d: Floats, count: Int) { if let g = extra[tap] { zk_residual_forward(d, d, g, count) } }

        var (dx, dxPrev) = (act.dx!, act.dxPrev!)
        dx.update(repeating: 0, count: T * H)
        if let head {
            let (dlogits, dpooled, dcls) = (act.dlogits!, act.dpooled!, act.dcls!)
            add(.logits, into: dlogits, count: B * spec.numLabels)
            head.classifier.backward(dpooled, dlogits, act.dropped, rows: B)
            zk_dropout_backward(dpooled, B * H, dropping ? spec.classifierDropout : 0, seed(9999))
            if head.act == .relu {
                for i in 0..<B * H where act.pooled[i] <= 0 { dpooled[i] = 0 }
            } else {
                for i in 0..<B * H { dpooled[i] *= 1 - act.pooled[i] * act.pooled[i] }   // tanh'
            }
            head.pooler.backward(dcls, dpooled, act.cls, rows: B)
            for b in 0..<B { (dx + act.starts[b] * H).update(from: dcls + b * H, count: H) }
        }

        // Layers, last first. dx: gradient of the current layer's output.
        let (dA, dTmpH, dH, dQKV, dCtx, dOPre, dAPre) = (act.dA!, act.dTmpH!, act.dH!, act.dQKV!, act.dCtx!, act.dOPre!, act.dAPre!)
        for l in layers.indices.reversed() {
            let w = layers[l], s = w.shape, F = s.ffn
            add(.hidden(l + 1), into: dx, count: T * H)
            // x_{l+1} = LN2(dropout(act(a·Wu + bu)·Wd + bd) + a)
            zk_layernorm_backward(dOPre, w.norm2W.grad, w.norm2B.grad, dx, act.oPre[l], w.norm2W.value, act.mean2[l], act.rstd2[l], Int32(T), Int32(H))
            dA.update(from: dOPre, count: T * H)                                  // residual into a
            zk_dropout_backward(dOPre, T * H, pHidden, seed(10 * l + 3))
            w.down.backward(dH, dOPre, act.h[l], rows: T)
            masks?.accumulate(neurons: l, act.h[l], dH, rows: T, width: F, groupSize: 1)
            zk_activation_backward(dH, act.hPre[l], dH, T * F, s.activation.code)
            w.up.backward(dTmpH, dH, act.a[l], rows: T)
            zk_residual_forward(dA, dA, dTmpH, T * H)
            // a = LN1(dropout(ctx·Wo + bo) + x_l)
            zk_layernorm_backward(dAPre, w.norm1W.grad, w.norm1B.grad, dA, act.aPre[l], w.norm1W.value, act.mean1[l], act.rstd1[l], Int32(T), Int32(H))
            dxPrev.update(from: dAPre, count: T * H)                              // residual into x_l
            zk_dropout_backward(dAPre, T * H, pHidden, seed(10 * l + 2))
            w.out.backward(dCtx, dAPre, act.ctx[l], rows: T)
            masks?.accumulate(heads: l, act.ctx[l], dCtx, rows: T, width: s.attentionWidth, groupSize: s.headDim)
            act.lengths.withUnsafeBufferPointer { lens in
                zk_attention_backward(dQKV, dCtx, act.qkv[l], act.probs[l], lens.baseAddress, act.sequenceSeeds(10 * l + 1),
                                      Int32(B), Int32(s.heads), Int32(s.headDim), pAttn)
            }
            if let g = extra[.scores(l)] { addScoreGradient(g, layer: l, act: act, into: dQKV) }
            w.qkv.backward(dTmpH, dQKV, act.xs[l], rows: T)
            zk_residual_forward(dxPrev, dxPrev, dTmpH, T * H)
            swap(&dx, &dxPrev)
        }
        add(.hidden(0), into: dx, count: T * H)

        // Embeddings: xs[0] = [projection](dropout(LN(word + type + position))).
        var dNormed = dx
        if let p = embeddings.projection {
            p.backward(act.dEmbNormed, dx, act.embNormed, rows: T)
            dNormed = act.dEmbNormed
        }
        zk_dropout_backward(dNormed, T * E, pHidden, seed(0))
        let dEmb = act.dEmb!
        zk_layernorm_backward(dEmb, embeddings.normW.grad, embeddings.normB.grad, dNormed, act.embSum, embeddings.normW.value, act.embMean, act.embRstd, Int32(T), Int32(E))
        let dword = store.view(spec.family.names.word).grad
        for b in 0..<B {
            let (t0, n) = (act.starts[b], Int(act.lengths[b]))
            batch.inputIds[(b * S)..<(b * S + n)].withUnsafeBufferPointer { ids in
                batch.tokenTypeIds[(b * S)..<(b * S + n)].withUnsafeBufferPointer { types in
                    zk_embedding_backward(dword, embeddings.position.grad, embeddings.tokenType?.grad, dEmb + t0 * E, ids.baseAddress, types.baseAddress, 1, Int32(n), Int32(E))
                }
            }
        }
    }

    /// Scores = scale·Q·Kᵀ per sequence and head, so a gradient G on them adds scale·G·K to dQ and
    /// scale·Gᵀ·Q to dK.
    private func addScoreGradient(_ g: UnsafePointer<Float>, layer l: Int, act: Activations, into dQKV: Floats) {
        let s = spec.layers[l], A = s.attentionWidth, hd = Int32(s.headDim), ld = Int32(3 * A)
        let scaled = Tensor(shape: [s.heads * act.totalSquares])
        let scale = 1 / Float(s.headDim).squareRoot()
        for i in 0..<scaled.count { scaled[i] = g[i] * scale }
        act.forEachHead(s) { b, h, L, q, k in
            let G = scaled.data + (s.heads * act.squares[b] + h * L * L), n = Int32(L)
            zk_sgemm_nn(n, hd, n, G, n, act.qkv[l] + k, ld, 1, dQKV + q, ld)   // dQ += G·K
            zk_sgemm_tn(n, hd, n, G, n, act.qkv[l] + q, ld, 1, dQKV + k, ld)   // dK += Gᵀ·Q
        }
    }
}

/// |∂L/∂ξ| of a unit mask ξ on each attention head's output and on each FFN neuron's output
/// (Michel et al., 2019), accumulated over backward passes: for a head, Σ over tokens and the
/// head's columns of ctx ⊙ ∂L/∂ctx; for a neuron, Σ over tokens of h ⊙ ∂L/∂h; the absolute value is
/// taken per batch. Per executed layer (shared ALBERT layers are scored per use).
public final class MaskGradients {
    public private(set) var heads: [[Double]]
    public private(set) var neurons: [[Double]]

    public init(_ spec: ModelSpec) {
        heads = spec.layers.map { [Double](repeating: 0, count: $0.heads) }
        neurons = spec.layers.map { [Double](repeating: 0, count: $0.ffn) }
    }

    func accumulate(heads l: Int, _ x: UnsafePointer<Float>, _ dx: UnsafePointer<Float>, rows: Int, width: Int, groupSize: Int) {
        add(&heads[l], x, dx, rows: rows, width: width, groupSize: groupSize)
    }

    func accumulate(neurons l: Int, _ x: UnsafePointer<Float>, _ dx: UnsafePointer<Float>, rows: Int, width: Int, groupSize: Int) {
        add(&neurons[l], x, dx, rows: rows, width: width, groupSize: groupSize)
    }

    private func add(_ into: inout [Double], _ x: UnsafePointer<Float>, _ dx: UnsafePointer<Float>, rows: Int, width: Int, groupSize: Int) {
        var column = [Double](repeating: 0, count: width)
        column.withUnsafeMutableBufferPointer { c in
            for t in 0..<rows {
                let (xr, dr) = (x + t * width, dx + t * width)
                for j in 0..<width { c[j] += Double(xr[j] * dr[j]) }
            }
        }
        for g in 0..<(width / groupSize) { into[g] += abs(column[(g * groupSize)..<((g + 1) * groupSize)].reduce(0, +)) }
    }
}
