import CKernels
import Foundation
import ZooCore

/// `bert`: the dense fp32 BERT encoder, the baseline every compressed variant is measured against.
public let variants: [Variant] = [
    Variant(name: "bert", summary: "dense fp32 BERT encoder (HF BertModel weights), the uncompressed baseline") { source in
        switch source {
        case .checkpoint(let ckpt): return try BertEncoder(checkpoint: ckpt)
        case .geometry(let g, let seed): return BertEncoder(randomWith: g.config, seed: seed)
        }
    },
]

public typealias BertEncoder = Encoder<Linear>

extension Encoder where L == Linear {
    public convenience init(checkpoint: Checkpoint) throws { try self.init(checkpoint: checkpoint, reader: Fp32Reader(st: checkpoint.tensors)) }
    public convenience init(randomWith c: BertConfig, seed: UInt64) { self.init(randomWith: c, seed: seed, linear: Linear.init) }
}

/// A Linear layer y = x·Wᵀ + b with W packed once for `zk_linear_packed_forward`.
public struct Linear: LinearLayer {
    let packed: Tensor
    public let bias: Tensor
    public let outFeatures: Int, inFeatures: Int

    public init(weight: Tensor, bias: Tensor) {
        (outFeatures, inFeatures) = (weight.shape[0], weight.shape[1])
        packed = Tensor(shape: [zk_packed_weight_floats(Int32(outFeatures), Int32(inFeatures))])
        zk_pack_weight(packed.data, weight.data, Int32(outFeatures), Int32(inFeatures))
        self.bias = bias
    }

    public func forward(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, rows: Int, withBias: Bool, gelu: Bool) {
        zk_linear_packed_forward(out, inp, packed.data, withBias ? bias.data : nil, Int32(rows), Int32(outFeatures), Int32(inFeatures), gelu ? 1 : 0)
    }
}

/// Reads float weights (F32/F16/BF16 converted); the word table stays in the file, read per token.
struct Fp32Reader: EncoderWeightReader {
    let st: SafeTensors

    func linear(_ prefixes: [String], outFeatures: [Int], inFeatures: Int) throws -> Linear {
        let w = try zip(prefixes, outFeatures).map { try st.tensor($0 + ".weight", shape: [$1, inFeatures]) }
        let b = try zip(prefixes, outFeatures).map { try st.tensor($0 + ".bias", shape: [$1]) }
        let n = outFeatures.reduce(0, +)
        return Linear(weight: w.count == 1 ? w[0] : concat(w, shape: [n, inFeatures]), bias: b.count == 1 ? b[0] : concat(b, shape: [n]))
    }
    func wordEmbeddings(_ name: String, shape: [Int]) throws -> WordEmbeddings { try st.rows(name, shape: shape) }
    func tensor(_ name: String, shape: [Int]) throws -> Tensor { try st.tensor(name, shape: shape) }
}
