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
    func raw(_ n: String) throws -> [Int32] {
        let e = try ref.entry("\(kind).\(n)")
        let p = try ref.rawPointer("\(kind).\(n)").assumingMemoryBound(to: Int32.self)
        return Array(UnsafeBufferPointer(start: p, count: e.count))
    }
    let ids = try raw("input_ids"), types = try raw("token_type_ids"), lengths = try raw("lengths")
    let B = lengths.count, S = ids.count / B
    let encodings = (0..<B).map { b in
        WordPieceTokenizer.Encoding(inputIds: Array(ids[b * S..<b * S + Int(lengths[b])]), tokenTypeIds: Array(types[b * S..<b * S + Int(lengths[b])]))
    }
    let batch = Batch(encodings)
    XCTAssertEqual(batch.seqLen, S)
    let labels = try ref.tensor("\(kind).labels").array
    return (model, batch, numLabels == 1 ? .scores(labels) : .classes(labels.map { Int32($0) }))
}
