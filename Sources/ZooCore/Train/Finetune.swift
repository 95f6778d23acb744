import CKernels
import Foundation

/// The recipe of a fine-tuning run (HF Trainer's meanings).
public struct FinetuneOptions: Codable, Equatable {
    public var epochs = 3
    public var lr: Float = 5e-5
    public var batch = 32
    public var maxLen = 128
    public var warmup: Float = 0.1          // fraction of all steps with linear warm-up
    public var weightDecay: Float = 0.01
    public var seed: UInt64 = 42
    public var saveEvery = 500              // steps between mid-epoch checkpoints (0: epoch ends only)
    public var maxGradNorm: Float = 1.0
    public var limit: Int? = nil            // use only the first N training examples (smoke runs)
    public init() {}
}

/// Fine-tunes a BERT checkpoint on a GLUE task: seeded shuffling, dynamic padding, AdamW with linear
/// warm-up and decay, gradient clipping, dev evaluation each epoch, and atomic resumable checkpoints
/// (`<out>/checkpoint.safetensors`: weights, optimizer moments, step, data position, loss curve).
public final class Finetuner {
    public let task: GLUETask
    public let options: FinetuneOptions
    public let out: URL
    let base: Checkpoint
    let tokenizer: WordPieceTokenizer
    let train: [WordPieceTokenizer.Encoding], trainTargets: [Double]
    let dev: [WordPieceTokenizer.Encoding], devLabels: [Double]
    public let model: BertClassifier
    let opt: AdamW
    var step = 0, epoch = 0, position = 0          // position: batches done in the current epoch
    var lossCurve: [Float] = []
    var epochMetrics: [[String: Any]] = []
    var trainedTokens = 0, trainSeconds = 0.0

    public var checkpointURL: URL { out.appendingPathComponent("checkpoint.safetensors") }
    public var batchesPerEpoch: Int { (train.count + options.batch - 1) / options.batch }
    public var totalSteps: Int { batchesPerEpoch * options.epochs }

    public init(base: Checkpoint, task: GLUETask, glue: URL, options: FinetuneOptions, out: URL) throws {
        (self.base, self.task, self.options, self.out) = (base, task, options, out)
        let tokenizer = try base.tokenizer()
        self.tokenizer = tokenizer
        var trainExamples = try task.load(.train, from: glue)
        if let n = options.limit { trainExamples = Array(trainExamples.prefix(n)) }
        let devExamples = try task.load(.dev, from: glue)
        let enc = { (e: Example) in tokenizer.encode(e.textA, e.textB, maxLength: min(options.maxLen, base.config.maxPositionEmbeddings)) }
        train = trainExamples.map(enc)
        trainTargets = trainExamples.map(\.labelValue)
        dev = devExamples.map(enc)
        devLabels = devExamples.map(\.labelValue)
        guard !train.isEmpty else { throw ZooError.failed("\(task.glueName): the train split is empty") }
        model = BertClassifier(config: base.config, numLabels: task.numLabels)
        try model.load(base.tensors, seed: options.seed)
        opt = AdamW(parameterCount: model.parameterCount, lr: options.lr, weightDecay: options.weightDecay)
    }

    /// HF's get_linear_schedule_with_warmup, evaluated at the optimizer step about to be taken.
    public func learningRate(at step: Int) -> Float {
        let warm = Int(Float(totalSteps) * options.warmup)
        if step < warm { return options.lr * Float(step) / Float(max(1, warm)) }
        return options.lr * max(0, Float(totalSteps - step) / Float(max(1, totalSteps - warm)))
    }

    /// The order of training examples in `epoch`: a seeded shuffle, the same on every run.
    public func order(epoch: Int) -> [Int] {
        var rng = SplitMix64(seed: options.seed &+ 0x5EED &* UInt64(epoch + 1))
        var idx = Array(train.indices)
        for i in stride(from: idx.count - 1, to: 0, by: -1) { idx.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return idx
    }

    /// Runs (or, after `resume()`, continues) training to the end. `log` receives progress lines.
    public func run(log: (String) -> Void, progress: ((Int, Int) -> Void)? = nil) throws {
        while epoch < options.epochs {
            let idx = order(epoch: epoch)
            while position < batchesPerEpoch {
                let slice = idx[(position * options.batch)..<min((position + 1) * options.batch, idx.count)]
                let batch = Batch(slice.map { train[$0] })
                let t0 = Date()
                model.zeroGrad()
                let targets: Targets = task.isRegression ? .scores(slice.map { Float(trainTargets[$0]) })
                                                         : .classes(slice.map { Int32(trainTargets[$0]) })
                var dropoutRNG = SplitMix64(seed: options.seed ^ (0xD50 &* UInt64(step + 1)))
                let loss = model.backward(batch, targets: targets, seed: dropoutRNG.next())
                clipGradients()
                opt.lr = learningRate(at: step)
                opt.update(model)
                trainSeconds += Date().timeIntervalSince(t0)
                trainedTokens += batch.lengths.reduce(0) { $0 + Int($1) }
                lossCurve.append(loss)
                step += 1
                position += 1
                progress?(position, batchesPerEpoch)
                if options.saveEvery > 0 && step % options.saveEvery == 0 && position < batchesPerEpoch { try saveCheckpoint() }
            }
            let result = try evaluate()
            epochMetrics.append(["epoch": epoch + 1, "step": step, "dev": result.metrics, "score": result.score,
                                 "mean_loss": lossCurve.suffix(batchesPerEpoch).reduce(0, +) / Float(min(batchesPerEpoch, lossCurve.count))])
            log(String(format: "epoch %d/%d: dev %@ = %.2f", epoch + 1, options.epochs,
                       result.metrics.sorted { $0.key < $1.key }.map { String(format: "%@ %.2f", $0.key, $0.value) }.joined(separator: ", "), result.score))
            epoch += 1
            position = 0
            try saveCheckpoint()
        }
        try export()
    }

    /// Global-norm clipping at `maxGradNorm` (torch.nn.utils.clip_grad_norm_).
    func clipGradients() { _ = zk_clip_grad_norm(model.grads.data, model.grads.count, options.maxGradNorm) }

    /// Dev predictions: argmax of the logits, or the score for regression.
    public func predict(_ encodings: [WordPieceTokenizer.Encoding]) -> [Double] {
        inLengthSortedBatches(encodings, batchSize: 64) { batch in
            let logits = model.logits(batch)
            return (0..<batch.size).map { ClassificationHead.prediction(logits.row($0), regression: task.isRegression) }
        }
    }

    public func evaluate() throws -> TaskResult { TaskResult(task: task, predictions: predict(dev), labels: devLabels) }

    // MARK: checkpoints

    /// Weights, optimizer moments and the run's position in one file, written atomically.
    public func saveCheckpoint() throws {
        let meta: [String: Any] = ["step": step, "epoch": epoch, "position": position, "adam_step": opt.step,
                                   "trained_tokens": trainedTokens, "train_seconds": trainSeconds,
                                   "options": String(decoding: try JSONEncoder().encode(options), as: UTF8.self),
                                   "loss_curve": lossCurve.map { Double($0) }, "epochs": epochMetrics]
        let metaJSON = String(decoding: try JSONSerialization.data(withJSONObject: meta, options: [.sortedKeys]), as: UTF8.self)
        try SafeTensors.write([("params", model.params), ("adam_m", opt.m), ("adam_v", opt.v)], metadata: ["zoo_state": metaJSON], to: checkpointURL)
    }

    /// Continues from `checkpoint.safetensors`; the recipe must be the one the run started with.
    public func resume() throws {
        let st = try SafeTensors(url: checkpointURL)
        guard let json = st.metadata["zoo_state"], let meta = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let saved = (meta["options"] as? String).flatMap({ try? JSONDecoder().decode(FinetuneOptions.self, from: Data($0.utf8)) }) else {
            throw ZooError.badFile(path: checkpointURL.path, problem: "not a zoo training checkpoint (no zoo_state metadata)")
        }
        guard saved == options else { throw ZooError.usage("--resume needs the same recipe as the interrupted run (\(checkpointURL.path) has \(saved))") }
        for (name, t) in [("params", model.params), ("adam_m", opt.m), ("adam_v", opt.v)] {
            let src = try st.tensor(name, shape: [t.count])
            t.data.update(from: src.data, count: t.count)
        }
        step = meta["step"] as? Int ?? 0
        epoch = meta["epoch"] as? Int ?? 0
        position = meta["position"] as? Int ?? 0
        opt.restore(step: meta["adam_step"] as? Int ?? step)
        trainedTokens = meta["trained_tokens"] as? Int ?? 0
        trainSeconds = meta["train_seconds"] as? Double ?? 0
        lossCurve = (meta["loss_curve"] as? [Double] ?? []).map(Float.init)
        epochMetrics = meta["epochs"] as? [[String: Any]] ?? []
    }

    /// The HF-compatible result: config.json, model.safetensors, vocab.txt, metrics.json.
    public func export() throws {
        var config = (try? JSONSerialization.jsonObject(with: Data(contentsOf: base.dir.appendingPathComponent("config.json")))) as? [String: Any] ?? [:]
        config["architectures"] = ["BertForSequenceClassification"]
        config["num_labels"] = task.numLabels
        config["problem_type"] = task.isRegression ? "regression" : "single_label_classification"
        let names = task.isRegression ? ["LABEL_0"] : task.labels
        config["id2label"] = Dictionary(uniqueKeysWithValues: names.enumerated().map { ("\($0.offset)", $0.element) })
        config["label2id"] = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($0.element, $0.offset) })
        config["finetuning_task"] = task.name
        try writeAtomically(try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]), to: out.appendingPathComponent("config.json"))
        try model.save(to: out.appendingPathComponent("model.safetensors"))
        try writeAtomically(try Data(contentsOf: base.vocabURL), to: out.appendingPathComponent("vocab.txt"))
        let metrics: [String: Any] = ["task": task.name, "base": base.dir.path, "options": try JSONSerialization.jsonObject(with: JSONEncoder().encode(options)),
                                      "epochs": epochMetrics, "loss_curve": lossCurve.map { Double($0) }, "steps": step,
                                      "train_tokens": trainedTokens, "train_seconds": trainSeconds,
                                      "tokens_per_s": Double(trainedTokens) / max(trainSeconds, 1e-9), "threads": Runtime.threads]
        try writeAtomically(try JSONSerialization.data(withJSONObject: metrics, options: [.prettyPrinted, .sortedKeys]), to: out.appendingPathComponent("metrics.json"))
    }
}
