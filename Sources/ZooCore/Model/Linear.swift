import CKernels
import Foundation

public typealias Floats = UnsafeMutablePointer<Float>

/// A parameter tensor as the forward and backward passes read it: its values and, in a trainable
/// model, where its gradient accumulates. `owner` keeps the memory alive.
public struct Param {
    public let value: Floats
    public let grad: Floats?
    public let count: Int
    let owner: AnyObject

    public init(value: Floats, grad: Floats?, count: Int, owner: AnyObject) {
        (self.value, self.grad, self.count, self.owner) = (value, grad, count, owner)
    }

    public init(_ t: Tensor) { self.init(value: t.data, grad: nil, count: t.count, owner: t) }
}

/// A Linear layer y = act(x·Wᵀ + b) as a variant stores and computes it (fp32 packed, int8, trainable, …).
public protocol LinearLayer {
    var outFeatures: Int { get }
    var inFeatures: Int { get }
    var bias: Floats { get }
    /// out[rows, outFeatures] = inp[rows, inFeatures]·Wᵀ (+ b unless `withBias` is false: the bias is
    /// then left to a fused epilogue), then the activation `act` (a `ZK_ACT_*` code).
    func forward(_ out: Floats, _ inp: UnsafePointer<Float>, rows: Int, withBias: Bool, act: Int32)
}

extension LinearLayer {
    public var parameterCount: Int { outFeatures * inFeatures + outFeatures }
}

/// A Linear whose weights live in a parameter store (or any float buffer): the forward runs on
/// the current values (OpenBLAS), the backward accumulates into the store's gradients.
public struct ParamLinear: LinearLayer {
    public let weight: Param, biasParam: Param
    public let outFeatures: Int, inFeatures: Int
    public var bias: Floats { biasParam.value }

    public init(weight: Param, bias: Param, outFeatures: Int, inFeatures: Int) {
        precondition(weight.count == outFeatures * inFeatures && bias.count == outFeatures, "Linear parameter sizes")
        (self.weight, self.biasParam, self.outFeatures, self.inFeatures) = (weight, bias, outFeatures, inFeatures)
    }

    public func forward(_ out: Floats, _ inp: UnsafePointer<Float>, rows: Int, withBias: Bool, act: Int32) {
        zk_linear_forward(out, inp, weight.value, withBias ? bias : nil, Int32(rows), Int32(outFeatures), Int32(inFeatures))
        if act != ZK_ACT_NONE { zk_activation_forward(out, out, rows * outFeatures, act) }
    }

    /// dinp = dout·W (dinp may be nil); dW += doutᵀ·inp and db += Σ dout when the parameters are trainable.
    public func backward(_ dinp: Floats?, _ dout: UnsafePointer<Float>, _ inp: UnsafePointer<Float>, rows: Int) {
        zk_linear_backward(dinp, weight.grad, biasParam.grad, dout, inp, weight.value, Int32(rows), Int32(outFeatures), Int32(inFeatures))
    }
}

/// A Linear layer with W packed once for `zk_linear_packed_forward` (the fp32 inference layer).
public struct Linear: LinearLayer {
    let packed: Tensor
    let biasTensor: Tensor
    public let outFeatures: Int, inFeatures: Int
    public var bias: Floats { biasTensor.data }

    public init(weight: Tensor, bias: Tensor) {
        self.init(weight: weight.data, bias: bias, outFeatures: weight.shape[0], inFeatures: weight.shape[1])
    }

    public init(weight: UnsafePointer<Float>, bias: Tensor, outFeatures: Int, inFeatures: Int) {
        (self.outFeatures, self.inFeatures) = (outFeatures, inFeatures)
        packed = Tensor(shape: [zk_packed_weight_floats(Int32(outFeatures), Int32(inFeatures))])
        zk_pack_weight(packed.data, weight, Int32(outFeatures), Int32(inFeatures))
        biasTensor = bias
    }

    public func forward(_ out: Floats, _ inp: UnsafePointer<Float>, rows: Int, withBias: Bool, act: Int32) {
        zk_linear_packed_forward(out, inp, packed.data, withBias ? bias : nil, Int32(rows), Int32(outFeatures), Int32(inFeatures), act)
    }
}

/// A word-embedding table as a variant stores it.
public protocol WordEmbeddings {
    var count: Int { get }
    /// dst[i] = the embedding of ids[i], as float32.
    func gather(_ ids: UnsafeBufferPointer<Int32>, into dst: Floats) throws
}
extension RowTable: WordEmbeddings {}

/// Rows of a float buffer (a parameter store's word table).
struct ParamRows: WordEmbeddings {
    let param: Param, width: Int
    var count: Int { param.count }
    func gather(_ ids: UnsafeBufferPointer<Int32>, into dst: Floats) throws {
        for (i, id) in ids.enumerated() { (dst + i * width).update(from: param.value + Int(id) * width, count: width) }
    }
}

/// How a network gets its weights: Linear layers (several HF layers stacked by rows, e.g.
/// query|key|value), the word table, and small float tensors. File readers (fp32, int8) and the
/// trainable parameter store implement it, so every kind of model is built by the same code.
public protocol WeightReader {
    associatedtype L: LinearLayer
    /// The Linear layers named `prefixes` (`<prefix>.weight` [rows, inFeatures], `<prefix>.bias`) stacked by rows.
    func linear(_ prefixes: [String], outFeatures: [Int], inFeatures: Int) throws -> L
    func wordEmbeddings(_ name: String, shape: [Int]) throws -> WordEmbeddings
    /// A float tensor kept in fp32 (LayerNorm, position/type tables, the task head).
    func param(_ name: String, shape: [Int]) throws -> Param
}

/// Reads float weights (F32/F16/BF16 converted) from a checkpoint into packed fp32 Linear layers;
/// the word table stays in the file, read per token.
public struct Fp32Reader: WeightReader {
    let ckpt: Checkpoint
    public init(_ ckpt: Checkpoint) { self.ckpt = ckpt }

    public func linear(_ prefixes: [String], outFeatures: [Int], inFeatures: Int) throws -> Linear {
        let st = ckpt.tensors
        let w = try zip(prefixes, outFeatures).map { try st.tensor(ckpt.name($0 + ".weight"), shape: [$1, inFeatures]) }
        let b = try zip(prefixes, outFeatures).map { try st.tensor(ckpt.name($0 + ".bias"), shape: [$1]) }
        let n = outFeatures.reduce(0, +)
        return Linear(weight: w.count == 1 ? w[0] : concat(w, shape: [n, inFeatures]), bias: b.count == 1 ? b[0] : concat(b, shape: [n]))
    }
    public func wordEmbeddings(_ name: String, shape: [Int]) throws -> WordEmbeddings { try ckpt.tensors.rows(ckpt.name(name), shape: shape) }
    public func param(_ name: String, shape: [Int]) throws -> Param { Param(try ckpt.tensors.tensor(ckpt.name(name), shape: shape)) }
}

/// Tensors stacked along their first dimension.
public func concat(_ parts: [Tensor], shape: [Int]) -> Tensor {
    let out = Tensor(shape: shape)
    var off = 0
    for p in parts { (out.data + off).update(from: p.data, count: p.count); off += p.count }
    return out
}
