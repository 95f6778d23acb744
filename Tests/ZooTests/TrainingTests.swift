import CKernels
import Foundation
import XCTest
@testable import ZooCore

/// A whole BertForSequenceClassification step against PyTorch autograd (tools/hf_reference.py
/// train-step): same weights, same batch, no dropout. Loss and logits within 1e-5; every
/// parameter's gradient within 1e-4 relative to the largest gradient of its tensor (plus 1e-7);
/// parameters after one AdamW step within 1e-6, except where a gradient is so close to zero that the
/// two frameworks' rounding decides the sign of Adam's first step (|update| = lr there): those may
/// differ by up to 2·lr.
final class TrainingTests: XCTestCase {
    func testStepMatchesPyTorch() throws {
        try require(Paths.weights.appendingPathComponent("model.safetensors"), "run `zoo weights fetch minilm-l6`")
        let refURL = Paths.reference.appendingPathComponent("train_step.safetensors")
        try require(refURL, "run `python tools/hf_reference.py train-step`")
        let ref = try SafeTensors(url: refURL)
        let ckpt = try Checkpoint(dir: Paths.weights)
        zk_set_threads(2)
        for (kind, numLabels) in [("cls", 2), ("reg", 1)] {
            let (model, batch, targets) = try referenceStep(ref, ckpt, kind: kind, numLabels: numLabels)

            let store = model.store!
            let logits = try model.logits(batch)
            XCTAssertLessThan(maxAbsDiff(logits, try ref.tensor("\(kind).logits")), 1e-5, "\(kind) logits")
            store.zeroGrad()
            let loss = try model.step(batch, targets: targets, dropoutSeed: nil)
            XCTAssertEqual(loss, try ref.tensor("\(kind).loss")[0], accuracy: 1e-5, "\(kind) loss")

            var worstRel: (Double, String) = (0, "")
            for s in store.slots {
                let want = try ref.tensor("\(kind).grad.\(s.name)")
                var scale: Float = 0, err: Float = 0
                for i in 0..<s.count {
                    scale = max(scale, abs(want[i]))
                    err = max(err, abs(store.grads![s.offset + i] - want[i]))
                }
                let rel = Double(err) / Double(max(scale, 1e-12))
                if scale > 1e-6 && rel > worstRel.0 { worstRel = (rel, s.name) }   // (key biases have zero gradient in exact arithmetic)
                XCTAssertLessThanOrEqual(err, 1e-4 * scale + 1e-7, "\(kind) grad \(s.name): max err \(err), max |g| \(scale)")
            }
            print("\(kind): worst gradient error \(worstRel.0) of its tensor's max, in \(worstRel.1)")

            let opt = AdamW(parameterCount: store.count, lr: 5e-5, weightDecay: 0.01)
            opt.update(store)
            var signFlips = 0
            for s in store.slots {
                let want = try ref.tensor("\(kind).after.\(s.name)")
                let g = try ref.tensor("\(kind).grad.\(s.name)")
                for i in 0..<s.count {
                    let d = abs(store.values[s.offset + i] - want[i])
                    if d > 1e-6 {
                        signFlips += 1
                        XCTAssertLessThanOrEqual(d, 2 * 5e-5 + 1e-6, "\(kind) \(s.name)[\(i)] after AdamW")
                        XCTAssertLessThan(abs(g[i]), 1e-6, "\(kind) \(s.name)[\(i)]: only near-zero gradients may differ")
                    }
                }
            }
            XCTAssertLessThan(signFlips, store.count / 1000, "\(kind): \(signFlips) updated weights differ")
        }
    }
}

/// The zoo's Trainer against HF Trainer's own optimizer and scheduler (tools/hf_reference.py
/// trainer): 6 steps on the train-step batch with weight decay 0.1, warm-up ratio 0.1 then linear
/// decay, clipping at 0.5. The lr of every step equal, the losses within 1e-4, and the final
/// weights closer to HF's than a tenth of what weight decay, clipping or the schedule each move
/// them — so a trainer without any one of them (or with its no-decay groups wrong) fails.
final class TrainerReferenceTests: XCTestCase {
    final class WholeBatch: TrainingStep {
        let model: Network<ParamLinear>, batch: Batch, targets: Targets
        var stores: [ParameterStore] { [model.store!] }
        var exampleCount: Int { batch.size }
        init(_ m: Network<ParamLinear>, _ b: Batch, _ t: Targets) { (model, batch, targets) = (m, b, t) }
        func step(_ examples: [Int], dropoutSeed: UInt64) throws -> (loss: Float, terms: [String: Float], tokens: Int) {
            (try model.step(batch, targets: targets, dropoutSeed: nil), [:], 0)
        }
        func evaluate() throws -> TaskResult? { nil }
    }

    func testSixStepsMatchHFTrainer() throws {
        try require(Paths.weights.appendingPathComponent("model.safetensors"), "run `zoo weights fetch minilm-l6`")
        let refURL = Paths.reference.appendingPathComponent("trainer.safetensors")
        try require(refURL, "run `python tools/hf_reference.py trainer`")
        let ref = try SafeTensors(url: refURL)
        let (model, batch, targets) = try referenceStep(try SafeTensors(url: Paths.reference.appendingPathComponent("train_step.safetensors")),
                                                        try Checkpoint(dir: Paths.weights), kind: "cls", numLabels: 2)
        zk_set_threads(2)
        var o = TrainOptions()
        (o.lr, o.weightDecay, o.warmup, o.maxGradNorm, o.batch, o.epochs, o.saveEvery) = (1e-3, 0.1, 0.1, 0.5, batch.size, 6, 0)
        let trainer = try Trainer(WholeBatch(model, batch, targets), options: o, out: try tempDir())
        XCTAssertEqual(trainer.warmupSteps, 1, "HF: ceil(6 × 0.1)")
        let store = model.store!
        let decayed = Set(try JSONSerialization.jsonObject(with: Data(ref.metadata["decay"]!.utf8)) as! [String])
        XCTAssertEqual(Set(store.slots.filter(\.decay).map(\.name)), decayed, "weight-decay groups differ from HF Trainer's")

        let lr = try ref.raw("lr", dtype: .F64, shape: [6]).bytes.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
        for step in 0..<6 { XCTAssertEqual(Double(trainer.learningRate(at: step)), lr[step], accuracy: 1e-9 + 1e-6 * lr[step], "lr at step \(step)") }
        try trainer.run(log: { _ in })
        let loss = try ref.raw("loss", dtype: .F64, shape: [6]).bytes.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
        let norms = try ref.raw("grad_norm", dtype: .F64, shape: [6]).bytes.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
        XCTAssertGreaterThanOrEqual(norms.filter { $0 > 0.5 }.count, 3, "the reference must clip most steps: \(norms)")
        for (z, h) in zip(trainer.record["loss_curve"] as! [Double], loss) { XCTAssertEqual(z, h, accuracy: 1e-4) }

        var err = 0.0
        for s in store.slots {
            let want = try ref.tensor("after.\(s.name)")
            for i in 0..<s.count { let d = Double(store.values[s.offset + i] - want[i]); err += d * d }
        }
        err = err.squareRoot()
        for effect in ["weight_decay", "clipping", "schedule"] {
            let moved = try ref.raw("effect.\(effect)", dtype: .F64, shape: [1]).bytes.withUnsafeBytes { $0.load(as: Double.self) }
            print("final weights: zoo − HF = \(err) (L2); without \(effect) HF moves \(moved)")
            XCTAssertLessThan(err, 0.1 * moved, "the zoo's error is not small against the effect of \(effect)")
        }
    }
}

/// The model (MiniLM-L6 with the reference's freshly initialised head), batch and targets of one
/// `tools/hf_reference.py train-step` case ("cls" or "reg").
func referenceStep(_ ref: SafeTensors, _ ckpt: Checkpoint, kind: String, numLabels: Int) throws -> (Network<ParamLinear>, Batch, Targets) {
    let store = ParameterStore(spec: ckpt.spec.withHead(numLabels: numLabels))
    try store.load(ckpt, seed: 1)
    for s in store.slots where s.name.hasPrefix("classifier") || s.name.hasPrefix("bert.pooler") {
        let t = try ref.tensor("\(kind).init.\(s.name)")
        (store.values.data + s.offset).update(from: t.data, count: s.count)
    }
    let model = try Network(spec: store.spec, reader: store)
    let ids = try ref.int32s("\(kind).input_ids"), types = try ref.int32s("\(kind).token_type_ids"), lengths = try ref.int32s("\(kind).lengths")
    let B = lengths.count, S = ids.count / B
    let encodings = (0..<B).map { b in
        WordPieceTokenizer.Encoding(inputIds: Array(ids[b * S..<b * S + Int(lengths[b])]), tokenTypeIds: Array(types[b * S..<b * S + Int(lengths[b])]))
    }
    let batch = Batch(encodings)
    XCTAssertEqual(batch.seqLen, S)
    let labels = try ref.tensor("\(kind).labels").array
    return (model, batch, numLabels == 1 ? .scores(labels) : .classes(labels.map { Int32($0) }))
}
