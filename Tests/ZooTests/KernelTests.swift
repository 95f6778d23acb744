import CKernels
import Foundation
import XCTest
@testable import ZooCore

/// Double-precision references of the ZK_ACT_* activations. The tanh form is written as x·σ(2u)
/// (1 + tanh u = 2σ(2u)) so that double does not cancel at negative x either.
func activationReference(_ x: Double, _ act: Int32) -> Double {
    switch Int(act) {
    case ZK_ACT_GELU: return 0.5 * x * (1 + erf(x / 2.0.squareRoot()))
    case ZK_ACT_GELU_TANH: return x / (1 + exp(-tanhGeluArgument(x)))
    case ZK_ACT_RELU: return max(x, 0)
    default: return x
    }
}

/// v = 2u = 2√(2/π)·(x + 0.044715·x³), the argument of σ in the tanh GELU.
func tanhGeluArgument(_ x: Double) -> Double { 2 * (2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x) }

/// d/dx of `activationReference` (ReLU'(0) = 0, as torch).
func activationDerivativeReference(_ x: Double, _ act: Int32) -> Double {
    switch Int(act) {
    case ZK_ACT_GELU: return 0.5 * (1 + erf(x / 2.0.squareRoot())) + x * exp(-0.5 * x * x) / (2 * Double.pi).squareRoot()
    case ZK_ACT_GELU_TANH:
        let s = 1 / (1 + exp(-tanhGeluArgument(x)))
        return s + x * s * (1 - s) * 2 * (2 / Double.pi).squareRoot() * (1 + 3 * 0.044715 * x * x)
    case ZK_ACT_RELU: return x > 0 ? 1 : 0
    default: return 1
    }
}

let allActivations: [Int32] = [ZK_ACT_NONE, ZK_ACT_GELU, ZK_ACT_GELU_TANH, ZK_ACT_RELU].map { Int32($0) }
let activationNames = ["none", "gelu", "gelu_tanh", "relu"]

/// Each C kernel against a plain double-precision reference written here, for both compiled copies
/// (AVX-512 and the portable fallback), with the error threshold stated per kernel.
/// The error bound of a float32 dot product of length `n` with Σ|aᵢbᵢ| = `absSum`: λ·√n·u·Σ|aᵢbᵢ|
/// (Higham & Mary's probabilistic bound, u = 2⁻²⁴, λ = 6) — the errors of any summation order,
/// blocking or FMA grow as √n, not as the worst case n. Plus u·|r| for the rounding of the result.
func dotBound(_ absSum: Double, _ n: Int, result r: Double) -> Double {
    let u = 0x1p-24
    return 6 * Double(n).squareRoot() * u * absSum + u * abs(r)
}

final class KernelTests: XCTestCase {
    var rng = SplitMix64(seed: 42)

    func random(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in rng.symmetric() * scale } }

    override func setUp() { zk_set_threads(2) }

    func testSgemmNTAndNNMatchReference() {
        for (M, N, K) in [(1, 1, 1), (7, 13, 5), (33, 65, 129), (128, 96, 384)] {
            let a = random(M * K), b = random(N * K), bt = random(K * N)
            var c = [Float](repeating: 0, count: M * N), c2 = c
            zk_sgemm_nt(Int32(M), Int32(N), Int32(K), a, Int32(K), b, Int32(K), 0, &c, Int32(N))
            zk_sgemm_nn(Int32(M), Int32(N), Int32(K), a, Int32(K), bt, Int32(N), 0, &c2, Int32(N))
            var worst = 0.0
            for i in 0..<M { for j in 0..<N {
                var r = 0.0, r2 = 0.0, s = 0.0, s2 = 0.0
                for k in 0..<K {
                    r += Double(a[i * K + k]) * Double(b[j * K + k]); s += abs(Double(a[i * K + k]) * Double(b[j * K + k]))
                    r2 += Double(a[i * K + k]) * Double(bt[k * N + j]); s2 += abs(Double(a[i * K + k]) * Double(bt[k * N + j]))
                }
                XCTAssertLessThanOrEqual(abs(Double(c[i * N + j]) - r), dotBound(s, K, result: r), "nt \(M)x\(N)x\(K)")
                XCTAssertLessThanOrEqual(abs(Double(c2[i * N + j]) - r2), dotBound(s2, K, result: r2), "nn \(M)x\(N)x\(K)")
                worst = max(worst, abs(Double(c[i * N + j]) - r) / dotBound(s, K, result: r), abs(Double(c2[i * N + j]) - r2) / dotBound(s2, K, result: r2))
            } }
            print("sgemm \(M)x\(N)x\(K): worst error \(worst) of the bound")
        }
    }

    func testLinearAddsBias() {
        let (M, N, K) = (5, 9, 17)
        let a = random(M * K), w = random(N * K), b = random(N)
        var out = [Float](repeating: 0, count: M * N)
        zk_linear_forward(&out, a, w, b, Int32(M), Int32(N), Int32(K))
        for i in 0..<M { for j in 0..<N {
            var r = Double(b[j])
            for k in 0..<K { r += Double(a[i * K + k]) * Double(w[j * K + k]) }
            XCTAssertEqual(Double(out[i * N + j]), r, accuracy: 1e-5)
        } }
    }

    /// Packed-weight GEMM with bias and GELU epilogues against a double reference, on shapes that
    /// hit every edge: row tails (M % 8), panel tails (N % 32), several K blocks (K > 768), the
    /// row-split and panel-split threading paths. Threshold: `dotBound` over K + 1 terms (the bias
    /// is one more), and for the GELU epilogue 1.13 (its largest slope) times that + 1e-6·max(1, |y|).
    func testPackedLinearMatchesReference() {
        forEachSIMD { level in
            for threads in [1, 2] {
                zk_set_threads(Int32(threads))
                for (M, N, K) in [(1, 1, 1), (5, 33, 7), (13, 70, 800), (300, 40, 64), (9, 312, 1600), (260, 96, 31)] {
                    let a = random(M * K), w = random(N * K), bias = random(N)
                    var packed = [Float](repeating: .nan, count: zk_packed_weight_floats(Int32(N), Int32(K)))
                    zk_pack_weight(&packed, w, Int32(N), Int32(K))
                    var plain = [Float](repeating: .nan, count: M * N), withBias = plain, withGelu = plain
                    zk_linear_packed_forward(&plain, a, packed, nil, Int32(M), Int32(N), Int32(K), 0)
                    zk_linear_packed_forward(&withBias, a, packed, bias, Int32(M), Int32(N), Int32(K), 0)
                    zk_linear_packed_forward(&withGelu, a, packed, bias, Int32(M), Int32(N), Int32(K), 1)
                    var worst = 0.0   // the largest error as a fraction of its bound
                    for i in 0..<M { for j in 0..<N {
                        var r = 0.0, s = 0.0
                        for k in 0..<K { let p = Double(a[i * K + k]) * Double(w[j * K + k]); r += p; s += abs(p) }
                        let rb = r + Double(bias[j])
                        let rg = 0.5 * rb * (1 + erf(rb / 2.0.squareRoot()))
                        let sb = s + abs(Double(bias[j]))
                        worst = max(worst, abs(Double(plain[i * N + j]) - r) / dotBound(s, K, result: r),
                                    abs(Double(withBias[i * N + j]) - rb) / dotBound(sb, K + 1, result: rb),
                                    abs(Double(withGelu[i * N + j]) - rg) / (1.13 * dotBound(sb, K + 1, result: rb) + 1e-6 * max(1, abs(rg))))
                    } }
                    XCTAssertLessThanOrEqual(worst, 1, "\(level) \(threads) threads \(M)x\(N)x\(K)")
                    if threads == 2 { print("packed linear \(level) \(M)x\(N)x\(K): worst error \(worst) of the bound") }
                }
            }
        }
        zk_set_threads(2)
    }

    /// GELU (erf form): the A&S erf approximation is good to 1.5e-7; threshold 1e-6 absolute.
    func testGeluMatchesErfReference() {
        forEachSIMD { level in
            let (M, N) = (3, 1000)
            let x = random(M * N, scale: 8), bias = random(N)
            var y = x
            zk_bias_gelu_forward(&y, bias, Int32(M), Int32(N))
            var z = x
            zk_gelu_forward(&z, x, x.count)
            var worst = 0.0, worst2 = 0.0
            for i in 0..<M * N {
                let v = Double(x[i] + bias[i % N])
                worst = max(worst, abs(Double(y[i]) - 0.5 * v * (1 + erf(v / 2.0.squareRoot()))))
                let u = Double(x[i])
                worst2 = max(worst2, abs(Double(z[i]) - 0.5 * u * (1 + erf(u / 2.0.squareRoot()))))
            }
            XCTAssertLessThan(worst, 1e-6, level)
            XCTAssertLessThan(worst2, 1e-6, level)
        }
    }

    /// LayerNorm, plain and fused with bias + residual: threshold 1e-5 absolute.
    func testLayerNormMatchesReference() {
        forEachSIMD { level in
            let (M, N) = (7, 385)
            let x = random(M * N, scale: 3), g = random(N), b = random(N), bias = random(N), res = random(M * N)
            var out = [Float](repeating: 0, count: M * N), mean = [Float](repeating: 0, count: M), rstd = mean
            zk_layernorm_forward(&out, &mean, &rstd, x, g, b, Int32(M), Int32(N), 1e-12)
            var fused = x
            zk_bias_residual_layernorm_forward(&fused, bias, res, g, b, Int32(M), Int32(N), 1e-5)
            for i in 0..<M {
                func ref(_ v: [Double], eps: Double) -> [Double] {
                    let m = v.reduce(0, +) / Double(N)
                    let var_ = v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(N)
                    return v.enumerated().map { j, e in (e - m) / (var_ + eps).squareRoot() * Double(g[j]) + Double(b[j]) }
                }
                let row = (0..<N).map { Double(x[i * N + $0]) }
                let r1 = ref(row, eps: 1e-12)
                let r2 = ref((0..<N).map { row[$0] + Double(bias[$0]) + Double(res[i * N + $0]) }, eps: 1e-5)
                XCTAssertEqual(Double(mean[i]), row.reduce(0, +) / Double(N), accuracy: 1e-5, level)
                for j in 0..<N {
                    XCTAssertEqual(Double(out[i * N + j]), r1[j], accuracy: 1e-5, level)
                    XCTAssertEqual(Double(fused[i * N + j]), r2[j], accuracy: 1e-5, level)
                }
            }
        }
    }

    /// Masked softmax: threshold 1e-6 absolute; masked columns exactly 0.
    func testSoftmaxMasksColumns() {
        forEachSIMD { level in
            let (rows, cols, valid) = (4, 37, 29)
            var s = random(rows * cols, scale: 10)
            let x = s
            zk_softmax_forward(&s, Int32(rows), Int32(cols), Int32(valid), 0.5)
            for i in 0..<rows {
                let v = (0..<valid).map { Double(x[i * cols + $0]) * 0.5 }
                let m = v.max()!
                let e = v.map { exp($0 - m) }
                let z = e.reduce(0, +)
                for j in 0..<valid { XCTAssertEqual(Double(s[i * cols + j]), e[j] / z, accuracy: 1e-6, level) }
                for j in valid..<cols { XCTAssertEqual(s[i * cols + j], 0, level) }
            }
        }
    }

    /// The int8 models' attention with bf16 products (packed sequences, lengths 1 … 70 incl. odd ones,
    /// head widths 32 and 64) against a double reference. Bound, from the roundings (u = 2^-8, bf16's
    /// unit roundoff): each score is off by at most Δ = (2u + u²)·Σ_d |q_d·k_d|/√d (q·1/√d and k
    /// rounded), so each probability by a factor within e^(±2Δ) (and the exp's 2e-6), then rounded
    /// (u), times values rounded (u): |error| ≤ max|v|·((1 + u)(e^(2Δ) − 1 + u + 1e-5) + u) + 1e-6 per
    /// row, Δ the row's largest. Where the bf16 path is not active (no AVX512_BF16, a forced lower
    /// level, head width 26) the output is the fp32 attention's bit for bit.
    func testBF16AttentionWithinRoundingBound() {
        let lengths: [Int32] = [5, 1, 37, 70, 33], T = Int(lengths.reduce(0, +)), u = 1.0 / 256
        print("AVX512_BF16: \(zk_cpu_has_avx512_bf16() != 0)")
        forEachSIMD { level in
            for threads in [1, 2] { for (heads, dh) in [(3, 32), (2, 64), (2, 26)] {
                zk_set_threads(Int32(threads))
                let A = heads * dh, qkv = random(T * 3 * A, scale: 2)
                var scratch = [Float](repeating: 0, count: zk_attention_scratch_floats(70, Int32(dh)))
                var out = [Float](repeating: .nan, count: T * A), fp32 = out
                zk_attention_packed_forward_bf16(&out, qkv, lengths, Int32(lengths.count), Int32(heads), Int32(dh), &scratch)
                zk_attention_packed_forward(&fp32, qkv, lengths, Int32(lengths.count), Int32(heads), Int32(dh), &scratch)
                let name = "\(level) \(threads) threads, heads \(heads) × \(dh)"
                guard zk_attention_bf16_active(Int32(dh)) != 0 else {
                    XCTAssertEqual(out.map(\.bitPattern), fp32.map(\.bitPattern), name)
                    continue
                }
                XCTAssertNotEqual(out, fp32, "\(name): the bf16 path ran")
                var t0 = 0, worst = 0.0
                for L in lengths.map(Int.init) {
                    for h in 0..<heads {
                        func at(_ t: Int, _ part: Int, _ d: Int) -> Double { Double(qkv[(t0 + t) * 3 * A + part * A + h * dh + d]) }
                        let maxV = (0..<L).flatMap { j in (0..<dh).map { abs(at(j, 2, $0)) } }.max()!
                        for i in 0..<L {
                            let scores = (0..<L).map { j in (0..<dh).map { at(i, 0, $0) * at(j, 1, $0) }.reduce(0, +) / Double(dh).squareRoot() }
                            let delta = (0..<L).map { j in (0..<dh).map { abs(at(i, 0, $0) * at(j, 1, $0)) }.reduce(0, +) }.max()! * (2 * u + u * u) / Double(dh).squareRoot()
                            let bound = maxV * ((1 + u) * (exp(2 * delta) - 1 + u + 1e-5) + u) + 1e-6
                            let m = scores.max()!, e = scores.map { exp($0 - m) }, z = e.reduce(0, +)
                            for d in 0..<dh {
                                let r = (0..<L).map { e[$0] / z * at($0, 2, d) }.reduce(0, +)
                                let got = Double(out[(t0 + i) * A + h * dh + d])
                                XCTAssertLessThanOrEqual(abs(got - r), bound, "\(name) L\(L) head \(h) row \(i) dim \(d)")
                                worst = max(worst, abs(got - r) / bound)
                            }
                        }
                    }
                    t0 += L
                }
                print("bf16 attention \(name): worst error \(worst) of the bound")
            } }
        }
        zk_set_threads(2)
    }

    /// Attention core against a naive reference with HF's additive mask: threshold 2e-5 absolute.
    func testAttentionMatchesNaiveReference() {
        forEachSIMD { level in
            for (B, S, heads, dh) in [(2, 13, 3, 8), (3, 40, 2, 26), (1, 70, 4, 64), (2, 9, 12, 32)] {
                let H = heads * dh
                let qkv = random(B * S * 3 * H)
                let lengths: [Int32] = (0..<B).map { Int32(max(1, S - 5 * $0)) }
                var out = [Float](repeating: .nan, count: B * S * H)
                var scratch = [Float](repeating: 0, count: zk_attention_scratch_floats(Int32(S), Int32(dh)))
                zk_attention_forward(&out, qkv, lengths, Int32(B), Int32(S), Int32(heads), Int32(dh), &scratch)
                var worst = 0.0
                for b in 0..<B { for h in 0..<heads { for i in 0..<S {
                    let L = Int(lengths[b])
                    func at(_ t: Int, _ part: Int, _ d: Int) -> Double { Double(qkv[(b * S + t) * 3 * H + part * H + h * dh + d]) }
                    let scores = (0..<L).map { j in (0..<dh).map { at(i, 0, $0) * at(j, 1, $0) }.reduce(0, +) / Double(dh).squareRoot() }
                    let m = scores.max()!
                    let e = scores.map { exp($0 - m) }
                    let z = e.reduce(0, +)
                    for d in 0..<dh {
                        let r = (0..<L).map { e[$0] / z * at($0, 2, d) }.reduce(0, +)
                        worst = max(worst, abs(Double(out[(b * S + i) * H + h * dh + d]) - r))
                    }
                } } }
                XCTAssertLessThan(worst, 2e-5, "\(level) B\(B) S\(S) h\(heads) dh\(dh)")
            }
        }
    }

    /// zk_activation_forward for every code against the double references, out of place and in place,
    /// on x ∈ [−8, 8) plus edge values. Thresholds: NONE and RELU exact; GELU 1e-6 absolute (as above);
    /// GELU_TANH the bound stated in rows.h, relative 2^-23·(3 + 2.5·|v|·(1 − σ(v))) with v = 2u (3 ulp
    /// for x ≥ 0, 2e-5 at x = −9: float rounding of v, amplified by e^(−v)), and where −v > 88
    /// (expf's clamp, x < −9.17) |error| ≤ 6.1e-39·|x|.
    func testActivationForwardMatchesDoubleReference() {
        let edges: [Float] = [0, -0.0, 1e-30, -1e-30, 1e-6, -1e-6, 1, -1, 9, -9, 9.5, -9.5, 20, -20, 60, -60]
        let x = random(20000, scale: 8) + edges
        forEachSIMD { level in
            for act in allActivations {
                let name = "\(level) \(activationNames[Int(act)])"
                var y = [Float](repeating: .nan, count: x.count), inPlace = x
                zk_activation_forward(&y, x, x.count, act)
                zk_activation_forward(&inPlace, inPlace, x.count, act)
                XCTAssertEqual(y.map(\.bitPattern), inPlace.map(\.bitPattern), "\(name): in place")
                var worstAbs = 0.0, worstRel = 0.0, worstBound = 0.0
                for (xi, yi) in zip(x, y) {
                    let r = activationReference(Double(xi), act), err = abs(Double(yi) - r)
                    switch Int(act) {
                    case ZK_ACT_NONE: XCTAssertEqual(yi.bitPattern, xi.bitPattern, name)
                    case ZK_ACT_RELU: XCTAssertEqual(yi, max(xi, 0), name)
                    case ZK_ACT_GELU: XCTAssertLessThan(err, 1e-6, "\(name) x=\(xi)")
                    default:
                        let v = tanhGeluArgument(Double(xi)), s = 1 / (1 + exp(-v))
                        if -v < 87.9 {
                            let bound = 0x1p-23 * (3 + 2.5 * abs(v) * (1 - s)) * abs(r)
                            XCTAssertLessThanOrEqual(err, bound, "\(name) x=\(xi): \(yi) vs \(r)")
                            if r != 0 { worstRel = max(worstRel, err / abs(r)); worstBound = max(worstBound, err / bound) }
                        } else {
                            XCTAssertLessThanOrEqual(err, 6.1e-39 * abs(Double(xi)), "\(name) x=\(xi)")
                        }
                    }
                    worstAbs = max(worstAbs, err)
                }
                print("activation forward \(name): worst |error| \(worstAbs)" + (Int(act) == ZK_ACT_GELU_TANH ? ", worst relative (−v < 87.9) \(worstRel), worst error / bound \(worstBound)" : ""))
            }
            var viaGelu = [Float](repeating: 0, count: x.count), viaAct = viaGelu
            zk_gelu_forward(&viaGelu, x, x.count)
            zk_activation_forward(&viaAct, x, x.count, Int32(ZK_ACT_GELU))
            XCTAssertEqual(viaGelu.map(\.bitPattern), viaAct.map(\.bitPattern), "\(level): zk_gelu_forward is the GELU code")
        }
    }

    /// Packed Linear with each activation code in the epilogue: bitwise equal to the plain packed
    /// Linear followed by zk_activation_forward (the same row arithmetic), and against OpenBLAS's
    /// zk_linear_forward + the double reference activation within 1.13 (the GELUs' largest slope) ×
    /// twice `dotBound` (both are float32 GEMMs) + 1e-6·max(1, |y|) (activation error).
    func testPackedLinearEachActivation() {
        forEachSIMD { level in
            for threads in [1, 2] {
                zk_set_threads(Int32(threads))
                for (M, N, K) in [(5, 33, 7), (13, 70, 800), (300, 40, 64), (9, 100, 31)] {
                    let a = random(M * K), w = random(N * K), bias = random(N)
                    var packed = [Float](repeating: .nan, count: zk_packed_weight_floats(Int32(N), Int32(K)))
                    zk_pack_weight(&packed, w, Int32(N), Int32(K))
                    var plain = [Float](repeating: .nan, count: M * N), blas = plain
                    zk_linear_packed_forward(&plain, a, packed, bias, Int32(M), Int32(N), Int32(K), Int32(ZK_ACT_NONE))
                    zk_linear_forward(&blas, a, w, bias, Int32(M), Int32(N), Int32(K))
                    let bound = (0..<M * N).map { i in   // both GEMMs' error bound per output
                        let (m, n) = (i / N, i % N)
                        let s = (0..<K).map { abs(Double(a[m * K + $0]) * Double(w[n * K + $0])) }.reduce(abs(Double(bias[n])), +)
                        return 2 * dotBound(s, K + 1, result: Double(blas[i]))
                    }
                    for act in allActivations {
                        let name = "\(level) \(threads) threads \(M)x\(N)x\(K) \(activationNames[Int(act)])"
                        var fused = [Float](repeating: .nan, count: M * N), separate = plain
                        zk_linear_packed_forward(&fused, a, packed, bias, Int32(M), Int32(N), Int32(K), act)
                        zk_activation_forward(&separate, separate, separate.count, act)
                        XCTAssertEqual(fused.map(\.bitPattern), separate.map(\.bitPattern), name)
                        var worst = 0.0
                        for i in 0..<M * N {
                            let r = activationReference(Double(blas[i]), act)
                            let err = abs(Double(fused[i]) - r)
                            let limit = 1.13 * bound[i] + 1e-6 * max(1, abs(r))
                            XCTAssertLessThanOrEqual(err, limit, "\(name) [\(i)]")
                            worst = max(worst, err / limit)
                        }
                        if M == 13 { print("packed linear \(name): worst error \(worst) of the bound") }
                    }
                }
            }
        }
        zk_set_threads(2)
    }

    /// int8 Linear with each activation code, for every int8 kernel (VNNI, AVX2, scalar) and every row
    /// copy: bitwise equal to act=NONE followed by zk_activation_forward, and against the fp32
    /// Linear + double activation within QuantTests' rounding bound times the activation's largest
    /// slope (1.13 for the GELUs, 1 for ReLU) + 1e-6·max(1, |y|).
    func testQLinearEachActivation() {
        let (M, N, K) = (37, 70, 131)
        let x = random(M * K, scale: 2), w = random(N * K, scale: 0.1), bias = random(N)
        var q = [Int8](repeating: 0, count: N * K), ws = [Float](repeating: 0, count: N)
        zk_quantize_weight(&q, &ws, w, Int32(N), Int32(K), 8, 1)
        var packed = [Int8](repeating: 0, count: zk_qpacked_weight_bytes(Int32(N), Int32(K))), colsum = [Int32](repeating: 0, count: N)
        zk_qpack_weight(&packed, &colsum, q, Int32(N), Int32(K))
        var ref = [Float](repeating: 0, count: M * N)
        zk_linear_forward(&ref, x, w, bias, Int32(M), Int32(N), Int32(K))
        var bound = [Double](repeating: 1e-4, count: M * N)   // as QuantTests.testDequantizedLinearWithinRoundingBound
        for m in 0..<M {
            let sa = Double((0..<K).map { abs(x[m * K + $0]) }.max()! / 127)
            for n in 0..<N { for k in 0..<K {
                bound[m * N + n] += Double(abs(x[m * K + k])) * Double(ws[n]) / 2 + Double(abs(w[n * K + k])) * sa / 2 + sa * Double(ws[n]) / 4
            } }
        }
        var qbuf = [UInt8](repeating: 0, count: M * Int(zk_qpad_k(Int32(K)))), qscale = [Float](repeating: 0, count: M)
        forEachSIMD { level in
            for kernel in int8Kernels {
                zk_set_int8_kernel(kernel)
                var plain = [Float](repeating: .nan, count: M * N)
                zk_qlinear_forward(&plain, x, &qbuf, &qscale, packed, colsum, ws, bias, Int32(M), Int32(N), Int32(K), Int32(ZK_ACT_NONE))
                for act in allActivations {
                    let name = "\(level) \(String(cString: zk_int8_name(kernel))) \(activationNames[Int(act)])"
                    var fused = [Float](repeating: .nan, count: M * N), separate = plain
                    zk_qlinear_forward(&fused, x, &qbuf, &qscale, packed, colsum, ws, bias, Int32(M), Int32(N), Int32(K), act)
                    zk_activation_forward(&separate, separate, separate.count, act)
                    XCTAssertEqual(fused.map(\.bitPattern), separate.map(\.bitPattern), name)
                    let slope = Int(act) == ZK_ACT_RELU || Int(act) == ZK_ACT_NONE ? 1.0 : 1.13
                    var worst = 0.0
                    for i in 0..<M * N {
                        let r = activationReference(Double(ref[i]), act)
                        let limit = slope * bound[i] + 1e-6 * max(1, abs(r))
                        XCTAssertLessThanOrEqual(abs(Double(fused[i]) - r), limit, "\(name) [\(i)]")
                        worst = max(worst, abs(Double(fused[i]) - r) / limit)
                    }
                    print("qlinear \(name): worst error / bound \(worst)")
                }
            }
        }
        zk_set_int8_kernel(-1)
    }

    /// Packed attention for inference (probs NULL, seeds NULL): bitwise equal to the call that keeps
    /// the probabilities, at 1 and 2 threads, with and without dropout (then with seeds); and within
    /// 1e-6 absolute of zk_attention_forward on the same sequences padded into a batch (measured: 1.2e-7). Widths: the kernels' row width is A = heads·head_dim (qkv rows 3A), with no
    /// hidden size involved: A = 24 (3 × 8, one partial 32-column tile) and A = 80 (2 × 40, two tiles).
    func testPackedAttentionWithoutProbs() {
        let lengths: [Int32] = [5, 3, 37, 1, 70], seeds: [UInt64] = [11, 12, 13, 14, 15]
        let B = lengths.count, S = Int(lengths.max()!), T = Int(lengths.reduce(0, +))
        forEachSIMD { level in
            for (heads, dh) in [(3, 8), (2, 40)] {
                let A = heads * dh
                let qkv = random(T * 3 * A), probCount = lengths.map { heads * Int($0 * $0) }.reduce(0, +)
                var padded = random(B * S * 3 * A)   // pad rows hold noise: the mask must hide them
                var t0 = 0
                for b in 0..<B {
                    let n = Int(lengths[b])
                    padded.replaceSubrange(b * S * 3 * A..<(b * S + n) * 3 * A, with: qkv[t0 * 3 * A..<(t0 + n) * 3 * A])
                    t0 += n
                }
                var inference = [Float](repeating: .nan, count: B * S * A)
                var scratch = [Float](repeating: 0, count: zk_attention_scratch_floats(Int32(S), Int32(dh)))
                zk_attention_forward(&inference, padded, lengths, Int32(B), Int32(S), Int32(heads), Int32(dh), &scratch)
                for threads in [1, 2] {
                    zk_set_threads(Int32(threads))
                    for p: Float in [0, 0.3] {
                        let name = "\(level) heads \(heads) dh \(dh) \(threads) threads p \(p)"
                        var kept = [Float](repeating: .nan, count: T * A), unkept = kept
                        var probs = [Float](repeating: .nan, count: probCount)
                        zk_attention_train_forward(&kept, &probs, qkv, lengths, seeds, Int32(B), Int32(heads), Int32(dh), p)
                        if p == 0 {
                            zk_attention_train_forward(&unkept, nil, qkv, lengths, nil, Int32(B), Int32(heads), Int32(dh), 0)
                        } else {
                            zk_attention_train_forward(&unkept, nil, qkv, lengths, seeds, Int32(B), Int32(heads), Int32(dh), p)
                        }
                        XCTAssertEqual(unkept.map(\.bitPattern), kept.map(\.bitPattern), name)
                        guard p == 0 else { continue }
                        var worst = 0.0, t = 0
                        for b in 0..<B {
                            for i in 0..<Int(lengths[b]) { for d in 0..<A {
                                worst = max(worst, abs(Double(unkept[(t + i) * A + d]) - Double(inference[(b * S + i) * A + d])))
                            } }
                            t += Int(lengths[b])
                        }
                        XCTAssertLessThan(worst, 1e-6, name)
                        print("packed attention \(name): worst |packed − padded| \(worst)")
                    }
                }
            }
        }
        zk_set_threads(2)
    }

    func testEmbeddingAndMeanPool() {
        let (B, S, H, V) = (2, 5, 8, 11)
        let word = random(V * H), pos = random(S * H), type = random(2 * H)
        let ids: [Int32] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], types: [Int32] = [0, 0, 1, 1, 1, 0, 1, 0, 1, 0]
        var out = ids.flatMap { word[Int($0) * H..<(Int($0) + 1) * H] }   // the gathered word rows
        zk_embedding_forward(&out, types, Int32(B), Int32(S), pos, type, Int32(H))
        for bt in 0..<B * S { for j in 0..<H {
            XCTAssertEqual(out[bt * H + j], word[Int(ids[bt]) * H + j] + type[Int(types[bt]) * H + j] + pos[(bt % S) * H + j], accuracy: 1e-6)
        } }
        var pooled = [Float](repeating: 0, count: B * H)
        zk_mean_pool_forward(&pooled, out, [3, 5], Int32(B), Int32(S), Int32(H))
        for j in 0..<H {
            XCTAssertEqual(pooled[j], (0..<3).map { out[$0 * H + j] }.reduce(0, +) / 3, accuracy: 1e-6)
            XCTAssertEqual(pooled[H + j], (5..<10).map { out[$0 * H + j] }.reduce(0, +) / 5, accuracy: 1e-6)
        }
    }

    /// Without a token-type table (DistilBERT): word + position, and the type ids (given or not) are ignored.
    func testEmbeddingWithoutTypeTable() {
        let (B, S, H) = (2, 5, 8)
        let word = random(B * S * H), pos = random(S * H)
        let types: [Int32] = [0, 0, 1, 1, 1, 0, 1, 0, 1, 0]
        var withIds = word, withoutIds = word
        zk_embedding_forward(&withIds, types, Int32(B), Int32(S), pos, nil, Int32(H))
        zk_embedding_forward(&withoutIds, nil, Int32(B), Int32(S), pos, nil, Int32(H))
        for bt in 0..<B * S { for j in 0..<H {
            XCTAssertEqual(withIds[bt * H + j], word[bt * H + j] + pos[(bt % S) * H + j])
        } }
        XCTAssertEqual(withoutIds, withIds)
    }
}
