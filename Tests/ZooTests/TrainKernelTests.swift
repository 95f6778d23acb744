import CKernels
import Foundation
import XCTest
@testable import ZooCore

/// Every backward kernel against central finite differences of its own forward kernel, on small
/// shapes: L(x) = Σ dout ⊙ f(x), numeric dL/dx with step 1e-3 in float32. Tolerance:
/// |analytic − numeric| ≤ 3e-3 + 3e-2·|numeric| (float32 rounding of L over the step dominates).
final class TrainKernelTests: XCTestCase {
    var rng = SplitMix64(seed: 9)
    func random(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in rng.symmetric() * scale } }

    override func setUp() { zk_set_threads(2) }

    /// Checks `analytic` against the finite-difference gradient of Σ dout·f(x) for every element of x.
    func check(_ name: String, _ x: [Float], _ analytic: [Float], dout: [Float], f: ([Float]) -> [Float],
               file: StaticString = #filePath, line: UInt = #line) {
        func loss(_ v: [Float]) -> Double { zip(f(v), dout).map { Double($0) * Double($1) }.reduce(0, +) }
        let h: Float = 1e-3
        var worst = 0.0
        for i in x.indices {
            var p = x, m = x
            p[i] += h; m[i] -= h
            let numeric = (loss(p) - loss(m)) / Double(2 * h)
            let err = abs(Double(analytic[i]) - numeric)
            XCTAssertLessThan(err, 3e-3 + 3e-2 * abs(numeric), "\(name)[\(i)]: analytic \(analytic[i]) vs numeric \(numeric)", file: file, line: line)
            worst = max(worst, err)
        }
    }

    func testLinearBackward() {
        let (M, N, K) = (3, 5, 4)
        let x = random(M * K), w = random(N * K), b = random(N), dout = random(M * N)
        func fwd(_ x: [Float], _ w: [Float], _ b: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: M * N)
            zk_linear_forward(&out, x, w, b, Int32(M), Int32(N), Int32(K))
            return out
        }
        var dx = [Float](repeating: .nan, count: M * K), dw = [Float](repeating: 0.5, count: N * K), db = [Float](repeating: 0.25, count: N)
        zk_linear_backward(&dx, &dw, &db, dout, x, w, Int32(M), Int32(N), Int32(K))
        check("dx", x, dx, dout: dout) { fwd($0, w, b) }
        check("dw", w, dw.map { $0 - 0.5 }, dout: dout) { fwd(x, $0, b) }   // accumulated onto 0.5
        check("db", b, db.map { $0 - 0.25 }, dout: dout) { fwd(x, w, $0) }
    }

    func testGeluBackward() {
        for level in simdLevels {
            zk_set_simd(level)
            let x = random(40, scale: 4), dout = random(40)
            var dx = [Float](repeating: 0, count: 40)
            zk_gelu_backward(&dx, x, dout, 40)
            check("gelu simd \(level)", x, dx, dout: dout) { v in var o = v; zk_gelu_forward(&o, v, v.count); return o }
        }
        zk_set_simd(-1)
    }

    /// zk_activation_backward for every code and both row copies: against finite differences of
    /// zk_activation_forward (the tolerance above; ReLU's inputs kept 0.01 from its kink), against the
    /// double derivative on x ∈ [−8, 8) within 1e-6 absolute (NONE and RELU exact), in place (dinp =
    /// dout) bitwise equal to out of place, and zk_gelu_backward bitwise equal to the GELU code.
    func testActivationBackward() {
        for level in simdLevels {
            zk_set_simd(level)
            for act in allActivations {
                let name = "simd \(level) \(activationNames[Int(act)])"
                let x = random(40, scale: 4).map { abs($0) < 0.01 ? 0.5 : $0 }, dout = random(40)
                var dx = [Float](repeating: .nan, count: 40)
                zk_activation_backward(&dx, x, dout, 40, act)
                check(name, x, dx, dout: dout) { v in var o = v; zk_activation_forward(&o, v, v.count, act); return o }

                let n = 20000
                let xs = random(n, scale: 8) + [0, -0.0, 1e-30, -20, 20, -60, 60], g = random(xs.count)
                var d = [Float](repeating: .nan, count: xs.count), inPlace = g
                zk_activation_backward(&d, xs, g, xs.count, act)
                zk_activation_backward(&inPlace, xs, inPlace, xs.count, act)
                XCTAssertEqual(inPlace.map(\.bitPattern), d.map(\.bitPattern), "\(name): in place")
                var worst = 0.0
                for i in xs.indices {
                    let r = Double(g[i]) * activationDerivativeReference(Double(xs[i]), act)
                    switch Int(act) {
                    case ZK_ACT_NONE: XCTAssertEqual(d[i].bitPattern, g[i].bitPattern, name)
                    case ZK_ACT_RELU: XCTAssertEqual(d[i], xs[i] > 0 ? g[i] : 0, name)
                    default: XCTAssertLessThan(abs(Double(d[i]) - r), 1e-6, "\(name) x=\(xs[i])")
                    }
                    worst = max(worst, abs(Double(d[i]) - r))
                }
                print("activation backward \(name): worst |error| against the double derivative \(worst)")
                if Int(act) == ZK_ACT_GELU {
                    var viaGelu = [Float](repeating: 0, count: xs.count)
                    zk_gelu_backward(&viaGelu, xs, g, xs.count)
                    XCTAssertEqual(viaGelu.map(\.bitPattern), d.map(\.bitPattern), "zk_gelu_backward is the GELU code")
                }
            }
        }
        zk_set_simd(-1)
    }

    func testLayerNormBackward() {
        let (M, N) = (3, 7)
        let x = random(M * N, scale: 2), g = random(N), b = random(N), dout = random(M * N)
        func fwd(_ x: [Float], _ g: [Float], _ b: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: M * N)
            zk_layernorm_forward(&out, nil, nil, x, g, b, Int32(M), Int32(N), 1e-5)
            return out
        }
        var out = [Float](repeating: 0, count: M * N), mean = [Float](repeating: 0, count: M), rstd = mean
        zk_layernorm_forward(&out, &mean, &rstd, x, g, b, Int32(M), Int32(N), 1e-5)
        var dx = [Float](repeating: 0, count: M * N), dg = [Float](repeating: 0, count: N), db = dg
        zk_layernorm_backward(&dx, &dg, &db, dout, x, g, mean, rstd, Int32(M), Int32(N))
        check("dx", x, dx, dout: dout) { fwd($0, g, b) }
        check("dgamma", g, dg, dout: dout) { fwd(x, $0, b) }
        check("dbeta", b, db, dout: dout) { fwd(x, g, $0) }
    }

    func testAttentionBackward() {
        for level in simdLevels {
            zk_set_simd(level)
            attentionBackward(dropout: 0)
            attentionBackward(dropout: 0.3)
            attentionBackward(dropout: 0, heads: 3, dh: 8, lengths: [5, 3, 11])   // A = 24: any heads·head_dim
            attentionBackward(dropout: 0.3, heads: 3, dh: 8, lengths: [5, 3, 11])
        }
        zk_set_simd(-1)
    }

    /// Three packed sequences (5, 3 and 37 tokens: partial and several 8-row / 32-column tiles; no padding).
    func attentionBackward(dropout: Float, heads: Int = 2, dh: Int = 3, lengths: [Int32] = [5, 3, 37]) {
        let H = heads * dh, seeds: [UInt64] = [7, 8, 9]
        let T = Int(lengths.reduce(0, +)), probCount = lengths.map { heads * Int($0 * $0) }.reduce(0, +)
        let qkv = random(T * 3 * H), dout = random(T * H)
        func fwd(_ v: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: T * H), probs = [Float](repeating: 0, count: probCount)
            zk_attention_train_forward(&out, &probs, v, lengths, seeds, Int32(lengths.count), Int32(heads), Int32(dh), dropout)
            return out
        }
        var out = [Float](repeating: 0, count: T * H), probs = [Float](repeating: 0, count: probCount)
        zk_attention_train_forward(&out, &probs, qkv, lengths, seeds, Int32(lengths.count), Int32(heads), Int32(dh), dropout)
        if dropout == 0 {   // without dropout the training forward equals the inference kernel, sequence by sequence
            var t0 = 0
            for n in lengths.map(Int.init) {
                var inference = [Float](repeating: 0, count: n * H), len = Int32(n)
                var scratch = [Float](repeating: 0, count: zk_attention_scratch_floats(Int32(n), Int32(dh)))
                zk_attention_forward(&inference, Array(qkv[t0 * 3 * H..<(t0 + n) * 3 * H]), &len, 1, Int32(n), Int32(heads), Int32(dh), &scratch)
                for i in inference.indices { XCTAssertEqual(out[t0 * H + i], inference[i], accuracy: 1e-5) }
                t0 += n
            }
        } else {   // each sequence draws its own mask from its seed: swapping the seeds changes the output
            var swapped = [Float](repeating: 0, count: T * H)
            zk_attention_train_forward(&swapped, &probs, qkv, lengths, [8, 7, 9], Int32(lengths.count), Int32(heads), Int32(dh), dropout)
            XCTAssertNotEqual(out, swapped)
        }
        var dqkv = [Float](repeating: .nan, count: qkv.count)
        zk_attention_backward(&dqkv, dout, qkv, probs, lengths, seeds, Int32(lengths.count), Int32(heads), Int32(dh), dropout)
        check("dqkv p=\(dropout)", qkv, dqkv, dout: dout, f: fwd)
    }

    func testEmbeddingBackward() {
        let (B, S, H, V) = (2, 3, 4, 5)
        let ids: [Int32] = [1, 1, 4, 0, 1, 2], types: [Int32] = [0, 1, 1, 0, 0, 1]
        let word = random(V * H), pos = random(S * H), type = random(2 * H), dout = random(B * S * H)
        func fwd(_ w: [Float], _ p: [Float], _ t: [Float]) -> [Float] {
            var x = ids.flatMap { w[Int($0) * H..<(Int($0) + 1) * H] }
            zk_embedding_forward(&x, types, Int32(B), Int32(S), p, t, Int32(H))
            return x
        }
        var dw = [Float](repeating: 0, count: V * H), dp = [Float](repeating: 0, count: S * H), dt = [Float](repeating: 0, count: 2 * H)
        zk_embedding_backward(&dw, &dp, &dt, dout, ids, types, Int32(B), Int32(S), Int32(H))
        check("dword", word, dw, dout: dout) { fwd($0, pos, type) }
        check("dpos", pos, dp, dout: dout) { fwd(word, $0, type) }
        check("dtype", type, dt, dout: dout) { fwd(word, pos, $0) }
    }

    /// Without a token-type table (dtype NULL, DistilBERT): word and position gradients against finite
    /// differences of the forward without a type table, and equal to those of the call with one.
    func testEmbeddingBackwardWithoutTypeTable() {
        let (B, S, H, V) = (2, 3, 4, 5)
        let ids: [Int32] = [1, 1, 4, 0, 1, 2], types: [Int32] = [0, 1, 1, 0, 0, 1]
        let word = random(V * H), pos = random(S * H), dout = random(B * S * H)
        func fwd(_ w: [Float], _ p: [Float]) -> [Float] {
            var x = ids.flatMap { w[Int($0) * H..<(Int($0) + 1) * H] }
            zk_embedding_forward(&x, nil, Int32(B), Int32(S), p, nil, Int32(H))
            return x
        }
        var dw = [Float](repeating: 0, count: V * H), dp = [Float](repeating: 0, count: S * H)
        zk_embedding_backward(&dw, &dp, nil, dout, ids, types, Int32(B), Int32(S), Int32(H))
        check("dword", word, dw, dout: dout) { fwd($0, pos) }
        check("dpos", pos, dp, dout: dout) { fwd(word, $0) }
        var dw2 = [Float](repeating: 0, count: V * H), dp2 = [Float](repeating: 0, count: S * H), dt = [Float](repeating: 0, count: 2 * H)
        zk_embedding_backward(&dw2, &dp2, &dt, dout, ids, types, Int32(B), Int32(S), Int32(H))
        XCTAssertEqual(dw, dw2)
        XCTAssertEqual(dp, dp2)
    }

    func testLossesBackward() {
        let (B, C) = (4, 3)
        let logits = random(B * C, scale: 3), labels: [Int32] = [0, 2, 1, 2]
        var dl = [Float](repeating: 0, count: B * C)
        let loss = zk_cross_entropy_forward_backward(&dl, logits, labels, Int32(B), Int32(C))
        // Reference: mean of -log softmax at the label, in double.
        var ref = 0.0
        for b in 0..<B {
            let z = (0..<C).map { Double(logits[b * C + $0]) }
            ref += log(z.map { exp($0) }.reduce(0, +)) - z[Int(labels[b])]
        }
        XCTAssertEqual(Double(loss), ref / Double(B), accuracy: 1e-5)
        check("dlogits", logits, dl, dout: [1]) { [zk_cross_entropy_forward_backward(nil, $0, labels, Int32(B), Int32(C))] }
        let pred = random(5), target = random(5)
        var dp = [Float](repeating: 0, count: 5)
        _ = zk_mse_forward_backward(&dp, pred, target, 5)
        check("dpred", pred, dp, dout: [1]) { [zk_mse_forward_backward(nil, $0, target, 5)] }
    }

    func testDropoutIsReproducibleAndScaled() {
        let n = 10000
        var x = [Float](repeating: 1, count: n)
        zk_dropout_forward(&x, n, 0.1, 42)
        let kept = x.filter { $0 != 0 }
        XCTAssertEqual(Double(kept.count) / Double(n), 0.9, accuracy: 0.01)
        XCTAssertTrue(kept.allSatisfy { abs($0 - 1 / 0.9) < 1e-6 })
        var g = [Float](repeating: 1, count: n)
        zk_dropout_backward(&g, n, 0.1, 42)
        XCTAssertEqual(g, x, "backward drops exactly what forward dropped")
        zk_set_threads(1)
        var y = [Float](repeating: 1, count: n)
        zk_dropout_forward(&y, n, 0.1, 42)
        XCTAssertEqual(y, x, "same mask at any thread count")
        var z = [Float](repeating: 1, count: n)
        zk_dropout_forward(&z, n, 0.1, 43)
        XCTAssertNotEqual(z, x)
    }

    /// One AdamW step against torch.optim.AdamW's update written out in double.
    func testAdamWMatchesDefinition() {
        let n = 6
        var p = random(n), m = random(n, scale: 0.1), v = random(n).map { abs($0) * 0.01 }
        let g = random(n)
        let (p0, m0, v0) = (p, m, v)
        let (lr, b1, b2, eps, wd, step): (Float, Float, Float, Float, Float, Int32) = (1e-3, 0.9, 0.999, 1e-8, 0.01, 3)
        zk_adamw_update(&p, g, &m, &v, n, lr, b1, b2, eps, wd, step)
        for i in 0..<n {
            let pd = Double(p0[i]) * (1 - Double(lr * wd))
            let md = Double(b1) * Double(m0[i]) + Double(1 - b1) * Double(g[i])
            let vd = Double(b2) * Double(v0[i]) + Double(1 - b2) * Double(g[i]) * Double(g[i])
            let mh = md / (1 - pow(Double(b1), Double(step))), vh = vd / (1 - pow(Double(b2), Double(step)))
            XCTAssertEqual(Double(p[i]), pd - Double(lr) * mh / (vh.squareRoot() + Double(eps)), accuracy: 1e-6)
            XCTAssertEqual(Double(m[i]), md, accuracy: 1e-7)
            XCTAssertEqual(Double(v[i]), vd, accuracy: 1e-8)
        }
    }
}
