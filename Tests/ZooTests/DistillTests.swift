import Foundation
import XCTest
@testable import ZooCore

/// The prediction-layer losses: hard labels, soft cross-entropy at a temperature, logits MSE.
final class DistillTests: XCTestCase {
    /// Their weighted sum's gradient equals central finite differences (ε = 1e-2, within 2e-3); the
    /// soft terms are 0 when the student copies the teacher.
    func testPredictionLossesMatchFiniteDifferences() {
        var rng = SplitMix64(seed: 4)
        for (C, targets) in [(3, Targets.classes([2, 0, 1, 1])), (1, Targets.scores([0.5, -1, 2, 0.1]))] {
            let B = 4
            var s = (0..<B * C).map { _ in 2 * rng.normal() }
            let t = (0..<B * C).map { _ in 2 * rng.normal() }
            func loss(_ x: [Float], _ g: inout [Float]) -> Float {
                0.3 * DistillLoss.hard(student: x, targets: targets, B: B, C: C, weight: 0.3, ds: &g)
                    + 0.7 * DistillLoss.softCrossEntropy(student: x, teacher: t, B: B, C: C, temperature: 2, weight: 0.7, ds: &g)
                    + 0.5 * DistillLoss.mse(student: x, teacher: t, count: B * C, weight: 0.5, ds: &g)
            }
            var grad = [Float](repeating: 0, count: B * C), scratch = grad
            _ = loss(s, &grad)
            for i in 0..<B * C {
                let x = s[i]
                s[i] = x + 1e-2; let up = loss(s, &scratch)
                s[i] = x - 1e-2; let down = loss(s, &scratch)
                s[i] = x
                XCTAssertEqual(grad[i], (up - down) / 2e-2, accuracy: 2e-3, "C=\(C) logit \(i)")
            }
            XCTAssertEqual(DistillLoss.softCrossEntropy(student: t, teacher: t, B: B, C: C, temperature: 2, weight: 1, ds: &scratch), 0, accuracy: 1e-6)
            XCTAssertEqual(DistillLoss.mse(student: t, teacher: t, count: B * C, ds: &scratch), 0)
        }
    }
}

/// The intermediate losses: gradients by central finite differences, and the layer maps.
final class DistillLossTests: XCTestCase {
    /// Checks `grads` (the analytic gradient of `loss` at x) against central differences, ε = 1e-2,
    /// within 2e-3 absolute + 1e-2 relative (float losses of order 1).
    func check(_ name: String, _ x: inout [Float], _ grads: [Float], _ loss: ([Float]) -> Float) {
        for i in x.indices {
            let v = x[i]
            x[i] = v + 1e-2; let up = loss(x)
            x[i] = v - 1e-2; let down = loss(x)
            x[i] = v
            let fd = (up - down) / 2e-2
            XCTAssertEqual(grads[i], fd, accuracy: 2e-3 + 1e-2 * abs(fd), "\(name)[\(i)]")
        }
    }

    func testGradientsMatchFiniteDifferences() {
        var rng = SplitMix64(seed: 8)
        func r(_ n: Int) -> [Float] { (0..<n).map { _ in rng.normal() } }
        let (T, Hs, Ht) = (5, 4, 6)
        var s = r(T * Hs), W = r(Ht * Hs), b = r(Ht)
        let t = r(T * Ht)
        // hidden MSE through a projection: student states, weight and bias
        func proj(_ s: [Float], _ W: [Float], _ b: [Float]) -> (Float, [Float], [Float], [Float]) {
            var ds = [Float](repeating: 0, count: T * Hs), dW = [Float](repeating: 0, count: Ht * Hs), db = [Float](repeating: 0, count: Ht)
            let l = DistillLoss.hiddenMSE(student: s, teacher: t, T: T, Hs: Hs, Ht: Ht, projection: W, bias: b, ds: &ds, dW: &dW, db: &db)
            return (l, ds, dW, db)
        }
        let (_, ds, dW, db) = proj(s, W, b)
        check("hidden ds", &s, ds) { proj($0, W, b).0 }
        check("hidden dW", &W, dW) { proj(s, $0, b).0 }
        check("hidden db", &b, db) { proj(s, W, $0).0 }
        // same width, no projection
        var s2 = r(T * Ht)
        func plain(_ x: [Float]) -> (Float, [Float]) {
            var d = [Float](repeating: 0, count: T * Ht)
            return (DistillLoss.hiddenMSE(student: x, teacher: t, T: T, Hs: Ht, Ht: Ht, projection: nil, bias: nil, ds: &d, dW: nil, db: nil), d)
        }
        check("hidden (no projection)", &s2, plain(s2).1) { plain($0).0 }
        func scores(_ x: [Float]) -> (Float, [Float]) {
            var d = [Float](repeating: 0, count: x.count)
            return (DistillLoss.mse(student: x, teacher: t, count: x.count, ds: &d), d)
        }
        check("scores", &s2, scores(s2).1) { scores($0).0 }
        func cosine(_ x: [Float]) -> (Float, [Float]) {
            var d = [Float](repeating: 0, count: x.count)
            return (DistillLoss.cosine(student: x, teacher: t, T: T, H: Ht, ds: &d), d)
        }
        check("cosine", &s2, cosine(s2).1) { cosine($0).0 }
        func pkd(_ x: [Float]) -> (Float, [Float]) {
            var d = [Float](repeating: 0, count: x.count)
            return (DistillLoss.normalisedMSE(student: x, teacher: t, B: T, H: Ht, ds: &d), d)
        }
        check("pkd", &s2, pkd(s2).1) { pkd($0).0 }
        // values: a student equal to the teacher (up to scale for the normalised ones) costs nothing
        var d = [Float](repeating: 0, count: T * Ht)
        XCTAssertEqual(DistillLoss.cosine(student: t.map { 3 * $0 }, teacher: t, T: T, H: Ht, ds: &d), 0, accuracy: 1e-6)
        XCTAssertEqual(DistillLoss.normalisedMSE(student: t.map { 2 * $0 }, teacher: t, B: T, H: Ht, ds: &d), 0, accuracy: 1e-6)
        XCTAssertEqual(DistillLoss.mse(student: t.map { $0 + 1 }, teacher: t, count: t.count, ds: &d), 1, accuracy: 1e-5)
    }

    func testLayerMaps() throws {
        func pairs(_ m: LayerMap, _ M: Int, _ N: Int) throws -> [[Int]] { try m.pairs(student: M, teacher: N).map { [$0.0, $0.1] } }
        XCTAssertEqual(try pairs(.uniform, 4, 12), [[1, 3], [2, 6], [3, 9], [4, 12]])
        XCTAssertEqual(try pairs(.skip, 6, 12), [[1, 2], [2, 4], [3, 6], [4, 8], [5, 10]])      // PKD-skip, BERT-base → 6 layers
        XCTAssertEqual(try pairs(.last, 6, 12), [[1, 7], [2, 8], [3, 9], [4, 10], [5, 11]])     // PKD-last
        XCTAssertEqual(try pairs(.explicit([2, 5, 6]), 3, 6), [[1, 2], [2, 5], [3, 6]])
        XCTAssertEqual(try pairs(.uniform, 4, 6), [[1, 2], [2, 3], [3, 5], [4, 6]])              // TinyBERT-4L from MiniLM-L6
        XCTAssertThrowsError(try pairs(.explicit([1, 7]), 2, 6))
        XCTAssertThrowsError(try pairs(.last, 7, 6))
        XCTAssertEqual(try pairs(.uniform, 4, 2), [[1, 1], [2, 1], [3, 2], [4, 2]])              // a deeper student (teacher-size study)
        XCTAssertEqual(try pairs(.uniform, 4, 1), [[1, 1], [2, 1], [3, 1], [4, 1]])
        XCTAssertThrowsError(try pairs(.skip, 4, 2))
    }
}

/// A whole distillation step: teacher and student recorded on one batch, every term at its tap.
final class DistillStepTests: XCTestCase {
    static let vocab = Tiny.vocab

    /// A trainable store of `spec` with seeded random values, no dropout.
    func store(_ spec: ModelSpec, seed: UInt64, trainable: Bool) -> ParameterStore {
        var spec = spec
        (spec.hiddenDropout, spec.attentionDropout, spec.classifierDropout) = (0, 0, 0)
        let r = randomStore(spec, seed: seed), s = ParameterStore(spec: spec, trainable: trainable)
        s.values.data.update(from: r.values.data, count: r.count)
        return s
    }

    func examples() throws -> [WordPieceTokenizer.Encoding] {
        let tok = try Checkpoint(dir: try Tiny.checkpoint()).tokenizer()
        return [("hello world", "a b"), ("b a . hello world as", "hello"), ("world", "as bs . a"), ("a a b", "b")].map { tok.encode($0.0, $0.1, maxLength: 16) }
    }

    /// Every parameter gradient of the step's loss (student and projections) against central finite
    /// differences of the loss, at 40 probes across the stores; ε = 3e-3 on values of order 0.1–1,
    /// tolerance 2e-3 + 3 % (float32 through a whole network).
    func checkStep(teacher: ModelSpec, student: ModelSpec, objective: DistillObjective, file: StaticString = #filePath, line: UInt = #line) throws {
        let step = try DistillStep(teacher: store(teacher, seed: 1, trainable: false), student: store(student, seed: 2, trainable: true),
                                   objective: objective, examples: try examples(), targets: [0, 2, 1, 1])
        func loss() throws -> Float {
            for s in step.stores { s.zeroGrad() }
            return try step.step([0, 1, 2, 3], dropoutSeed: 5).loss
        }
        _ = try loss()
        let analytic = step.stores.map { Array(UnsafeBufferPointer(start: $0.grads!.data, count: $0.count)) }
        var rng = SplitMix64(seed: 3)
        for (k, s) in step.stores.enumerated() {
            for _ in 0..<(k == 0 ? 30 : 10) {
                let i = Int(rng.next() % UInt64(s.count)), v = s.values[i]
                s.values[i] = v + 3e-3; let up = try loss()
                s.values[i] = v - 3e-3; let down = try loss()
                s.values[i] = v
                let fd = (up - down) / 6e-3
                XCTAssertEqual(analytic[k][i], fd, accuracy: 2e-3 + 0.03 * abs(fd), "store \(k) \(s.slots.first { $0.offset <= i && i < $0.offset + $0.count }!.name)", file: file, line: line)
            }
        }
    }

    /// TinyBERT's terms (embedding, hidden states through projections, attention scores, soft
    /// cross-entropy at T = 2) plus the labels, a narrower and shallower student.
    func testTinyBERTTermsGradient() throws {
        var o = DistillObjective()
        (o.embedding, o.hidden, o.attention, o.softCE, o.hard, o.temperature) = (1, 1, 1, 1, 0.5, 2)
        try checkStep(teacher: .bert(vocab: 12, hidden: 16, layers: 4, heads: 2, ffn: 32, positions: 16).withHead(numLabels: 3),
                      student: .bert(vocab: 12, hidden: 8, layers: 2, heads: 2, ffn: 16, positions: 16).withHead(numLabels: 3), objective: o)
    }

    /// DistilBERT's and BERT-PKD's terms (cosine on the last states, normalised [CLS] MSE on skipped
    /// layers, logits MSE) on a student of the teacher's width.
    func testCosinePKDTermsGradient() throws {
        var o = DistillObjective()
        (o.cosine, o.pkd, o.logitsMSE, o.layerMap) = (1, 1, 1, .skip)
        try checkStep(teacher: .bert(vocab: 12, hidden: 16, layers: 4, heads: 2, ffn: 32, positions: 16).withHead(numLabels: 3),
                      student: .bert(vocab: 12, hidden: 16, layers: 2, heads: 2, ffn: 16, positions: 16).withHead(numLabels: 3), objective: o)
    }

    /// A student with the teacher's weights learns nothing: every term is zero.
    func testStudentEqualToTeacherHasNoLoss() throws {
        let spec = ModelSpec.bert(vocab: 12, hidden: 16, layers: 2, heads: 2, ffn: 32, positions: 16).withHead(numLabels: 3)
        var o = DistillObjective()
        (o.embedding, o.hidden, o.attention, o.softCE, o.cosine, o.pkd, o.logitsMSE) = (1, 1, 1, 1, 1, 1, 1)
        let step = try DistillStep(teacher: store(spec, seed: 1, trainable: false), student: store(spec, seed: 1, trainable: true),
                                   objective: o, examples: try examples(), targets: nil)
        let r = try step.step([0, 1, 2, 3], dropoutSeed: 5)
        XCTAssertEqual(Set(r.terms.keys), ["embedding", "hidden", "attention", "soft_ce", "cosine", "pkd", "logits_mse"])
        for (name, v) in r.terms { XCTAssertEqual(v, 0, accuracy: 1e-5, name) }
        XCTAssertNil(step.projections)
        XCTAssertThrowsError(try DistillStep(teacher: store(spec, seed: 1, trainable: false), student: store(spec, seed: 1, trainable: true),
                                             objective: { var h = o; h.hard = 1; return h }(), examples: try examples(), targets: nil))
    }
}

/// One distillation step with all TinyBERT losses against PyTorch autograd (`tools/hf_distill.py`):
/// the same teacher, student, projections and batch give every loss term within 1e-5 (relative) and
/// every gradient — student parameters and projections — within 1e-4 of its tensor's largest, with
/// each SIMD copy of the kernels.
final class DistillPyTorchTests: XCTestCase {
    func testTinyBERTStepMatchesPyTorch() throws {
        let dir = Paths.reference.appendingPathComponent("distill")
        try require(dir.appendingPathComponent("reference.safetensors"), "make reference")
        try forEachSIMD { simd in try checkTinyBERTStep(dir, simd) }
    }

    func checkTinyBERTStep(_ dir: URL, _ simd: String) throws {
        let ref = try SafeTensors(url: dir.appendingPathComponent("reference.safetensors"))
        let tc = try Checkpoint(dir: dir.appendingPathComponent("teacher")), sc = try Checkpoint(dir: dir.appendingPathComponent("student"))
        let teacher = ParameterStore(spec: tc.spec, trainable: false)
        try teacher.load(tc, seed: 0)
        var spec = sc.spec
        (spec.hiddenDropout, spec.attentionDropout, spec.classifierDropout) = (0, 0, 0)   // HF ran in eval mode
        let student = ParameterStore(spec: spec)
        try student.load(sc, seed: 0)
        let ids = try ref.int32s("input_ids"), types = try ref.int32s("token_type_ids"), lengths = try ref.int32s("lengths"), labels = try ref.tensor("labels")
        let (B, S) = (lengths.count, ids.count / lengths.count)
        let examples = (0..<B).map { b in
            WordPieceTokenizer.Encoding(inputIds: Array(ids[b * S..<b * S + Int(lengths[b])]), tokenTypeIds: Array(types[b * S..<b * S + Int(lengths[b])]))
        }
        var o = DistillObjective()
        (o.embedding, o.hidden, o.attention, o.softCE, o.hard, o.temperature) = (1, 1, 1, 1, 0.5, 2)
        let step = try DistillStep(teacher: teacher, student: student, objective: o, examples: examples, targets: (0..<B).map { Double(labels[$0]) })
        let proj = try XCTUnwrap(step.projections)
        for name in ["hidden.weight", "hidden.bias", "embedding.weight", "embedding.bias"] {
            let t = try ref.tensor(name), v = proj.view(name)
            v.value.update(from: t.data, count: v.count)
        }
        let r = try step.step(Array(0..<B), dropoutSeed: 1)
        for name in ["embedding", "hidden", "attention", "soft_ce", "hard"] {
            let want = try ref.tensor("term.\(name)")[0]
            XCTAssertEqual(r.terms[name]!, want, accuracy: 1e-5 * max(1, abs(want)), "\(simd) \(name)")
        }
        XCTAssertEqual(r.loss, try ref.tensor("loss")[0], accuracy: 1e-4)
        for store in [student, proj] {
            for s in store.slots {
                let want = try ref.tensor("grad.\(s.name)")
                let got = Tensor(shape: [s.count])
                got.data.update(from: store.view(s.name).grad!, count: s.count)
                let scale = max((0..<want.count).map { abs(want[$0]) }.max()!, 1e-6)
                XCTAssertLessThan(maxAbsDiff(got, want), 1e-4 * scale, "\(simd) \(s.name)")
            }
        }
    }
}
