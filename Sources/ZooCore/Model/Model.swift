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

/// What every variant implements: a model that maps a batch of WordPiece ids to last hidden states
/// and, with a task head, to logits.
public protocol Model: AnyObject {
    /// Token ids are below `vocab`; sequences are at most `maxLength` tokens.
    var vocab: Int { get }
    var maxLength: Int { get }
    /// Width of the hidden states `forward` returns.
    var width: Int { get }
    /// Task-head outputs; 0 without a head.
    var numLabels: Int { get }
    /// Number of stored parameters (each weight counted once, whatever its storage type).
    var parameterCount: Int { get }
    /// Floating-point operations of one forward of `batch` sequences of `seq` tokens (bench's GFLOPS).
    func flops(batch: Int, seq: Int) -> Double
    /// Last hidden states, [batch.size · batch.seqLen, width] (padding rows zero).
    func forward(_ batch: Batch) throws -> Tensor
    /// Task-head outputs, [batch.size, numLabels]; an error when the checkpoint has no head.
    func logits(_ batch: Batch) throws -> Tensor
}

/// A model of the transformer families, described by a `ModelSpec`.
public protocol SpecModel: Model {
    var spec: ModelSpec { get }
}

extension SpecModel {
    public var vocab: Int { spec.vocab }
    public var maxLength: Int { spec.positions }
    public var width: Int { spec.hidden }
    public var numLabels: Int { spec.head == .none ? 0 : spec.numLabels }
    public func flops(batch: Int, seq: Int) -> Double { spec.flops(batch: batch, seq: seq) }
}

/// A model that runs long batches through its layers a chunk of tokens at a time
/// (`zoo bench --chunk-tokens N` sets the chunk size, to measure it).
public protocol ChunkedModel: SpecModel {
    var chunkTokens: Int { get set }
}

/// A Hugging Face checkpoint directory: config.json, model.safetensors, vocab.txt.
public struct Checkpoint {
    public let dir: URL
    /// The description from config.json, with the task head the tensors hold.
    public let spec: ModelSpec
    public let tensors: SafeTensors

    public var vocabURL: URL { dir.appendingPathComponent("vocab.txt") }
    public var configURL: URL { dir.appendingPathComponent("config.json") }

    public init(dir: URL) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir) else {
            throw ZooError.failed("\(dir.path): no such weights directory (fetch one with `zoo weights fetch minilm-l6`)")
        }
        guard isDir.boolValue else { throw ZooError.badFile(path: dir.path, problem: "--weights takes a checkpoint directory (config.json, model.safetensors, vocab.txt), not a file") }
        self.dir = dir
        var spec = try HFFamily.spec(configAt: dir.appendingPathComponent("config.json"))
        let st = dir.appendingPathComponent("model.safetensors")
        if !FileManager.default.fileExists(atPath: st.path) {
            for pickle in ["pytorch_model.bin", "model.bin", "pytorch_model.pt"] where FileManager.default.fileExists(atPath: dir.appendingPathComponent(pickle).path) {
                throw ZooError.badFile(path: dir.appendingPathComponent(pickle).path, problem: "PyTorch pickle checkpoints are refused (zoo never unpickles). Convert once with: python -c \"from transformers import AutoModel; AutoModel.from_pretrained('\(dir.path)').save_pretrained('\(dir.path)', safe_serialization=True)\"")
            }
            throw ZooError.badFile(path: st.path, problem: "missing (a checkpoint needs model.safetensors)")
        }
        tensors = try SafeTensors(url: st)
        // A task head: the classifier and the pooler (pre_classifier) it reads.
        if let cls = tensors.entries[spec.family.names.classifier + ".weight"], tensors.entries[spec.family.names.pooler + ".weight"] != nil {
            guard cls.shape.count == 2, cls.shape[0] >= 1 else { throw ZooError.badFile(path: st.path, problem: "'\(spec.family.names.classifier).weight' has shape \(cls.shape); expected [labels, hidden]") }
            spec = spec.withHead(numLabels: cls.shape[0])
        }
        self.spec = spec
    }

    /// The name `hfName` has in this checkpoint: as given, or without the family prefix (base-model
    /// checkpoints such as `BertModel` store `embeddings.…`, not `bert.embeddings.…`).
    public func name(_ hfName: String) -> String {
        if tensors.entries[hfName] != nil { return hfName }
        let p = spec.family.names.prefix
        return hfName.hasPrefix(p) ? String(hfName.dropFirst(p.count)) : hfName
    }

    /// config.json as a dictionary (fields the zoo does not model are kept when it writes a new one).
    public func configDictionary() throws -> [String: Any] {
        (try JSONSerialization.jsonObject(with: Data(contentsOf: configURL))) as? [String: Any] ?? [:]
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
        let H = width
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
