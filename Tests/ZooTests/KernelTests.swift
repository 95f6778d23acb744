import CKernels
import Foundation
import XCTest
@testable import ZooCore

/// Each C kernel against a plain double-precision reference written here, for both compiled copies
/// (AVX-512 and the portable fallback), with the error threshold stated per kernel.
final class KernelTests: XCTestCase {
    var rng = SplitMix64(seed: 42)

    func random(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in rng.symmetric() * scale } }

    func forEachSIMD(_ body: (String) throws -> Void) rethrows {
        let levels = zk_cpu_has_avx512() != 0 ? [0, 1] : [0]
        for level in levels {
            zk_set_simd(Int32(level))
            try body(level == 1 ? "avx512" : "generic")
        }
        zk_set_simd(-1)
    }

    override func setUp() { zk_set_threads(2) }

    func testSgemmNTAndNNMatchReference() {
        for (M, N, K) in [(1, 1, 1), (7, 13, 5), (33, 65, 129), (128, 96, 384)] {
            let a = random(M * K), b = random(N * K), bt = random(K * N)
            var c = [Float](repeating: 0, count: M * N), c2 = c
            zk_sgemm_nt(Int32(M), Int32(N), Int32(K), a, Int32(K), b, Int32(K), 0, &c, Int32(N))
            zk_sgemm_nn(Int32(M), Int32(N), Int32(K), a, Int32(K), bt, Int32(N), 0, &c2, Int32(N))
            for i in 0..<M { for j in 0..<N {
                var r = 0.0, r2 = 0.0
                for k in 0..<K { r += Double(a[i * K + k]) * Double(b[j * K + k]); r2 += Double(a[i * K + k]) * Double(bt[k * N + j]) }
                XCTAssertEqual(Double(c[i * N + j]), r, accuracy: 1e-5 * Double(K), "nt \(M)x\(N)x\(K)")
                XCTAssertEqual(Double(c2[i * N + j]), r2, accuracy: 1e-5 * Double(K), "nn \(M)x\(N)x\(K)")
            } }
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
    /// row-split and panel-split threading paths. Threshold: 1e-5 · K absolute.
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
                    var worst = 0.0
                    for i in 0..<M { for j in 0..<N {
                        var r = 0.0
                        for k in 0..<K { r += Double(a[i * K + k]) * Double(w[j * K + k]) }
                        let rb = r + Double(bias[j])
                        let rg = 0.5 * rb * (1 + erf(rb / 2.0.squareRoot()))
                        worst = max(worst, abs(Double(plain[i * N + j]) - r), abs(Double(withBias[i * N + j]) - rb), abs(Double(withGelu[i * N + j]) - rg))
                    } }
                    XCTAssertLessThan(worst, 1e-5 * Double(K), "\(level) \(threads) threads \(M)x\(N)x\(K)")
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
}
