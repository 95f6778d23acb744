import CKernels
import Foundation
import ZooCore

/// How quantized tensors are stored in model.safetensors. For a weight `<p>.weight` [N, K]:
/// - 8 bits: `<p>.weight` I8 [N, K];
/// - b < 8 bits: `<p>.weight` U8 [N, ⌈K·b/8⌉], each row a little-endian bit stream of q + 2^(b−1);
/// - `<p>.weight_scale` F32 [G]: one scale per group of ⌈N/G⌉ rows (value = q · scale).
/// Biases, LayerNorm and the classification head (pooler, classifier) stay float32.
public enum QuantizedFormat {
    /// Rows per scale of a tensor: embedding tables always take one scale per row (a row is what a
    /// token reads), Linear weights the checkpoint's group size.
    static func group(_ prefix: String, _ groupSize: Int) -> Int { prefix.hasSuffix("_embeddings") ? 1 : groupSize }

    static func packedWidth(_ K: Int, bits: Int) -> Int { (K * bits + 7) / 8 }

    static func write(q: [Int8], rowScale: [Float], N: Int, K: Int, bits: Int, group: Int) -> (weight: RawTensor, scale: RawTensor) {
        let groups = (N + group - 1) / group
        let scales = (0..<groups).map { rowScale[$0 * group] }
        let scale = RawTensor(dtype: .F32, shape: [groups], bytes: scales.withUnsafeBytes { Data($0) })
        if bits == 8 { return (RawTensor(dtype: .I8, shape: [N, K], bytes: q.withUnsafeBytes { Data($0) }), scale) }
        let W = packedWidth(K, bits: bits), offset = 1 << (bits - 1)
        var out = [UInt8](repeating: 0, count: N * W)
        for n in 0..<N {
            var bit = 0
            for k in 0..<K {
                let u = Int(q[n * K + k]) + offset
                for t in 0..<bits where u >> t & 1 == 1 { out[n * W + (bit + t) / 8] |= UInt8(1 << ((bit + t) % 8)) }
                bit += bits
            }
        }
        return (RawTensor(dtype: .U8, shape: [N, W], bytes: Data(out)), scale)
    }

    /// int8 values [N·K] and per-row scales [N] of `<prefix>.weight`, stored with `bits` bits and one
    /// scale per `group` rows.
    static func read(_ st: SafeTensors, prefix: String, shape: [Int], bits: Int, group: Int) throws -> (q: [Int8], rowScale: [Float]) {
        let (N, K) = (shape[0], shape[1])
        guard (2...8).contains(bits) else { throw ZooError.badFile(path: st.path, problem: "'\(prefix)': \(bits) bits per weight is outside 2...8") }
        guard group >= 1 else { throw ZooError.badFile(path: st.path, problem: "'\(prefix)': group size \(group) must be at least 1") }
        let groups = N == 0 ? 0 : (N - 1) / group + 1
        let se = try st.entry(prefix + ".weight_scale")
        guard se.dtype == .F32, se.shape == [groups] else {
            throw ZooError.badFile(path: st.path, problem: "'\(prefix).weight_scale' is \(se.dtype.rawValue) \(se.shape); expected F32 [\(groups)] (one scale per \(group) of \(N) rows)")
        }
        let scales = try st.tensor(prefix + ".weight_scale").array
        let rowScale = (0..<N).map { scales[$0 / group] }
        if bits == 8 {
            let raw = try st.raw(prefix + ".weight", dtype: .I8, shape: shape)
            return (raw.bytes.withUnsafeBytes { Array($0.bindMemory(to: Int8.self)) }, rowScale)
        }
        let W = packedWidth(K, bits: bits), offset = 1 << (bits - 1)
        let raw = try st.raw(prefix + ".weight", dtype: .U8, shape: [N, W])
        var q = [Int8](repeating: 0, count: N * K)
        raw.bytes.withUnsafeBytes { (b: UnsafeRawBufferPointer) in
            for n in 0..<N {
                var bit = 0
                for k in 0..<K {
                    var u = 0
                    for t in 0..<bits where b[n * W + (bit + t) / 8] >> ((bit + t) % 8) & 1 == 1 { u |= 1 << t }
                    q[n * K + k] = Int8(u - offset)
                    bit += bits
                }
            }
        }
        return (q, rowScale)
    }
}

/// Post-training quantization of an fp32 checkpoint (`zoo quantize`).
public struct Quantizer {
    public enum Method: String { case int8, mixed }

    public struct Options {
        public var method = Method.int8
        public var budgetBits = 5.0          // mixed: mean bits per quantized weight, scales included
        public var group = 1                 // rows sharing one weight scale (1 = per output channel)
        public var calibExamples = 64        // mixed: training examples the Hessian is estimated on
        public var iterations = 8            // mixed: power-iteration steps per layer
        public init() {}
    }

    /// One unit of the bit allocation: the embedding tables, or one encoder layer's Linear weights.
    public struct Unit {
        public let name: String              // "embeddings" or "bert.encoder.layer.i"
        public let prefixes: [String]        // tensors (`<prefix>.weight`) it holds
        public var eigenvalue = 0.0
        public var bits = 8
    }

    let ckpt: Checkpoint
    let options: Options
    public private(set) var units: [Unit]

    public init(checkpoint: Checkpoint, options: Options) throws {
        if try QuantSpec.load(checkpoint) != nil {
            throw ZooError.badFile(path: checkpoint.dir.path, problem: "already quantized; quantize the fp32 checkpoint it came from")
        }
        ckpt = checkpoint
        self.options = options
        // Units name tensors as the checkpoint stores them (with or without the family prefix).
        let names = checkpoint.spec.family.names
        func local(_ hf: String) -> String { String(checkpoint.name(hf + ".weight").dropLast(".weight".count)) }
        let tables = [names.word, names.position] + (checkpoint.spec.types > 0 ? names.tokenType.map { [$0] } ?? [] : [])
        let embeddings = tables.map { local(String($0.dropLast(".weight".count))) } + (checkpoint.spec.projection ? [local(names.projection!)] : [])
        units = [Unit(name: String(local(names.embeddingNorm).dropLast(".LayerNorm".count)), prefixes: embeddings)]
            + checkpoint.spec.groups.indices.map { g in
                let n = names.layer(g)
                let prefixes = [n.query, n.key, n.value, n.attentionOut, n.up, n.down].map(local)
                let common = prefixes.dropFirst().reduce(prefixes[0]) { String(zip($0, $1).prefix { $0 == $1 }.map(\.0)) }
                return Unit(name: String(common.prefix(through: common.lastIndex(of: ".")!).dropLast()), prefixes: prefixes)
            }
    }

    func weight(_ prefix: String) throws -> Tensor {
        let e = try ckpt.tensors.entry(prefix + ".weight")
        guard e.shape.count == 2 else { throw ZooError.badFile(path: ckpt.tensors.path, problem: "'\(prefix).weight' is not 2-D") }
        return try ckpt.tensors.tensor(prefix + ".weight")
    }

    func group(_ prefix: String) -> Int { QuantizedFormat.group(prefix, options.group) }

    /// Top (largest-magnitude) Hessian eigenvalue of the task loss for each unit's weights, by power
    /// iteration on Hessian-vector products. Hv = (∇L(w + εv) − ∇L(w − εv)) / 2ε over the calibration batches
    /// (central differences of the engine's exact gradients, dropout off).
    public mutating func estimateSensitivity(calibration batches: [(Batch, Targets)], log: (String) -> Void) throws {
        guard ckpt.spec.head != .none else {
            throw ZooError.badFile(path: ckpt.tensors.path, problem: "no classifier head; Hessian sensitivity needs a fine-tuned checkpoint (zoo finetune)")
        }
        let store = ParameterStore(spec: ckpt.spec)
        try store.load(ckpt, seed: 0)
        let model = try Network(spec: store.spec, reader: store)
        let prefix = ckpt.spec.family.names.prefix
        var rng = SplitMix64(seed: 7)
        for u in units.indices {
            let slots = units[u].prefixes.map { p in store.slot((p.hasPrefix(prefix) ? p : prefix + p) + ".weight")! }
            let w = Self.gather(store.values, slots)
            let eps = 1e-3 * Float(sqrt(w.reduce(0.0) { $0 + Double($1 * $1) }))
            var v = (0..<w.count).map { _ in rng.normal() }
            var lambda = 0.0
            for it in 0..<options.iterations {
                let norm = Float(sqrt(v.reduce(0.0) { $0 + Double($1 * $1) }))
                v = v.map { $0 / norm }
                let hv = try Self.hessianVectorProduct(model, batches, slots, v, eps: eps)
                lambda = zip(v, hv).reduce(0.0) { $0 + Double($1.0 * $1.1) }
                v = hv
                log("hessian \(units[u].name): iteration \(it + 1)/\(options.iterations), top eigenvalue ≈ \(String(format: "%.4g", lambda))")
            }
            units[u].eigenvalue = lambda
        }
    }

    static func gather(_ t: Tensor, _ slots: [ParameterStore.Slot]) -> [Float] {
        slots.flatMap { Array(UnsafeBufferPointer(start: t.data + $0.offset, count: $0.count)) }
    }

    /// H·v for the mean loss over `batches` w.r.t. the parameters in `slots` (v laid out as their
    /// concatenation): central differences of exact gradients, (∇L(w + εv) − ∇L(w − εv)) / 2ε, with
    /// dropout off. The parameters are restored exactly afterwards.
    static func hessianVectorProduct(_ model: Network<ParamLinear>, _ batches: [(Batch, Targets)], _ slots: [ParameterStore.Slot],
                                     _ v: [Float], eps: Float) throws -> [Float] {
        let store = model.store!
        let w = gather(store.values, slots)
        func gradient(at scale: Float) throws -> [Float] {
            var i = 0
            for s in slots { for j in 0..<s.count { store.values[s.offset + j] = w[i] + scale * v[i]; i += 1 } }
            store.zeroGrad()
            for (b, t) in batches { try model.step(b, targets: t, dropoutSeed: nil) }
            return gather(store.grads!, slots).map { $0 / Float(batches.count) }
        }
        let gp = try gradient(at: eps), gm = try gradient(at: -eps)
        var i = 0
        for s in slots { for j in 0..<s.count { store.values[s.offset + j] = w[i]; i += 1 } }
        return zip(gp, gm).map { ($0 - $1) / (2 * eps) }
    }

    static let candidateBits = [8, 6, 5, 4, 3]

    /// Per-unit bit widths under the budget: start at 8 bits everywhere, then repeatedly lower the
    /// unit whose next step down costs the least predicted loss per bit saved. Predicted loss of a
    /// unit at b bits: ½·|λ_max|·‖Q_b(W) − W‖² (the second-order term, bounded by the top eigenvalue).
    public mutating func allocateBits(log: (String) -> Void) throws {
        var cost: [[Int: Double]] = [], size: [[Int: Double]] = []
        var total = 0.0
        for u in units {
            var c: [Int: Double] = [:], s: [Int: Double] = [:]
            let ws = try u.prefixes.map { try weight($0) }
            for b in Self.candidateBits {
                var err = 0.0, bitsUsed = 0.0
                for (p, w) in zip(u.prefixes, ws) {
                    let (q, rs) = quantizeWeight(w, bits: b, group: group(p))
                    let K = w.shape[1]
                    for i in 0..<w.count { let d = Double(w[i]) - Double(q[i]) * Double(rs[i / K]); err += d * d }
                    bitsUsed += Double(w.count * b) + Double((w.shape[0] + group(p) - 1) / group(p) * 32)
                }
                c[b] = 0.5 * abs(u.eigenvalue) * err
                s[b] = bitsUsed
            }
            total += Double(ws.map(\.count).reduce(0, +))
            cost.append(c); size.append(s)
        }
        func used() -> Double { units.indices.map { size[$0][units[$0].bits]! }.reduce(0, +) }
        while used() > options.budgetBits * total {
            var best: (u: Int, b: Int, ratio: Double)?
            for u in units.indices {
                guard let i = Self.candidateBits.firstIndex(of: units[u].bits), i + 1 < Self.candidateBits.count else { continue }
                let b = Self.candidateBits[i + 1]
                let ratio = (cost[u][b]! - cost[u][units[u].bits]!) / (size[u][units[u].bits]! - size[u][b]!)
                if best == nil || ratio < best!.ratio { best = (u, b, ratio) }
            }
            guard let best else {
                throw ZooError.usage("--budget-bits \(options.budgetBits) is below what \(Self.candidateBits.last!)-bit weights reach (\(String(format: "%.2f", used() / total)) bits per weight with scales)")
            }
            units[best.u].bits = best.b
        }
        for u in units { log("bits \(u.name): \(u.bits) (λ_max \(String(format: "%.4g", u.eigenvalue)))") }
    }

    /// Writes the quantized checkpoint: config.json (with "quantization"), model.safetensors, vocab.txt.
    public func write(to out: URL) throws {
        var tensors: [(String, RawTensor)] = []
        var bits: [String: Int] = [:]
        let quantized = Set(units.flatMap(\.prefixes).map { $0 + ".weight" })
        for u in units {
            for p in u.prefixes {
                let w = try weight(p)
                let (q, rs) = quantizeWeight(w, bits: u.bits, group: group(p))
                let (wt, st) = QuantizedFormat.write(q: q, rowScale: rs, N: w.shape[0], K: w.shape[1], bits: u.bits, group: group(p))
                tensors += [(p + ".weight", wt), (p + ".weight_scale", st)]
                if u.bits != 8 { bits[p] = u.bits }
            }
        }
        for (name, e) in ckpt.tensors.entries.sorted(by: { $0.key < $1.key }) where !quantized.contains(name) {
            tensors.append((name, try ckpt.tensors.raw(name, dtype: e.dtype, shape: e.shape)))
        }
        let spec = QuantSpec(method: options.method.rawValue, groupSize: options.group, bits: bits,
                             hessianTopEigenvalue: options.method == .mixed ? Dictionary(uniqueKeysWithValues: units.map { ($0.name, $0.eigenvalue) }) : nil)
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: ckpt.dir.appendingPathComponent("config.json"))) as! [String: Any]
        config["quantization"] = try JSONSerialization.jsonObject(with: JSONEncoder().encode(spec))
        try writeFiles([("model.safetensors", try SafeTensors.encode(tensors, metadata: ["format": "zoo-qbert"])),
                        ("config.json", try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])),
                        ("vocab.txt", try Data(contentsOf: ckpt.vocabURL))], in: out)
    }
}
