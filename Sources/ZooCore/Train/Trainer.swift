import CKernels
import Foundation

/// A training recipe (HF Trainer's meanings).
public struct TrainOptions: Codable, Equatable {
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

/// What a `Trainer` steps: fine-tuning, distillation, pruning recovery. It owns its data (GLUE
/// examples, sentences, …) and its models; the trainer owns order, schedule, optimizer and checkpoints.
public protocol TrainingStep: AnyObject {
    /// The parameters the optimizer updates (a student and, say, distillation projections).
    var stores: [ParameterStore] { get }
    var exampleCount: Int { get }
    /// Forward and backward on these examples, gradients added into the stores. Returns the loss
    /// and its named terms (logged per step), and the number of real tokens.
    func step(_ examples: [Int], dropoutSeed: UInt64) throws -> (loss: Float, terms: [String: Float], tokens: Int)
    /// At each epoch's end (dev metrics, or nil).
    func evaluate() throws -> TaskResult?
}

/// The training loop: seeded shuffling, AdamW with linear warm-up and decay, global gradient
/// clipping, evaluation each epoch, progress, and atomic resumable checkpoints
/// (`<out>/checkpoint.safetensors`: weights, optimizer moments, step, data position, loss curves).
/// Killed at any moment and resumed, a run ends with byte-identical weights.
public final class Trainer {
    public let options: TrainOptions
    public let out: URL
    let work: TrainingStep
    let optimizers: [AdamW]
    public private(set) var step = 0, epoch = 0, position = 0   // position: batches done in the current epoch
    public private(set) var lossCurve: [Float] = []
    public private(set) var termCurves: [String: [Float]] = [:]
    public private(set) var epochMetrics: [[String: Any]] = []
    public private(set) var trainedTokens = 0, trainSeconds = 0.0

    /// The resumable checkpoint's file name in a run's output folder.
    public static let checkpointFile = "checkpoint.safetensors"
    public var checkpointURL: URL { out.appendingPathComponent(Self.checkpointFile) }
    public var batchesPerEpoch: Int { (work.exampleCount + options.batch - 1) / options.batch }
    public var totalSteps: Int { batchesPerEpoch * options.epochs }

    public init(_ work: TrainingStep, options: TrainOptions, out: URL) throws {
        guard work.exampleCount > 0 else { throw ZooError.failed("nothing to train on (no examples)") }
        (self.work, self.options, self.out) = (work, options, out)
        optimizers = work.stores.map { AdamW(parameterCount: $0.count, lr: options.lr, weightDecay: options.weightDecay) }
    }

    /// Warm-up steps as HF's TrainingArguments.get_warmup_steps: ceil(total × ratio), the ratio
    /// taken as the decimal the user wrote (0.1, not the float nearest it).
    public var warmupSteps: Int {
        Int((Double(totalSteps) * (Double(options.warmup) * 1e6).rounded() / 1e6).rounded(.up))
    }

    /// HF's get_linear_schedule_with_warmup, evaluated at the optimizer step about to be taken.
    public func learningRate(at step: Int) -> Float {
        let warm = warmupSteps
        if step < warm { return options.lr * Float(step) / Float(max(1, warm)) }
        return options.lr * max(0, Float(totalSteps - step) / Float(max(1, totalSteps - warm)))
    }

    /// The order of examples in `epoch`: a seeded shuffle, the same on every run.
    public func order(epoch: Int) -> [Int] {
        var rng = SplitMix64(seed: options.seed &+ 0x5EED &* UInt64(epoch + 1))
        var idx = Array(0..<work.exampleCount)
        for i in stride(from: idx.count - 1, to: 0, by: -1) { idx.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return idx
    }

    /// ZOO_PAUSE_AT_STEP=N, for fault tests: before the step after N the run says "paused at step N"
    /// and waits up to a minute for a signal, so a test stops it at a known step on any machine.
    static let pauseAtStep = ProcessInfo.processInfo.environment["ZOO_PAUSE_AT_STEP"].flatMap { Int($0) }

    /// Runs (or, after `resume()`, continues) training to the end. `log` receives the epoch lines,
    /// `progress` (batches done, batches per epoch) every step.
    /// SIGINT/SIGTERM stop it before the next step with a checkpoint (ZooError.interrupted).
    public func run(log: (String) -> Void, progress: ((Int, Int) -> Void)? = nil) throws {
        try Interrupt.graceful { try train(log: log, progress: progress) }
    }

    private func train(log: (String) -> Void, progress: ((Int, Int) -> Void)?) throws {
        while epoch < options.epochs {
            let idx = order(epoch: epoch)
            while position < batchesPerEpoch {
                if step == Self.pauseAtStep { Interrupt.pause("paused at step \(step) (ZOO_PAUSE_AT_STEP)", seconds: 60) }
                if Interrupt.requested {
                    try saveCheckpoint()
                    throw ZooError.interrupted("interrupted at step \(step): checkpoint saved in \(checkpointURL.path); continue with --resume")
                }
                let slice = Array(idx[(position * options.batch)..<min((position + 1) * options.batch, idx.count)])
                let t0 = Date()
                for s in work.stores { s.zeroGrad() }
                var dropoutRNG = SplitMix64(seed: options.seed ^ (0xD50 &* UInt64(step + 1)))
                let r = try work.step(slice, dropoutSeed: dropoutRNG.next())
                clipGradients()
                for (s, opt) in zip(work.stores, optimizers) {
                    opt.lr = learningRate(at: step)
                    opt.update(s)
                }
                trainSeconds += Date().timeIntervalSince(t0)
                trainedTokens += r.tokens
                lossCurve.append(r.loss)
                for (k, v) in r.terms { termCurves[k, default: []].append(v) }
                step += 1
                position += 1
                progress?(position, batchesPerEpoch)
                if options.saveEvery > 0 && step % options.saveEvery == 0 && position < batchesPerEpoch { try saveCheckpoint() }
            }
            var entry: [String: Any] = ["epoch": epoch + 1, "step": step,
                                        "mean_loss": lossCurve.suffix(batchesPerEpoch).reduce(0, +) / Float(min(batchesPerEpoch, lossCurve.count))]
            var line = String(format: "epoch %d/%d: mean loss %.4f", epoch + 1, options.epochs, entry["mean_loss"] as! Float)
            if let result = try work.evaluate() {
                entry["dev"] = result.metrics
                entry["score"] = result.score
                line = String(format: "epoch %d/%d: dev %@ = %.2f", epoch + 1, options.epochs,
                              result.metrics.sorted { $0.key < $1.key }.map { String(format: "%@ %.2f", $0.key, $0.value) }.joined(separator: ", "), result.score)
            }
            epochMetrics.append(entry)
            log(line)
            epoch += 1
            position = 0
            try saveCheckpoint()
        }
    }

    /// Global-norm clipping at `maxGradNorm` over every store (torch.nn.utils.clip_grad_norm_).
    func clipGradients() {
        let grads = work.stores.map { $0.grads! }
        if grads.count == 1 { _ = zk_clip_grad_norm(grads[0].data, grads[0].count, options.maxGradNorm); return }
        let norms = grads.map { Double(zk_clip_grad_norm($0.data, $0.count, .infinity)) }
        let total = norms.map { $0 * $0 }.reduce(0, +).squareRoot()
        let coef = Float(Double(options.maxGradNorm) / (total + 1e-6))
        guard coef < 1 else { return }
        for g in grads { for i in 0..<g.count { g[i] *= coef } }
    }

    /// The run's record for metrics.json.
    public var record: [String: Any] {
        ["epochs": epochMetrics, "loss_curve": lossCurve.map { Double($0) }, "loss_terms": termCurves.mapValues { $0.map { Double($0) } },
         "steps": step, "train_tokens": trainedTokens, "train_seconds": trainSeconds,
         "tokens_per_s": Double(trainedTokens) / max(trainSeconds, 1e-9), "threads": Runtime.threads]
    }

    // MARK: checkpoints

    static func tensorName(_ what: String, store i: Int) -> String { i == 0 ? what : "\(what).\(i)" }

    /// Weights, optimizer moments and the run's position in one file, written atomically.
    public func saveCheckpoint() throws {
        let meta: [String: Any] = ["step": step, "epoch": epoch, "position": position, "adam_step": optimizers[0].step,
                                   "trained_tokens": trainedTokens, "train_seconds": trainSeconds,
                                   "options": String(decoding: try JSONEncoder().encode(options), as: UTF8.self),
                                   "loss_curve": lossCurve.map { Double($0) }, "loss_terms": termCurves.mapValues { $0.map { Double($0) } },
                                   "epochs": epochMetrics]
        let metaJSON = String(decoding: try JSONSerialization.data(withJSONObject: meta, options: [.sortedKeys]), as: UTF8.self)
        var tensors: [(String, Tensor)] = []
        for (i, (s, opt)) in zip(work.stores, optimizers).enumerated() {
            tensors += [(Self.tensorName("params", store: i), s.values), (Self.tensorName("adam_m", store: i), opt.m), (Self.tensorName("adam_v", store: i), opt.v)]
        }
        try SafeTensors.write(tensors, metadata: ["zoo_state": metaJSON], to: checkpointURL)
    }

    /// Continues from `checkpoint.safetensors`; the recipe must be the one the run started with.
    public func resume() throws {
        let st = try SafeTensors(url: checkpointURL)
        guard let json = st.metadata["zoo_state"], let meta = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let saved = (meta["options"] as? String).flatMap({ try? JSONDecoder().decode(TrainOptions.self, from: Data($0.utf8)) }) else {
            throw ZooError.badFile(path: checkpointURL.path, problem: "not a zoo training checkpoint (no zoo_state metadata)")
        }
        guard saved == options else { throw ZooError.usage("--resume needs the same recipe as the interrupted run (\(checkpointURL.path) has \(saved))") }
        for (i, (s, opt)) in zip(work.stores, optimizers).enumerated() {
            for (name, t) in [("params", s.values), ("adam_m", opt.m), ("adam_v", opt.v)] {
                let src = try st.tensor(Self.tensorName(name, store: i), shape: [t.count])
                t.data.update(from: src.data, count: t.count)
            }
            opt.restore(step: meta["adam_step"] as? Int ?? 0)
        }
        step = meta["step"] as? Int ?? 0
        epoch = meta["epoch"] as? Int ?? 0
        position = meta["position"] as? Int ?? 0
        trainedTokens = meta["trained_tokens"] as? Int ?? 0
        trainSeconds = meta["train_seconds"] as? Double ?? 0
        lossCurve = (meta["loss_curve"] as? [Double] ?? []).map(Float.init)
        termCurves = (meta["loss_terms"] as? [String: [Double]] ?? [:]).mapValues { $0.map(Float.init) }
        epochMetrics = meta["epochs"] as? [[String: Any]] ?? []
    }
}
