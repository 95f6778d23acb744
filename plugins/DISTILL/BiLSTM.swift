import CKernels
import Foundation
import ZooCore

/// The distilled BiLSTM of Tang et al. (2019), "BiLSTM-SOFT": word vectors (started from the
/// teacher's WordPiece table), one bidirectional LSTM layer, each sentence represented by the last
/// forward and the first backward state, a ReLU layer and the classifier. A pair is encoded by the
/// same LSTM on each side, and the classifier reads [r₁, r₂, r₁⊙r₂, |r₁ − r₂|]. It reads the
/// batches every variant reads: the sentences are the [CLS] … [SEP] (… [SEP]) rows by token type.
///
/// Not an HF model: its directory is the zoo's own — config.json (`model_type` "zoo_bilstm"),
/// model.safetensors (PyTorch `nn.LSTM` tensor names), vocab.txt.
public final class BiLSTM: Model {
    public struct Config: Codable, Equatable {
        public var modelType = "zoo_bilstm"
        public var vocabSize: Int, embeddingSize: Int
        public var hiddenSize: Int          // per direction
        public var classifierSize: Int      // the ReLU layer
        public var numLabels: Int
        public var pair: Bool               // sentence-pair task: the classifier reads 4 × 2·hidden features
        public var maxLength: Int

        var features: Int { (pair ? 8 : 2) * hiddenSize }

        enum CodingKeys: String, CodingKey {
            case modelType = "model_type", vocabSize = "vocab_size", embeddingSize = "embedding_size", hiddenSize = "hidden_size"
            case classifierSize = "classifier_size", numLabels = "num_labels", pair, maxLength = "max_length"
        }
    }

    public let config: Config
    /// Every tensor, trainable when the student is being distilled.
    public let store: ParameterStore

    public var vocab: Int { config.vocabSize }
    public var maxLength: Int { config.maxLength }
    public var width: Int { 2 * config.hiddenSize }
    public var numLabels: Int { config.numLabels }
    public var parameterCount: Int { store.count }

    static let directions = ["", "_reverse"]

    static func layout(_ c: Config) -> [(name: String, shape: [Int], decay: Bool)] {
        let G = 4 * c.hiddenSize
        var out: [(name: String, shape: [Int], decay: Bool)] = [("embedding.weight", [c.vocabSize, c.embeddingSize], true)]
        for d in directions {
            out += [("lstm.weight_ih_l0" + d, [G, c.embeddingSize], true), ("lstm.weight_hh_l0" + d, [G, c.hiddenSize], true),
                    ("lstm.bias_ih_l0" + d, [G], false), ("lstm.bias_hh_l0" + d, [G], false)]
        }
        return out + [("hidden.weight", [c.classifierSize, c.features], true), ("hidden.bias", [c.classifierSize], false),
                      ("classifier.weight", [c.numLabels, c.classifierSize], true), ("classifier.bias", [c.numLabels], false)]
    }

    /// A new student of `config`: word vectors copied from `table` [vocab, embedding], the rest as
    /// PyTorch initialises nn.LSTM and nn.Linear (uniform ±1/√fan-in), from `seed`.
    public init(config: Config, table: UnsafePointer<Float>, seed: UInt64) {
        self.config = config
        store = ParameterStore(tensors: Self.layout(config))
        var rng = SplitMix64(seed: seed)
        for s in store.slots {
            let v = store.view(s.name)
            if s.name == "embedding.weight" { v.value.update(from: table, count: v.count); continue }
            let fanIn = s.name.hasPrefix("lstm") ? config.hiddenSize : s.name.hasPrefix("hidden") ? config.features : config.classifierSize
            let bound = 1 / Float(fanIn).squareRoot()
            for i in 0..<v.count { v.value[i] = rng.symmetric() * bound }
        }
    }

    /// A student written by `save` (or by PyTorch under the same names).
    public init(directory dir: URL) throws {
        let url = dir.appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ZooError.failed("\(dir.path): no bilstm-soft student here (no config.json; make one with `zoo distill --recipe bilstm-soft`)")
        }
        guard let c = try? JSONDecoder().decode(Config.self, from: data), c.modelType == "zoo_bilstm" else {
            throw ZooError.badFile(path: url.path, problem: "not a bilstm-soft config (model_type \"zoo_bilstm\" with vocab_size, embedding_size, hidden_size, classifier_size, num_labels, pair, max_length)")
        }
        guard [c.vocabSize, c.embeddingSize, c.hiddenSize, c.classifierSize, c.numLabels, c.maxLength].allSatisfy({ $0 > 0 }) else {
            throw ZooError.badFile(path: url.path, problem: "sizes must be positive")
        }
        let tensors = try SafeTensors(url: dir.appendingPathComponent("model.safetensors"))
        config = c
        store = ParameterStore(tensors: Self.layout(c), trainable: false)
        for s in store.slots {
            let t = try tensors.tensor(s.name, shape: s.shape)
            store.view(s.name).value.update(from: t.data, count: s.count)
        }
    }

    /// config.json, model.safetensors and `vocab`'s vocab.txt in `dir`.
    public func save(to dir: URL, vocab: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeFiles([("config.json", try encoder.encode(config)), ("model.safetensors", try store.safetensors()),
                        ("vocab.txt", try Data(contentsOf: vocab))], in: dir)
    }

    // MARK: forward / backward

    /// What a batch's forward keeps: its sentences packed (one or two per example, in order), the
    /// word vectors, each direction's states and gates, the classifier's input, the ReLU layer
    /// before and after its activation, the logits.
    public struct Record {
        public let B: Int
        let ids: [Int32], lengths: [Int32], starts: [Int]
        var x: [Float], h: [[Float]], c: [[Float]], gates: [[Float]]      // h, c, gates per direction
        var reps: [[Float]], features: [Float], pre: [Float], hidden: [Float], logits: [Float]
    }

    /// The sentences of row b: [CLS] A [SEP] (B [SEP]) by token type, without the special tokens.
    func segments(_ batch: Batch, _ b: Int) -> [[Int32]] {
        let n = Int(batch.lengths[b]), row = b * batch.seqLen
        let ids = batch.inputIds[row..<row + n], types = batch.tokenTypeIds[row..<row + n]
        let a = ids.indices.filter { types[$0] == 0 }, second = ids.indices.filter { types[$0] != 0 }
        let first = Array(a.dropFirst().dropLast().map { ids[$0] })
        return config.pair ? [first, Array(second.dropLast().map { ids[$0] })] : [first]
    }

    public func record(_ batch: Batch) -> Record {
        let (B, E, Hd, F, K, C) = (batch.size, config.embeddingSize, config.hiddenSize, config.features, config.classifierSize, config.numLabels)
        let sentences = (0..<B).flatMap { segments(batch, $0) }
        let ids = sentences.flatMap { $0 }, lengths = sentences.map { Int32($0.count) }
        let starts = sentences.reduce(into: [0]) { $0.append($0.last! + $1.count) }
        let T = ids.count, table = store.view("embedding.weight").value
        var x = [Float](repeating: 0, count: T * E)
        for (t, id) in ids.enumerated() { for j in 0..<E { x[t * E + j] = table[Int(id) * E + j] } }
        var h: [[Float]] = [], c: [[Float]] = [], gates: [[Float]] = []
        for (r, d) in Self.directions.enumerated() {
            var hd = [Float](repeating: 0, count: T * Hd), cd = hd, gd = [Float](repeating: 0, count: T * 4 * Hd)
            zk_lstm_forward(&hd, &cd, &gd, x, store.view("lstm.weight_ih_l0" + d).value, store.view("lstm.weight_hh_l0" + d).value,
                            store.view("lstm.bias_ih_l0" + d).value, store.view("lstm.bias_hh_l0" + d).value, lengths, Int32(sentences.count),
                            Int32(E), Int32(Hd), Int32(r))
            h.append(hd); c.append(cd); gates.append(gd)
        }
        // each sentence: [last forward state, first backward state] (zeros when empty)
        let reps: [[Float]] = sentences.indices.map { i in
            let (s, n) = (starts[i], sentences[i].count)
            guard n > 0 else { return [Float](repeating: 0, count: 2 * Hd) }
            return Array(h[0][(s + n - 1) * Hd..<(s + n) * Hd]) + Array(h[1][s * Hd..<(s + 1) * Hd])
        }
        var features = [Float](repeating: 0, count: B * F)
        for b in 0..<B {
            let f = config.pair ? Self.pairFeatures(reps[2 * b], reps[2 * b + 1]) : reps[b]
            for j in 0..<F { features[b * F + j] = f[j] }
        }
        var pre = [Float](repeating: 0, count: B * K), hidden = pre, logits = [Float](repeating: 0, count: B * C)
        zk_linear_forward(&pre, features, store.view("hidden.weight").value, store.view("hidden.bias").value, Int32(B), Int32(K), Int32(F))
        zk_activation_forward(&hidden, pre, B * K, Int32(ZK_ACT_RELU))
        zk_linear_forward(&logits, hidden, store.view("classifier.weight").value, store.view("classifier.bias").value, Int32(B), Int32(C), Int32(K))
        return Record(B: B, ids: ids, lengths: lengths, starts: starts, x: x, h: h, c: c, gates: gates,
                      reps: reps, features: features, pre: pre, hidden: hidden, logits: logits)
    }

    static func pairFeatures(_ a: [Float], _ b: [Float]) -> [Float] { a + b + zip(a, b).map(*) + zip(a, b).map { abs($0 - $1) } }

    /// Backward of `record` from dlogits [B, C]: every parameter's gradient accumulates into the store.
    public func backward(_ rec: Record, dlogits: [Float]) {
        let (B, F, K, C, E, Hd) = (rec.B, config.features, config.classifierSize, config.numLabels, config.embeddingSize, config.hiddenSize)
        func g(_ name: String) -> UnsafeMutablePointer<Float> { store.view(name).grad! }
        var dhidden = [Float](repeating: 0, count: B * K), dfeatures = [Float](repeating: 0, count: B * F)
        zk_linear_backward(&dhidden, g("classifier.weight"), g("classifier.bias"), dlogits, rec.hidden, store.view("classifier.weight").value,
                           Int32(B), Int32(C), Int32(K))
        zk_activation_backward(&dhidden, rec.pre, dhidden, B * K, Int32(ZK_ACT_RELU))
        zk_linear_backward(&dfeatures, g("hidden.weight"), g("hidden.bias"), dhidden, rec.features, store.view("hidden.weight").value,
                           Int32(B), Int32(K), Int32(F))
        // the gradient at each sentence's representation, then at the LSTM states it was read from
        var dreps: [[Float]] = []
        for b in 0..<B {
            let df = Array(dfeatures[b * F..<(b + 1) * F])
            guard config.pair else { dreps.append(df); continue }
            let (r1, r2, R) = (rec.reps[2 * b], rec.reps[2 * b + 1], 2 * Hd)
            var d1 = [Float](repeating: 0, count: R), d2 = d1
            for j in 0..<R {
                let sign: Float = r1[j] > r2[j] ? 1 : r1[j] < r2[j] ? -1 : 0
                d1[j] = df[j] + df[2 * R + j] * r2[j] + df[3 * R + j] * sign
                d2[j] = df[R + j] + df[2 * R + j] * r1[j] - df[3 * R + j] * sign
            }
            dreps += [d1, d2]
        }
        let T = rec.ids.count
        var dx = [[Float]](repeating: [Float](repeating: 0, count: T * E), count: 2)   // per direction
        for (r, dir) in Self.directions.enumerated() {
            var dh = [Float](repeating: 0, count: T * Hd), dgates = [Float](repeating: 0, count: T * 4 * Hd)
            for (i, d) in dreps.enumerated() where rec.lengths[i] > 0 {
                let t = r == 0 ? rec.starts[i] + Int(rec.lengths[i]) - 1 : rec.starts[i]
                for j in 0..<Hd { dh[t * Hd + j] = d[r * Hd + j] }
            }
            zk_lstm_backward(&dx[r], g("lstm.weight_ih_l0" + dir), g("lstm.weight_hh_l0" + dir), g("lstm.bias_ih_l0" + dir), g("lstm.bias_hh_l0" + dir),
                             &dgates, dh, rec.x, rec.h[r], rec.c[r], rec.gates[r], store.view("lstm.weight_ih_l0" + dir).value,
                             store.view("lstm.weight_hh_l0" + dir).value, rec.lengths, Int32(rec.lengths.count), Int32(E), Int32(Hd), Int32(r))
        }
        let dtable = g("embedding.weight")
        for (t, id) in rec.ids.enumerated() { for j in 0..<E { dtable[Int(id) * E + j] += dx[0][t * E + j] + dx[1][t * E + j] } }
    }

    // MARK: Model

    public func flops(batch: Int, seq: Int) -> Double {
        let (E, Hd) = (Double(config.embeddingSize), Double(config.hiddenSize))
        return Double(batch) * (2 * Double(seq) * 2 * 4 * Hd * (E + Hd) + 2 * (Double(config.features) + Double(config.numLabels)) * Double(config.classifierSize))
    }

    /// Per-token states [forward, backward] of each sentence, zero at special and padding positions.
    public func forward(_ batch: Batch) throws -> Tensor {
        let W = width, out = Tensor(shape: [batch.size * batch.seqLen, W]), Hd = config.hiddenSize
        let rec = record(batch), perExample = config.pair ? 2 : 1
        for b in 0..<batch.size {
            var position = 1                     // after [CLS]; each sentence is followed by its [SEP]
            for i in b * perExample..<(b + 1) * perExample {
                let (s, n) = (rec.starts[i], Int(rec.lengths[i]))
                for t in 0..<n {
                    let row = out.data + (b * batch.seqLen + position + t) * W
                    for j in 0..<Hd { row[j] = rec.h[0][(s + t) * Hd + j]; row[Hd + j] = rec.h[1][(s + t) * Hd + j] }
                }
                position += n + 1
            }
        }
        return out
    }

    public func logits(_ batch: Batch) throws -> Tensor {
        let out = Tensor(shape: [batch.size, config.numLabels])
        out.data.update(from: record(batch).logits, count: out.count)
        return out
    }
}

/// Distillation into the BiLSTM (Tang et al. 2019): the MSE between student and teacher logits,
/// the teacher's logits computed once for the whole (augmented) training set.
public final class BiLSTMStep: TrainingStep {
    public let student: BiLSTM
    let examples: [WordPieceTokenizer.Encoding], teacherLogits: [Float]
    let dev: DevSet?

    public var stores: [ParameterStore] { [student.store] }
    public var exampleCount: Int { examples.count }

    public init(teacher: Model, student: BiLSTM, examples: [WordPieceTokenizer.Encoding], dev: DevSet?, progress: ((Int, Int) -> Void)? = nil) throws {
        let C = student.numLabels
        guard teacher.numLabels == C else { throw ZooError.usage("the teacher has \(teacher.numLabels) outputs, the student \(C)") }
        teacherLogits = try inLengthSortedBatches(examples, batchSize: 64, progress: progress) { batch in
            let l = try teacher.logits(batch)
            return (0..<batch.size).map { l.row($0) }
        }.flatMap { $0 }
        (self.student, self.examples, self.dev) = (student, examples, dev)
    }

    public func step(_ indices: [Int], dropoutSeed: UInt64) throws -> (loss: Float, terms: [String: Float], tokens: Int) {
        let batch = Batch(indices.map { examples[$0] }), C = student.numLabels
        let rec = student.record(batch)
        let target = indices.flatMap { teacherLogits[$0 * C..<($0 + 1) * C] }
        var d = [Float](repeating: 0, count: rec.B * C)
        let loss = DistillLoss.mse(student: rec.logits, teacher: target, count: d.count, ds: &d)
        student.backward(rec, dlogits: d)
        return (loss, ["logits_mse": loss], batch.lengths.reduce(0) { $0 + Int($1) })
    }

    public func evaluate() throws -> TaskResult? { try dev?.score(student) }
}
