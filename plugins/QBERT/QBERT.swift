import CKernels
import Foundation
import ZooCore

/// Q-BERT: int8 storage and int8 arithmetic (AVX-512 VNNI) in every encoder Linear, 8-bit (or fewer)
/// embedding tables. `qbert-int8` loads a checkpoint written by `zoo quantize --method int8`, or
/// quantizes an fp32 checkpoint as it loads; `qbert-mixed` loads `zoo quantize --method mixed` output
/// (Hessian-chosen bit widths per layer, group-wise scales).
public let plugin = Plugin(variants: [
    Variant(name: "qbert-int8", summary: "Q-BERT 8-bit: int8 weights (per-channel scales) and per-token int8 activations in every Linear, int8 embeddings; VNNI GEMM") { source in
        switch source {
        case .checkpoint(let ckpt):
            let q = try QuantSpec.load(ckpt)
            if let q, q.method != "int8" {
                throw ZooError.badFile(path: ckpt.dir.path, problem: "this checkpoint was quantized with --method \(q.method); evaluate it as qbert-\(q.method)")
            }
            return chunked(try QBertNetwork(spec: ckpt.spec, reader: QuantReader(ckpt: ckpt, spec: q ?? .int8OnTheFly)))
        case .geometry(let g, let seed):
            return chunked(try QBertNetwork(spec: g.spec, reader: PackingReader(store: randomStore(g.spec, seed: seed)) { w, b, n, k in QLinear(weight: w, n: n, k: k, bits: 8, group: 1, bias: b) }))
        }
    },
    Variant(name: "qbert-mixed", summary: "Q-BERT mixed precision: 3-8-bit weights per layer from Hessian sensitivity, group-wise scales, int8 compute (zoo quantize --method mixed)") { source in
        switch source {
        case .checkpoint(let ckpt):
            guard let q = try QuantSpec.load(ckpt), q.method == "mixed" else {
                throw ZooError.badFile(path: ckpt.dir.path, problem: "not a mixed-precision checkpoint; make one with `zoo quantize --weights DIR --method mixed --out DIR`")
            }
            return chunked(try QBertNetwork(spec: ckpt.spec, reader: QuantReader(ckpt: ckpt, spec: q)))
        case .geometry(let g, let seed):
            return chunked(try QBertNetwork(spec: g.spec, reader: PackingReader(store: randomStore(g.spec, seed: seed)) { w, b, n, k in QLinear(weight: w, n: n, k: k, bits: 4, group: 64, bias: b) }))
        }
    },
], commands: [QuantizeCommand.self], methods: [
    // At another scale: the same shape, quantized as it loads (qbert-int8 on an fp32 checkpoint).
    // qbert-mixed's bits come from the Hessian of a trained model, so it has no such model.
    Method(name: "qbert-int8", variant: "qbert-int8", summary: "8-bit weights and activations", geometry: { _, _, target in target }) { i in
        ["quantize", "--weights", i.source, "--method", "int8", "--out", i.out]
    },
    Method(name: "qbert-mixed", variant: "qbert-mixed", summary: "Q-BERT mixed precision (Hessian-ranked bits, 5 bits per weight)", geometry: nil) { i in
        ["quantize", "--weights", i.source, "--method", "mixed", "--calib-task", i.task, "--out", i.out]
    },
])

public typealias QBertNetwork = Network<QLinear>

/// int8 weights are a quarter of the bytes, so streaming them per chunk costs less and larger chunks
/// (longer GEMMs) win: 1024 tokens (see README, Q-BERT speed). Attention with bf16 products where the
/// CPU has them (AVX512_BF16; README, Q-BERT); ZOO_BF16_ATTENTION=0 keeps it fp32 (to compare).
func chunked(_ m: QBertNetwork) -> QBertNetwork {
    m.chunkTokens = 1024
    m.bf16Attention = ProcessInfo.processInfo.environment["ZOO_BF16_ATTENTION"] != "0"
    return m
}

/// The `quantization` entry of a quantized checkpoint's config.json.
public struct QuantSpec: Codable {
    public var method: String                 // "int8" | "mixed"
    public var groupSize: Int                 // rows of a Linear weight sharing one scale (1 = per output channel)
    public var bits: [String: Int]            // HF tensor prefix (e.g. "bert.encoder.layer.0.intermediate.dense") → weight bits; absent = 8
    public var hessianTopEigenvalue: [String: Double]?
    enum CodingKeys: String, CodingKey { case method, groupSize = "group_size", bits, hessianTopEigenvalue = "hessian_top_eigenvalue" }

    /// A fp32 checkpoint given to qbert-int8: quantized while loading, 8 bits per output channel.
    static let int8OnTheFly = QuantSpec(method: "int8", groupSize: 1, bits: [:])

    func bits(_ prefix: String) -> Int { bits[prefix] ?? 8 }

    /// The spec in `ckpt`'s config.json, or nil for an unquantized checkpoint.
    public static func load(_ ckpt: Checkpoint) throws -> QuantSpec? {
        let url = ckpt.dir.appendingPathComponent("config.json")
        guard let data = readFile(url), let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ZooError.badFile(path: url.path, problem: "cannot read it as a JSON object")
        }
        guard let q = json["quantization"] else { return nil }
        let spec: QuantSpec
        do {
            guard q is [String: Any] else { throw ZooError.failed("not an object") }
            spec = try JSONDecoder().decode(QuantSpec.self, from: JSONSerialization.data(withJSONObject: q))
        } catch {
            throw ZooError.badFile(path: url.path, problem: "invalid \"quantization\" entry: \(error)")
        }
        guard spec.groupSize >= 1 else { throw ZooError.badFile(path: url.path, problem: "quantization group_size \(spec.groupSize) must be at least 1") }
        if let (p, b) = spec.bits.first(where: { !(2...8).contains($0.value) }) {
            throw ZooError.badFile(path: url.path, problem: "quantization bits of '\(p)': \(b) is outside 2...8")
        }
        return spec
    }
}

/// Quantized-activation buffers shared by all Linear layers of one model (grown on demand).
final class QScratch {
    private(set) var bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: 1), scales = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private var rows = 0, width = 0
    func reserve(rows m: Int, width k: Int) {
        guard m > rows || k > width else { return }
        bytes.deallocate(); scales.deallocate()
        (rows, width) = (max(m, rows), max(k, width))
        bytes = .allocate(capacity: rows * width)
        scales = .allocate(capacity: rows)
    }
    deinit { bytes.deallocate(); scales.deallocate() }
}

/// An int8 Linear: weights (any width ≤ 8 bits, held as int8 values) packed for the VNNI GEMM, one
/// scale per output row; activations quantized per token on the fly.
public final class QLinear: LinearLayer {
    public let outFeatures: Int, inFeatures: Int
    let biasTensor: Tensor
    public var bias: Floats { biasTensor.data }
    let packed: UnsafeMutablePointer<Int8>, colsum: UnsafeMutablePointer<Int32>, scale: UnsafeMutablePointer<Float>
    var scratch: QScratch

    /// q: int8 values [N, K]; rowScale: [N].
    init(q: [Int8], rowScale: [Float], bias: Tensor, outFeatures N: Int, inFeatures K: Int, scratch: QScratch = QScratch()) {
        (outFeatures, inFeatures, biasTensor, self.scratch) = (N, K, bias, scratch)
        packed = .allocate(capacity: zk_qpacked_weight_bytes(Int32(N), Int32(K)))
        colsum = .allocate(capacity: N)
        scale = .allocate(capacity: N)
        zk_qpack_weight(packed, colsum, q, Int32(N), Int32(K))
        scale.initialize(from: rowScale, count: N)
    }

    /// Quantizes an fp32 weight [N, K] (`bits`, one scale per `group` rows).
    convenience init(weight: UnsafePointer<Float>, n N: Int, k K: Int, bits: Int, group: Int, bias: Tensor) {
        let (q, s) = quantizeWeight(weight, n: N, k: K, bits: bits, group: group)
        self.init(q: q, rowScale: s, bias: bias, outFeatures: N, inFeatures: K)
    }

    deinit { packed.deallocate(); colsum.deallocate(); scale.deallocate() }

    public func forward(_ out: Floats, _ inp: UnsafePointer<Float>, rows: Int, withBias: Bool, act: Int32) {
        scratch.reserve(rows: rows, width: Int(zk_qpad_k(Int32(inFeatures))))
        zk_qlinear_forward(out, inp, scratch.bytes, scratch.scales, packed, colsum, scale, withBias ? bias : nil,
                           Int32(rows), Int32(outFeatures), Int32(inFeatures), act)
    }
}

/// W [N, K] → int8 values and per-row scales (rows of a group share one), by `zk_quantize_weight`.
func quantizeWeight(_ w: Tensor, bits: Int, group: Int) -> (q: [Int8], rowScale: [Float]) {
    quantizeWeight(w.data, n: w.shape[0], k: w.shape[1], bits: bits, group: group)
}

func quantizeWeight(_ w: UnsafePointer<Float>, n N: Int, k K: Int, bits: Int, group: Int) -> (q: [Int8], rowScale: [Float]) {
    var q = [Int8](repeating: 0, count: N * K), s = [Float](repeating: 0, count: N)
    zk_quantize_weight(&q, &s, w, Int32(N), Int32(K), Int32(bits), Int32(group))
    return (q, s)
}

/// A word-embedding table of int8 values with one scale per row, dequantized as tokens are gathered.
struct QuantizedRows: WordEmbeddings {
    let q: [Int8], scale: [Float], width: Int
    var count: Int { q.count }
    func gather(_ ids: UnsafeBufferPointer<Int32>, into dst: Floats) throws {
        for (i, id) in ids.enumerated() {
            let row = Int(id) * width, s = scale[Int(id)], d = dst + i * width
            for j in 0..<width { d[j] = Float(q[row + j]) * s }
        }
    }
}

/// Reads a quantized checkpoint (see `QuantizedFormat`), or quantizes fp32 tensors while loading.
struct QuantReader: WeightReader {
    let ckpt: Checkpoint
    let spec: QuantSpec
    let scratch = QScratch()

    /// `prefix` is an HF name; the checkpoint may store it without the family prefix (base models).
    func quantized(_ prefix: String, shape: [Int]) throws -> (q: [Int8], rowScale: [Float]) {
        let st = ckpt.tensors, p = String(ckpt.name(prefix + ".weight").dropLast(".weight".count))
        if st.entries[p + ".weight_scale"] == nil {
            return quantizeWeight(try st.tensor(p + ".weight", shape: shape), bits: spec.bits(p), group: 1)
        }
        return try QuantizedFormat.read(st, prefix: p, shape: shape, bits: spec.bits(p), group: QuantizedFormat.group(p, spec.groupSize))
    }

    func linear(_ prefixes: [String], outFeatures: [Int], inFeatures: Int) throws -> QLinear {
        var q: [Int8] = [], s: [Float] = [], b: [Tensor] = []
        for (p, n) in zip(prefixes, outFeatures) {
            let part = try quantized(p, shape: [n, inFeatures])
            q += part.q; s += part.rowScale
            b.append(try ckpt.tensors.tensor(ckpt.name(p + ".bias"), shape: [n]))
        }
        let n = outFeatures.reduce(0, +)
        return QLinear(q: q, rowScale: s, bias: concat(b, shape: [n]), outFeatures: n, inFeatures: inFeatures, scratch: scratch)
    }

    func wordEmbeddings(_ name: String, shape: [Int]) throws -> WordEmbeddings {
        let t = try quantized(String(name.dropLast(".weight".count)), shape: shape)
        return QuantizedRows(q: t.q, scale: t.rowScale, width: shape[1])
    }

    /// Position/type tables come back dequantized; LayerNorm, biases and the head are stored as float32.
    func param(_ name: String, shape: [Int]) throws -> Param {
        guard name.hasSuffix("_embeddings.weight") else { return Param(try ckpt.tensors.tensor(ckpt.name(name), shape: shape)) }
        let t = try quantized(String(name.dropLast(".weight".count)), shape: shape)
        let out = Tensor(shape: shape)
        for r in 0..<shape[0] { for j in 0..<shape[1] { out[r * shape[1] + j] = Float(t.q[r * shape[1] + j]) * t.rowScale[r] } }
        return Param(out)
    }
}
