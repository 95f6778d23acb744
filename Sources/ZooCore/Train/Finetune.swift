import CKernels
import Foundation

public typealias FinetuneOptions = TrainOptions

/// Fine-tuning on a GLUE task as a `TrainingStep`: any family's checkpoint (BERT, DistilBERT,
/// ALBERT) gets its family's classification head, trains through the one forward, and is evaluated
/// each epoch exactly as `zoo eval` evaluates the saved checkpoint (the fp32 inference network over
/// the current weights).
public final class FinetuneStep: TrainingStep {
    public let task: GLUETask
    public let base: Checkpoint
    public let network: Network<ParamLinear>
    let train: [WordPieceTokenizer.Encoding], trainTargets: [Double]
    let dev: DevSet
    /// Head tensors the base checkpoint did not have (or had for another label count): initialised.
    public let initialised: [String]

    public var stores: [ParameterStore] { [network.store!] }
    public var exampleCount: Int { train.count }

    public init(base: Checkpoint, task: GLUETask, glue: URL, options: TrainOptions) throws {
        (self.base, self.task) = (base, task)
        let tokenizer = try base.tokenizer()
        var trainExamples = try task.load(.train, from: glue)
        if let n = options.limit { trainExamples = Array(trainExamples.prefix(n)) }
        let maxLength = min(options.maxLen, base.spec.positions)
        train = trainExamples.map { tokenizer.encode($0.textA, $0.textB, maxLength: maxLength) }
        trainTargets = trainExamples.map(\.labelValue)
        dev = try DevSet(task: task, glue: glue, tokenizer: tokenizer, maxLength: maxLength)
        guard !train.isEmpty else { throw ZooError.badFile(path: try task.file(.train, in: glue).path, problem: "no examples in the train split") }
        let store = ParameterStore(spec: base.spec.withHead(numLabels: task.numLabels))
        initialised = try store.load(base, seed: options.seed)
        network = try Network(spec: store.spec, reader: store)
    }

    public func step(_ examples: [Int], dropoutSeed: UInt64) throws -> (loss: Float, terms: [String: Float], tokens: Int) {
        let batch = Batch(examples.map { train[$0] })
        let loss = try network.step(batch, targets: Targets(examples.map { trainTargets[$0] }, regression: task.isRegression), dropoutSeed: dropoutSeed)
        return (loss, [:], batch.lengths.reduce(0) { $0 + Int($1) })
    }

    public func evaluate() throws -> TaskResult? { try dev.score(network.store!) }

    /// The HF-compatible result: config.json, model.safetensors, vocab.txt.
    public func export(to out: URL) throws {
        let names = task.isRegression ? ["LABEL_0"] : task.labels
        try network.store!.writeCheckpoint(to: out, base: base, config: [
            "num_labels": task.numLabels,
            "problem_type": task.isRegression ? "regression" : "single_label_classification",
            "id2label": Dictionary(uniqueKeysWithValues: names.enumerated().map { ("\($0.offset)", $0.element) }),
            "label2id": Dictionary(uniqueKeysWithValues: names.enumerated().map { ($0.element, $0.offset) }),
            "finetuning_task": task.name,
        ])
    }
}

/// Task predictions of a model with a head: argmax of the logits, or the score for regression, in
/// input order (length-sorted batches inside). `zoo eval` and fine-tuning's dev evaluation use it.
public func predictions(_ model: Model, _ encodings: [WordPieceTokenizer.Encoding], regression: Bool, batchSize: Int = 32,
                        progress: ((Int, Int) -> Void)? = nil) throws -> [Double] {
    try inLengthSortedBatches(encodings, batchSize: batchSize, progress: progress) { batch in
        let logits = try model.logits(batch)
        return (0..<batch.size).map { b in
            let row = logits.row(b)
            return regression ? Double(row[0]) : Double(row.indices.max { row[$0] < row[$1] }!)
        }
    }
}

/// `zoo finetune`: a `FinetuneStep` run by a `Trainer`, then the HF checkpoint and metrics.json.
public final class Finetuner {
    public let work: FinetuneStep
    public let trainer: Trainer
    public let out: URL

    public var checkpointURL: URL { trainer.checkpointURL }
    public var batchesPerEpoch: Int { trainer.batchesPerEpoch }

    public init(base: Checkpoint, task: GLUETask, glue: URL, options: TrainOptions, out: URL) throws {
        work = try FinetuneStep(base: base, task: task, glue: glue, options: options)
        trainer = try Trainer(work, options: options, out: out)
        self.out = out
    }

    public func resume() throws { try trainer.resume() }

    public func run(log: (String) -> Void, progress: ((Int, Int) -> Void)? = nil) throws {
        try trainer.run(log: log, progress: progress)
        try work.export(to: out)
        var metrics = trainer.record
        metrics["task"] = work.task.name
        metrics["base"] = work.base.dir.path
        metrics["options"] = try JSONSerialization.jsonObject(with: JSONEncoder().encode(trainer.options))
        try writeAtomically(try JSONSerialization.data(withJSONObject: metrics, options: [.prettyPrinted, .sortedKeys]), to: out.appendingPathComponent("metrics.json"))
    }
}

extension GLUETask {
    /// Labelled batches of `examples` in order (calibration, importance scoring): `batchSize` each.
    public func batches(_ examples: [Example], tokenizer: WordPieceTokenizer, maxLength: Int, batchSize: Int = 32) -> [(Batch, Targets)] {
        stride(from: 0, to: examples.count, by: batchSize).map { s in
            let part = examples[s..<min(s + batchSize, examples.count)]
            return (Batch(part.map { tokenizer.encode($0.textA, $0.textB, maxLength: maxLength) }), Targets(part.map(\.labelValue), regression: isRegression))
        }
    }
}

extension Checkpoint {
    /// The task a `zoo finetune` output was trained on (its metrics.json), or nil.
    public func fineTunedTask() -> String? {
        guard let data = try? Data(contentsOf: dir.appendingPathComponent("metrics.json")),
              let m = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return nil }
        return m["task"] as? String
    }

    /// The task to work on: `name` (a command's --task), else the one the checkpoint was fine-tuned
    /// on; its classifier must have the task's number of outputs.
    public func task(_ name: String?) throws -> GLUETask {
        guard let name = name ?? fineTunedTask() else { throw ZooError.usage("--task is needed (no metrics.json from zoo finetune in \(dir.path))") }
        let task = try GLUETask.named(name)
        guard spec.numLabels == task.numLabels else {
            throw ZooError.badFile(path: dir.path, problem: "classifier has \(spec.numLabels) outputs, \(task.glueName) needs \(task.numLabels)")
        }
        return task
    }
}

/// A task's dev split, tokenized once, and the score of a model on it — exactly what `zoo eval`
/// computes: fine-tuning's, pruning's, ALBERT's and distillation's dev scores.
public struct DevSet {
    public let task: GLUETask
    public let encodings: [WordPieceTokenizer.Encoding], labels: [Double]

    public init(task: GLUETask, glue: URL, tokenizer: WordPieceTokenizer, maxLength: Int) throws {
        let examples = try task.load(.dev, from: glue)
        self.task = task
        encodings = examples.map { tokenizer.encode($0.textA, $0.textB, maxLength: maxLength) }
        labels = examples.map(\.labelValue)
    }

    public func score(_ model: Model) throws -> TaskResult {
        TaskResult(task: task, predictions: try predictions(model, encodings, regression: task.isRegression), labels: labels)
    }

    /// The score of a parameter store's current values (packed into the fp32 inference network).
    public func score(_ store: ParameterStore) throws -> TaskResult { try score(try Network<Linear>(packing: store)) }
}

extension Targets {
    /// Class indices or (regression) scores from GLUE label values.
    public init(_ values: [Double], regression: Bool) {
        self = regression ? .scores(values.map { Float($0) }) : .classes(values.map { Int32($0) })
    }
}
