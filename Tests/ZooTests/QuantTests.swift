import BERT
import CKernels
import Foundation
import XCTest
@testable import QBERT
@testable import ZooCore

/// Q-BERT: the int8 GEMM (VNNI, AVX2 and the scalar fallback) exactly against integer sums written here,
/// the dequantized Linear within the bound that rounding implies, the bit-packed storage, and the
/// `zoo quantize` → `qbert-*` round trip on real and tiny checkpoints.
final class QuantTests: XCTestCase {
    var rng = SplitMix64(seed: 9)

    override func tearDown() { zk_set_int8_kernel(-1); Runtime.setThreads(nil) }

    /// Runs `body` with each int8 kernel this CPU has (VNNI, AVX2, scalar) at 1 and 2 threads.
    func forEachKernel(_ body: (Int32, String) throws -> Void) rethrows {
        for level in int8Kernels {
            for threads in [1, 2] {
                zk_set_int8_kernel(level)
                Runtime.setThreads(threads)
                try body(level, "\(String(cString: zk_int8_name(level))), \(threads) threads")
            }
        }
    }

    /// Exact int32 sums, extreme values included: 0/255 activations against ±127 weights (every
    /// kernel), and −128 weights (scalar and VNNI; the AVX2 kernel's sign trick needs |w| ≤ 127, the
    /// range zk_quantize_weight writes).
    func testInt8GemmIsExactOnOddShapes() {
        for (M, N, K) in [(1, 1, 1), (5, 17, 3), (7, 64, 5), (13, 65, 63), (97, 130, 385), (200, 70, 36)] {
            let K4 = Int(zk_qpad_k(Int32(K)))
            var a = [UInt8](repeating: 128, count: M * K4)
            for m in 0..<M { for k in 0..<K { a[m * K4 + k] = UInt8(truncatingIfNeeded: rng.next()) } }
            for m in 0..<M where m % 3 == 0 { for k in 0..<K { a[m * K4 + k] = k % 2 == 0 ? 0 : 255 } }
            for lowest: Int8 in [-127, -128] {
                let w = (0..<(N * K)).map { i in i % 7 == 0 ? (i % 2 == 0 ? 127 : lowest) : max(lowest, Int8(truncatingIfNeeded: rng.next())) }
                var expected = [Int32](repeating: 0, count: M * N)
                for m in 0..<M { for n in 0..<N {
                    var s: Int32 = 0
                    for k in 0..<K { s += (Int32(a[m * K4 + k]) - 128) * Int32(w[n * K + k]) }
                    expected[m * N + n] = s
                } }
                var packed = [Int8](repeating: 0, count: zk_qpacked_weight_bytes(Int32(N), Int32(K))), colsum = [Int32](repeating: 0, count: N)
                zk_qpack_weight(&packed, &colsum, w, Int32(N), Int32(K))
                forEachKernel { level, name in
                    if lowest == -128 && level == ZK_INT8_AVX2 { return }
                    var c = [Int32](repeating: -1, count: M * N)
                    zk_qgemm_s32(&c, a, packed, colsum, Int32(M), Int32(N), Int32(K))
                    XCTAssertEqual(c, expected, "\(M)×\(N)×\(K), weights ≥ \(lowest), \(name)")
                }
            }
        }
    }

    func testActivationQuantizationSameBytesInEveryKernel() {
        let (M, K) = (9, 389)
        var x = (0..<(M * K)).map { _ in rng.symmetric() * 3 }
        x[5] = 0.5 / 127 * 3   // a half-way value: both copies round half to even
        for k in 0..<K { x[2 * K + k] = 0 }   // an all-zero row: scale 0, every byte 128
        let K4 = Int(zk_qpad_k(Int32(K)))
        var out: [[UInt8]] = [], scales: [[Float]] = []
        forEachKernel { _, _ in
            var q = [UInt8](repeating: 0, count: M * K4), s = [Float](repeating: -1, count: M)
            zk_quantize_rows(&q, &s, x, Int32(M), Int32(K))
            out.append(q); scales.append(s)
        }
        for (q, s) in zip(out, scales) { XCTAssertEqual(q, out[0]); XCTAssertEqual(s, scales[0]) }
        XCTAssertEqual(scales[0][2], 0)
        XCTAssert(out[0][(2 * K4)..<(3 * K4)].allSatisfy { $0 == 128 })
        XCTAssertEqual(out[0][K..<K4].count, K4 - K)
        XCTAssert(out[0][K..<K4].allSatisfy { $0 == 128 }, "padding bytes hold zero (128 after the shift)")
    }

    /// |y − ŷ| ≤ Σ_k (|x_k|·s_w/2 + |w_k|·s_a/2 + s_a·s_w/4) per output, from |x − x̂| ≤ s_a/2 and
    /// |w − ŵ| ≤ s_w/2, plus 1e-4 for float rounding.
    /// True ties: a row whose largest magnitude is 127 has scale exactly 1, so x = ±2.5, 3.5, 0.5 land
    /// half-way between integers; every kernel rounds them half to even (2, 4, 0), and the rest to
    /// nearest — checked byte by byte against values written here.
    func testActivationRoundingTiesToEven() {
        let x: [Float] = [127, 2.5, -2.5, 3.5, -3.5, 0.5, -0.5, 1.4999999, 126.5, -127, 1.5, 0]
        let want: [Int] = [127, 2, -2, 4, -4, 0, 0, 1, 126, -127, 2, 0]
        let K = x.count, K4 = Int(zk_qpad_k(Int32(K)))
        forEachKernel { _, name in
            var q = [UInt8](repeating: 0, count: K4), scale: Float = -1
            zk_quantize_rows(&q, &scale, x, 1, Int32(K))
            XCTAssertEqual(scale, 1, name)
            XCTAssertEqual(q[0..<K].map { Int($0) - 128 }, want, name)
        }
    }

    /// The weight quantizer at every width: |q| ≤ 2^(bits−1) − 1 and, inside the clip, |w − q·s| ≤ s/2
    /// (outside it, q is the clip); the scale is one of the searched clips over 2^(bits−1) − 1.
    func testWeightQuantizerErrorWithinHalfAStep() {
        let (N, K) = (6, 50)
        let w = (0..<(N * K)).map { _ in rng.symmetric() * 0.3 }
        for bits in 2...8 {
            let qmax = Float((1 << (bits - 1)) - 1)
            for group in [1, 3] {
                var q = [Int8](repeating: 0, count: N * K), s = [Float](repeating: 0, count: N)
                zk_quantize_weight(&q, &s, w, Int32(N), Int32(K), Int32(bits), Int32(group))
                for n in 0..<N {
                    let g = n / group * group, rows = g..<min(g + group, N)
                    let m = rows.flatMap { r in (0..<K).map { abs(w[r * K + $0]) } }.max()!
                    XCTAssertTrue((0..<20).contains { st in abs(s[n] - m * (1 - 0.025 * Float(st)) / qmax) <= 1e-7 * m }, "bits \(bits): scale \(s[n])")
                    for k in 0..<K {
                        let v = w[n * K + k], qv = Float(q[n * K + k])
                        XCTAssertLessThanOrEqual(abs(qv), qmax)
                        if abs(v) <= s[n] * qmax { XCTAssertLessThanOrEqual(abs(v - qv * s[n]), s[n] / 2 * (1 + 1e-5), "bits \(bits) [\(n),\(k)]") }
                        else { XCTAssertEqual(qv, v > 0 ? qmax : -qmax, "bits \(bits) [\(n),\(k)] clipped") }
                    }
                }
            }
        }
    }

    func testDequantizedLinearWithinRoundingBound() {
        let (M, N, K) = (37, 70, 131)
        let x = Tensor(shape: [M, K], values: (0..<(M * K)).map { _ in rng.symmetric() * 2 })
        let w = Tensor(shape: [N, K], values: (0..<(N * K)).map { _ in rng.symmetric() * 0.1 })
        let bias = Tensor(shape: [N], values: (0..<N).map { _ in rng.symmetric() })
        let ref = Tensor(shape: [M, N])
        zk_linear_forward(ref.data, x.data, w.data, bias.data, Int32(M), Int32(N), Int32(K))
        let layer = QLinear(weight: w.data, n: w.shape[0], k: w.shape[1], bits: 8, group: 1, bias: bias)
        forEachKernel { _, name in
            let y = Tensor(shape: [M, N])
            layer.forward(y.data, x.data, rows: M, withBias: true, act: 0)
            var worst: Float = 0
            for m in 0..<M {
                let sa = (0..<K).map { abs(x[m * K + $0]) }.max()! / 127
                for n in 0..<N {
                    let sw = layer.scale[n]
                    var bound: Float = 1e-4
                    for k in 0..<K { bound += abs(x[m * K + k]) * sw / 2 + abs(w[n * K + k]) * sa / 2 + sa * sw / 4 }
                    let err = abs(y[m * N + n] - ref[m * N + n])
                    worst = max(worst, err / bound)
                }
            }
            XCTAssertLessThanOrEqual(worst, 1, "\(name): worst error / bound")
        }
    }

    func testBitPackingRoundTripsEveryWidth() throws {
        let (N, K) = (6, 11)
        let w = Tensor(shape: [N, K], values: (0..<(N * K)).map { _ in rng.symmetric() })
        for bits in 2...8 {
            let (q, s) = quantizeWeight(w, bits: bits, group: 3)
            let qmax = (1 << (bits - 1)) - 1
            XCTAssert(q.allSatisfy { abs(Int($0)) <= qmax }, "\(bits) bits")
            XCTAssertEqual(s[0], s[2]); XCTAssertEqual(s[3], s[5])
            let (wt, st) = QuantizedFormat.write(q: q, rowScale: s, N: N, K: K, bits: bits, group: 3)
            XCTAssertEqual(wt.bytes.count, N * (bits == 8 ? K : (K * bits + 7) / 8))
            let url = try tempDir().appendingPathComponent("q.safetensors")
            try SafeTensors.write([("x.weight", wt), ("x.weight_scale", st)], to: url)
            let back = try QuantizedFormat.read(try SafeTensors(url: url), prefix: "x", shape: [N, K], bits: bits, group: 3)
            XCTAssertEqual(back.q, q, "\(bits) bits")
            XCTAssertEqual(back.rowScale, s)
        }
    }

    /// all-MiniLM-L6-v2 through `zoo quantize --method int8`: ≤ 0.27× the fp32 file, and qbert-int8's
    /// mean-pooled embeddings within cosine 0.99 of the fp32 encoder's (and equal to quantizing on load).
    func testInt8MiniLMIsSmallAndClose() throws {
        try require(Paths.weights.appendingPathComponent("model.safetensors"), "make weights")
        let out = try tempDir().appendingPathComponent("int8")
        let r = try zoo(["quantize", "--weights", Paths.weights.path, "--method", "int8", "--out", out.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        let size = { (u: URL) in try FileManager.default.attributesOfItem(atPath: u.appendingPathComponent("model.safetensors").path)[.size] as! Int }
        let ratio = Double(try size(out)) / Double(try size(Paths.weights))
        XCTAssertLessThanOrEqual(ratio, 0.27)
        XCTAssertGreaterThan(ratio, 0.25)   // int8 of 22.7 M parameters cannot be much smaller

        let fp32 = try BertNetwork(checkpoint: try Checkpoint(dir: Paths.weights))
        let saved = try QBERT.plugin.variants[0].load(.checkpoint(try Checkpoint(dir: out)))
        let onLoad = try QBERT.plugin.variants[0].load(.checkpoint(try Checkpoint(dir: Paths.weights)))
        XCTAssertEqual(saved.parameterCount, fp32.parameterCount)
        let tok = try WordPieceTokenizer(vocabURL: Paths.weights.appendingPathComponent("vocab.txt"))
        let batch = Batch(["A man is playing a guitar.", "The quick brown fox jumps over the lazy dog!", "Quantization keeps 8 bits."]
            .map { tok.encode($0, nil, maxLength: 128) })
        let e32 = try fp32.embed(batch, pooling: .mean), e8 = try saved.embed(batch, pooling: .mean), eLoad = try onLoad.embed(batch, pooling: .mean)
        XCTAssertEqual(e8.array, eLoad.array)
        for b in 0..<batch.size {
            XCTAssertGreaterThan(cosine(e32.row(b), e8.row(b)), 0.99, "sentence \(b)")
        }
    }

    /// `--method mixed` on a tiny fine-tuned model: Hessian eigenvalues recorded for every unit, bit widths
    /// under the budget, sub-8-bit tensors stored packed, and qbert-mixed evaluates it.
    /// Q-BERT's Hessian-vector product (central differences of the engine's gradients) against
    /// PyTorch's exact double-backward H·v (tools/hf_reference.py train-step) for layer 0's FFN
    /// up-projection of MiniLM-L6: within 1 % in norm, and v·Hv (the power iteration's Rayleigh
    /// quotient) within 1 %.
    func testHessianVectorProductMatchesPyTorch() throws {
        try require(Paths.weights.appendingPathComponent("model.safetensors"), "make weights")
        let refURL = Paths.reference.appendingPathComponent("train_step.safetensors")
        try require(refURL, "run `python tools/hf_reference.py train-step`")
        let ref = try SafeTensors(url: refURL)
        Runtime.setThreads(2)
        let (model, batch, targets) = try referenceStep(ref, try Checkpoint(dir: Paths.weights), kind: "cls", numLabels: 2)
        let slot = try XCTUnwrap(model.store!.slot("bert.encoder.layer.0.intermediate.dense.weight"))
        let v = try ref.tensor("hvp.v").array, want = try ref.tensor("hvp.hv").array
        let w = Quantizer.gather(model.store!.values, [slot])
        let norm = { (x: [Float]) in Float(x.reduce(0.0) { $0 + Double($1 * $1) }.squareRoot()) }
        let hv = try Quantizer.hessianVectorProduct(model, [(batch, targets)], [slot], v, eps: 1e-3 * norm(w))
        XCTAssertEqual(Quantizer.gather(model.store!.values, [slot]), w, "parameters restored")
        let err = norm(zip(hv, want).map { $0 - $1 }) / norm(want)
        let rq = zip(v, hv).map { $0 * $1 }.reduce(0, +), rqWant = zip(v, want).map { $0 * $1 }.reduce(0, +)
        print("HVP vs PyTorch: relative error \(err), v·Hv \(rq) vs \(rqWant)")
        XCTAssertLessThan(err, 0.01)
        XCTAssertEqual(rq, rqWant, accuracy: 0.01 * abs(rqWant))
    }

    func cosine(_ u: [Float], _ v: [Float]) -> Float {
        let dot: Float = zip(u, v).map { $0 * $1 }.reduce(0, +)
        let nu: Float = u.map { $0 * $0 }.reduce(0, +), nv: Float = v.map { $0 * $0 }.reduce(0, +)
        return dot / (nu * nv).squareRoot()
    }

    func testMixedPrecisionEndToEnd() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 64)
        let tuned = try tempDir().appendingPathComponent("tuned")
        var r = try zoo(["finetune", "--base", try Tiny.checkpoint().path, "--task", "rte", "--data", glue.path, "--out", tuned.path,
                         "--epochs", "1", "--batch", "8", "--threads", "1"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let out = try tempDir().appendingPathComponent("mixed")
        r = try zoo(["quantize", "--weights", tuned.path, "--method", "mixed", "--budget-bits", "7", "--group", "4", "--data", glue.path,
                     "--calib-examples", "16", "--iterations", "4", "--out", out.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        let spec = try XCTUnwrap(try QuantSpec.load(try Checkpoint(dir: out)))
        XCTAssertEqual(spec.method, "mixed")
        XCTAssertEqual(spec.groupSize, 4)
        XCTAssertEqual(Set(spec.hessianTopEigenvalue!.keys), ["bert.embeddings", "bert.encoder.layer.0"])
        XCTAssert(spec.hessianTopEigenvalue!.values.allSatisfy { $0 != 0 && $0.isFinite }, "\(spec.hessianTopEigenvalue!)\n\(r.stderr.suffix(3000))")
        let st = try SafeTensors(url: out.appendingPathComponent("model.safetensors"))
        var bits = 0.0, count = 0.0
        for (name, e) in st.entries where name.hasSuffix(".weight") && st.entries[String(name.dropLast(7)) + ".weight_scale"] != nil {
            let prefix = String(name.dropLast(7)), b = spec.bits(prefix)
            XCTAssertEqual(e.dtype, b == 8 ? .I8 : .U8, name)
            let scales = try st.entry(prefix + ".weight_scale").count
            let n = e.shape[0] * (b == 8 ? e.shape[1] : e.shape[1] * 8 / b)   // (exact for the tiny widths)
            bits += Double(n * b + scales * 32); count += Double(n)
        }
        XCTAssertLessThanOrEqual(bits / count, 7.0 + 1e-9)
        XCTAssert(spec.bits.values.contains { $0 < 8 })
        r = try zoo(["eval", "qbert-mixed", "--task", "rte", "--weights", out.path, "--data", glue.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssert(r.out.contains("accuracy"), r.out)
        r = try zoo(["eval", "qbert-int8", "--task", "rte", "--weights", out.path, "--data", glue.path])
        XCTAssertEqual(r.code, 1)
        XCTAssert(r.stderr.contains("qbert-mixed"), r.stderr)
    }

    /// The bit allocation recomputed independently (`tools/hf_reference.py mixed-bits`: its own unit
    /// grouping, quantizer, predicted losses and greedy descent in numpy, from the fp32 weights and the
    /// eigenvalues the zoo recorded, which testHessianVectorProductMatchesPyTorch checks): the same
    /// bits for every weight of a 4-layer model (5 units) under a budget that makes them differ.
    func testMixedBitAllocationRecomputedIndependently() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 64), tuned = try Tiny.fineTuned4Layers(glue)
        let out = try tempDir().appendingPathComponent("mixed")
        let r = try zoo(["quantize", "--weights", tuned.path, "--method", "mixed", "--budget-bits", "5.5", "--group", "2", "--data", glue.path,
                         "--calib-examples", "16", "--iterations", "4", "--out", out.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        let spec = try XCTUnwrap(try QuantSpec.load(try Checkpoint(dir: out)))
        let numpy = try XCTUnwrap(try JSONSerialization.jsonObject(with: try hfReference(["mixed-bits", "--model", tuned.path, "--quantized", out.path,
                                                                                           "--budget", "5.5", "--group", "2"])) as? [String: Any])
        let bits = try XCTUnwrap(numpy["bits"] as? [String: Int]), scales = try XCTUnwrap(numpy["scales"] as? [String: [Double]])
        XCTAssertEqual(bits.count, 3 + 4 * 6)
        for (prefix, b) in bits { XCTAssertEqual(spec.bits(prefix), b, prefix) }
        XCTAssertGreaterThan(Set(bits.values).count, 1, "a budget that leaves every unit at one width tests little: \(bits)")
        // The clip each group chose (its scale), as the checkpoint stores it.
        let st = try SafeTensors(url: out.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(scales.count, bits.count)
        for (prefix, want) in scales {
            let got = try st.tensor(prefix + ".weight_scale")
            XCTAssertEqual(got.count, want.count, prefix)
            for i in 0..<min(got.count, want.count) { XCTAssertEqual(Double(got[i]), want[i], accuracy: 1e-6 * abs(want[i]), "\(prefix) group \(i)") }
        }
    }

    /// Bad input: a damaged quantized checkpoint, an unknown method, quantizing twice, an impossible
    /// budget — one line naming the problem, a non-zero exit, no output directory.
    func testQuantizeAndLoadErrors() throws {
        let base = try Tiny.checkpoint()
        let q = try tempDir().appendingPathComponent("q")
        XCTAssertEqual(try zoo(["quantize", "--weights", base.path, "--method", "int8", "--out", q.path]).code, 0)

        // weight_scale of the wrong shape
        let st = try SafeTensors(url: q.appendingPathComponent("model.safetensors"))
        var tensors: [(String, RawTensor)] = []
        for (name, e) in st.entries.sorted(by: { $0.key < $1.key }) {
            tensors.append(name == "encoder.layer.0.output.dense.weight_scale"
                ? (name, RawTensor(Tensor(shape: [3], values: [1, 1, 1]))) : (name, try st.raw(name, dtype: e.dtype, shape: e.shape)))
        }
        let bad = try tempDir()
        for f in ["config.json", "vocab.txt"] { try FileManager.default.copyItem(at: q.appendingPathComponent(f), to: bad.appendingPathComponent(f)) }
        try SafeTensors.write(tensors, to: bad.appendingPathComponent("model.safetensors"))
        var r = try zoo(["embed", "qbert-int8", "--weights", bad.path], stdin: Data("hello world\n".utf8))
        XCTAssertEqual(r.code, 1)
        XCTAssert(r.stderr.contains("model.safetensors") && r.stderr.contains("encoder.layer.0.output.dense.weight_scale"), r.stderr)
        XCTAssertEqual(r.stdout.count, 0)

        let out = try tempDir().appendingPathComponent("never")
        r = try zoo(["quantize", "--weights", base.path, "--method", "int4", "--out", out.path])
        XCTAssertEqual(r.code, 2)
        XCTAssert(r.stderr.contains("--method takes int8 or mixed"), r.stderr)
        r = try zoo(["quantize", "--weights", q.path, "--method", "int8", "--out", out.path])
        XCTAssertEqual(r.code, 1)
        XCTAssert(r.stderr.contains("already quantized"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }
}
