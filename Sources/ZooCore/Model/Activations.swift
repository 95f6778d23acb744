import CKernels
import Foundation

/// What a recording forward pass keeps, and the backward pass's gradient buffers: carved out of one
/// arena that is reused from step to step and grown only when a larger batch arrives (no allocation,
/// no page faults per step). Tokens are packed (T = Σ lengths, sequence after sequence).
///
/// Taps for distillation, readable after `Network.record`: `hidden(l)` (l = 0: the embedding output,
/// after ALBERT's projection; l = layer count: the last hidden states), `scores(l)` (pre-softmax
/// attention scores, computed on request), `logits`.
public final class Activations {
    public private(set) var T = 0, B = 0
    public private(set) var starts: [Int] = [], lengths: [Int32] = []
    /// Offset of sequence b's block in a layer's probabilities / scores, per head: Σ_{c<b} L_c²
    /// (the layer's block of sequence b starts at heads · squares[b]).
    public private(set) var squares: [Int] = []
    public private(set) var totalSquares = 0      // Σ L_b²
    public private(set) var dropoutSeed: UInt64?

    var embSum: Floats!, embMean: Floats!, embRstd: Floats!, embNormed: Floats!
    public private(set) var xs: [Floats] = []          // input of layer l; xs[L] = last hidden states
    var qkv: [Floats] = [], probs: [Floats] = [], ctx: [Floats] = []
    var aPre: [Floats] = [], mean1: [Floats] = [], rstd1: [Floats] = [], a: [Floats] = []
    var hPre: [Floats] = [], h: [Floats] = []
    var oPre: [Floats] = [], mean2: [Floats] = [], rstd2: [Floats] = []
    var cls: Floats!, pooled: Floats!, dropped: Floats!
    public private(set) var logits: Floats!
    // backward
    var dlogits: Floats!, dpooled: Floats!, dcls: Floats!, dx: Floats!, dxPrev: Floats!, dA: Floats!, dTmpH: Floats!
    var dOPre: Floats!, dAPre: Floats!, dH: Floats!, dQKV: Floats!, dCtx: Floats!, dEmb: Floats!, dEmbNormed: Floats!
    private var arena: Tensor?

    /// Lays out the buffers for a batch with these sequence lengths.
    func prepare(_ spec: ModelSpec, lengths: [Int32], dropoutSeed: UInt64?) {
        self.lengths = lengths
        self.dropoutSeed = dropoutSeed
        B = lengths.count
        starts = []; squares = []
        var t = 0, sq = 0
        for n in lengths.map({ Int($0) }) { starts.append(t); squares.append(sq); t += n; sq += n * n }
        T = t
        totalSquares = sq
        let (E, H, C) = (spec.embedding, spec.hidden, max(spec.numLabels, 1))
        let Amax = spec.layers.map(\.attentionWidth).max()!, Fmax = spec.layers.map(\.ffn).max()!
        // Every buffer is named once, here: a first pass measures, the second assigns.
        func carve(_ take: (Int) -> Floats) {
            embSum = take(T * E); embMean = take(T); embRstd = take(T); embNormed = spec.projection ? take(T * E) : nil
            xs = []; qkv = []; probs = []; ctx = []; aPre = []; mean1 = []; rstd1 = []; a = []; hPre = []; h = []; oPre = []; mean2 = []; rstd2 = []
            for l in spec.layers {
                let (A, F) = (l.attentionWidth, l.ffn)
                xs.append(take(T * H)); qkv.append(take(T * 3 * A)); probs.append(take(l.heads * sq)); ctx.append(take(T * A))
                aPre.append(take(T * H)); mean1.append(take(T)); rstd1.append(take(T)); a.append(take(T * H))
                hPre.append(take(T * F)); h.append(take(T * F)); oPre.append(take(T * H)); mean2.append(take(T)); rstd2.append(take(T))
            }
            xs.append(take(T * H))
            cls = take(B * H); pooled = take(B * H); dropped = take(B * H); logits = take(B * C)
            dlogits = take(B * C); dpooled = take(B * H); dcls = take(B * H)
            dx = take(T * H); dxPrev = take(T * H); dA = take(T * H); dTmpH = take(T * H); dOPre = take(T * H); dAPre = take(T * H)
            dH = take(T * Fmax); dQKV = take(T * 3 * Amax); dCtx = take(T * Amax); dEmb = take(T * E); dEmbNormed = take(T * E)
        }
        var need = 0
        let dummy = Floats(bitPattern: 64)!
        carve { need += ($0 + 15) / 16 * 16; return dummy }
        // Grown by half: evaluation's length-sorted batches would otherwise grow it at every batch.
        if arena == nil || arena!.count < need { arena = Tensor(shape: [max(need, (arena?.count ?? 0) * 3 / 2)]) }
        var p = arena!.data
        carve { n in defer { p += (n + 15) / 16 * 16 }; return p }
    }

    /// Dropout sites of one step get distinct seeds derived from the step's seed.
    func siteSeed(_ site: Int) -> UInt64 {
        var r = SplitMix64(seed: (dropoutSeed ?? 0) &+ UInt64(site) &* 0x9E37_79B9_7F4A_7C15)
        return r.next()
    }

    /// The attention-dropout seeds of a site's sequences (each sequence its own masks).
    func sequenceSeeds(_ site: Int) -> [UInt64] {
        let s = siteSeed(site)
        return (0..<B).map { s ^ (UInt64($0 + 1) &* 0xD1B5_4A32_D192_ED03) }
    }

    /// Hidden states tap: [T, H], packed. l = 0 is the embedding output.
    public func hidden(_ l: Int) -> UnsafePointer<Float> { UnsafePointer(xs[l]) }

    /// Pre-softmax attention scores of layer `l`, scale·Q·Kᵀ per sequence and head (no padding: each
    /// sequence attends over its own tokens), laid out like the probabilities: sequence b's block of
    /// heads × L_b × L_b starts at heads · squares[b].
    public func scores(_ l: Int, spec: ModelSpec) -> Tensor {
        let s = spec.layers[l], A = s.attentionWidth
        let out = Tensor(shape: [s.heads * totalSquares])
        let scale = 1 / Float(s.headDim).squareRoot()
        forEachHead(s) { b, h, L, q, k in
            zk_sgemm_nt(Int32(L), Int32(L), Int32(s.headDim), self.qkv[l] + q, Int32(3 * A), self.qkv[l] + k, Int32(3 * A), 0,
                        out.data + (s.heads * self.squares[b] + h * L * L), Int32(L))
        }
        for i in 0..<out.count { out[i] *= scale }
        return out
    }

    /// Calls `body(b, h, L, q, k)` per sequence and head: q and k are the offsets of the head's
    /// query and key columns in the layer's qkv buffer at the sequence's first token.
    func forEachHead(_ s: ModelSpec.Layer, _ body: (Int, Int, Int, Int, Int) -> Void) {
        let A = s.attentionWidth
        for b in 0..<B {
            for h in 0..<s.heads {
                let q = starts[b] * 3 * A + h * s.headDim
                body(b, h, Int(lengths[b]), q, q + A)
            }
        }
    }
}
