import CKernels
import Foundation

/// A padded batch of tokenized sequences: `size` rows of `seqLen` tokens, row b real up to `lengths[b]`.
public struct Batch {
    public let size: Int
    public let seqLen: Int
    public var inputIds: [Int32]
    public var tokenTypeIds: [Int32]
    public var lengths: [Int32]

    public init(_ encodings: [WordPieceTokenizer.Encoding], padId: Int32 = 0) {
        size = encodings.count
        seqLen = encodings.map(\.inputIds.count).max() ?? 0
        inputIds = []; tokenTypeIds = []; lengths = []
        inputIds.reserveCapacity(size * seqLen)
        for e in encodings {
            let pad = seqLen - e.inputIds.count
            inputIds += e.inputIds + [Int32](repeating: padId, count: pad)
            tokenTypeIds += e.tokenTypeIds + [Int32](repeating: 0, count: pad)
            lengths.append(Int32(e.inputIds.count))
        }
    }

    /// A synthetic batch of `size` × `seqLen` real tokens (for speed measurements).
    public init(randomWithSize size: Int, seqLen: Int, vocabSize: Int, seed: UInt64 = 1) {
        var rng = SplitMix64(seed: seed)
        self.size = size
        self.seqLen = seqLen
        inputIds = (0..<(size * seqLen)).map { _ in Int32(rng.next() % UInt64(vocabSize)) }
        tokenTypeIds = [Int32](repeating: 0, count: size * seqLen)
        lengths = [Int32](repeating: Int32(seqLen), count: size)
    }
}

/// What every variant implements: a BERT-shaped encoder that maps a batch to last hidden states.
public protocol Model: AnyObject {
    var config: BertConfig { get }
    /// Number of stored parameters (each weight counted once, whatever its storage type).
    var parameterCount: Int { get }
    /// Last hidden states, [batch.size · batch.seqLen, hiddenSize].
    func forward(_ batch: Batch) throws -> Tensor
}

/// A model that runs long batches through its layers a chunk of tokens at a time
/// (`zoo bench --chunk-tokens N` sets the chunk size, to measure it).
public protocol ChunkedModel: Model {
    var chunkTokens: Int { get set }
}

/// Where a variant gets its weights: a checkpoint directory or a named random geometry.
public enum ModelSource {
    case checkpoint(Checkpoint)
    case geometry(Geometry, seed: UInt64)
}

/// A registered variant: a name users type, a description, and how to build it.
public struct Variant {
    public let name: String
    public let summary: String
    public let load: (ModelSource) throws -> Model

    public init(name: String, summary: String, load: @escaping (ModelSource) throws -> Model) {
        self.name = name
        self.summary = summary
        self.load = load
    }
}

/// Variants by name. The CLI builds one from every plugin's `variants` list.
public struct Registry {
    public let variants: [Variant]

    public init(_ lists: [Variant]...) {
        variants = lists.flatMap { $0 }
        precondition(Set(variants.map(\.name)).count == variants.count, "two plugins register the same variant name")
    }

    public func variant(_ name: String) throws -> Variant {
        guard let v = variants.first(where: { $0.name == name }) else {
            throw ZooError.usage("unknown variant '\(name)'; `zoo list` shows the registered ones: \(variants.map(\.name).joined(separator: ", "))")
        }
        return v
    }
}

/// A Hugging Face checkpoint directory: config.json, model.safetensors, vocab.txt.
public struct Checkpoint {
    public let dir: URL
    public let config: BertConfig
    public let tensors: SafeTensors

    public var vocabURL: URL { dir.appendingPathComponent("vocab.txt") }

    public init(dir: URL) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir) else {
            throw ZooError.failed("\(dir.path): no such weights directory (fetch one with `zoo weights fetch minilm-l6`)")
        }
        guard isDir.boolValue else { throw ZooError.badFile(path: dir.path, problem: "--weights takes a checkpoint directory (config.json, model.safetensors, vocab.txt), not a file") }
        self.dir = dir
        config = try BertConfig.load(dir.appendingPathComponent("config.json"))
        let st = dir.appendingPathComponent("model.safetensors")
        if !FileManager.default.fileExists(atPath: st.path) {
            for pickle in ["pytorch_model.bin", "model.bin", "pytorch_model.pt"] where FileManager.default.fileExists(atPath: dir.appendingPathComponent(pickle).path) {
                throw ZooError.badFile(path: dir.appendingPathComponent(pickle).path, problem: "PyTorch pickle checkpoints are refused (zoo never unpickles). Convert once with: python -c \"from transformers import AutoModel; AutoModel.from_pretrained('\(dir.path)').save_pretrained('\(dir.path)', safe_serialization=True)\"")
            }
            throw ZooError.badFile(path: st.path, problem: "missing (a checkpoint needs model.safetensors)")
        }
        tensors = try SafeTensors(url: st)
    }

    public func tokenizer() throws -> WordPieceTokenizer { try WordPieceTokenizer(vocabURL: vocabURL) }
}

/// Deterministic pseudo-random numbers (for random geometries, shuffling, dropout).
public struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    public mutating func symmetric() -> Float { Float(Double(next() >> 11) / Double(1 << 53)) * 2 - 1 }
}

public enum Pooling: String, CaseIterable {
    case mean, cls
}

extension Model {
    /// Sentence embeddings: [batch.size, hiddenSize].
    public func embed(_ batch: Batch, pooling: Pooling) throws -> Tensor {
        let h = try forward(batch)
        let H = config.hiddenSize
        let out = Tensor(shape: [batch.size, H])
        defer { withExtendedLifetime(h) {} }
        switch pooling {
        case .mean:
            batch.lengths.withUnsafeBufferPointer { zk_mean_pool_forward(out.data, h.data, $0.baseAddress, Int32(batch.size), Int32(batch.seqLen), Int32(H)) }
        case .cls:
            for b in 0..<batch.size { (out.data + b * H).update(from: h.data + b * batch.seqLen * H, count: H) }
        }
        return out
    }
}

extension Model {
    /// Pooled sentence embeddings of `encodings`, in input order (length-sorted batches inside).
    public func embeddings(_ encodings: [WordPieceTokenizer.Encoding], pooling: Pooling, batchSize: Int,
                           progress: ((Int, Int) -> Void)? = nil) throws -> [[Float]] {
        try inLengthSortedBatches(encodings, batchSize: batchSize, progress: progress) { batch in
            let e = try embed(batch, pooling: pooling)
            return (0..<batch.size).map { e.row($0) }
        }
    }
}

/// Runs `body` over `items` in length-sorted batches (dynamic padding), returning results in input order.
public func inLengthSortedBatches<R>(_ encodings: [WordPieceTokenizer.Encoding], batchSize: Int,
                                     progress: ((Int, Int) -> Void)? = nil,
                                     _ body: (Batch) throws -> [R]) rethrows -> [R] {
    let order = encodings.indices.sorted { encodings[$0].inputIds.count < encodings[$1].inputIds.count }
    var out = [R?](repeating: nil, count: encodings.count)
    var done = 0
    for start in stride(from: 0, to: order.count, by: max(batchSize, 1)) {
        let idx = Array(order[start..<min(start + batchSize, order.count)])
        let results = try body(Batch(idx.map { encodings[$0] }))
        for (i, r) in zip(idx, results) { out[i] = r }
        done += idx.count
        progress?(done, encodings.count)
    }
    return out.map { $0! }
}
