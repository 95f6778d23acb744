import CKernels
import Foundation
import XCTest
@testable import PRUNING
@testable import ZooCore

/// Head / neuron pruning: the mask-gradient importance, the surgery, and `zoo prune` end to end.
final class PruningTests: XCTestCase {
    func store(_ family: String) throws -> (ParameterStore, Checkpoint) {
        let dir = Paths.reference.appendingPathComponent("families/\(family)/model")
        try require(dir.appendingPathComponent("config.json"), "make reference")
        let ckpt = try Checkpoint(dir: dir)
        let s = ParameterStore(spec: ckpt.spec)
        try s.load(ckpt, seed: 0)
        return (s, ckpt)
    }

    func batch(_ ckpt: Checkpoint) throws -> (Batch, Targets) {
        let tok = try ckpt.tokenizer()
        let texts = [("hello world", "a b"), ("the cat sat on the mat", "a cat sat"), ("b a .", "hello"), ("world world", "as bs .")]
        return (Batch(texts.map { tok.encode($0.0, $0.1, maxLength: 32) }), .classes([0, 1, 2, 1]))
    }

    /// |∂L/∂ξ| of a head's mask equals finite differences of the loss with the head's value rows
    /// (weights and bias) scaled by 1 ± ε — which scales that head's output exactly; a neuron's, with
    /// its column of the FFN down-projection scaled.
    func testMaskGradientsMatchFiniteDifferences() throws {
        zk_set_threads(1)
        let (s, ckpt) = try store("bert-pruned")
        let (b, t) = try batch(ckpt)
        let net = try Network(spec: s.spec, reader: s)
        let masks = MaskGradients(s.spec)
        let act = try net.record(b, dropoutSeed: nil)
        _ = net.loss(act, targets: t)
        net.backward(act, batch: b, masks: masks)
        let names = s.spec.family.names
        func loss() throws -> Double { let a = try net.record(b, dropoutSeed: nil); return Double(net.loss(a, targets: t)) }
        func fd(_ scale: (Float) -> Void) throws -> Double {
            let eps: Float = 1e-2
            scale(1 + eps); let lp = try loss(); scale(1 / (1 + eps))
            scale(1 - eps); let lm = try loss(); scale(1 / (1 - eps))
            return abs(lp - lm) / Double(2 * eps)
        }
        for (l, layer) in s.spec.layers.enumerated() {
            let n = names.layer(l), d = layer.headDim, H = s.spec.hidden
            for h in 0..<layer.heads {
                let w = s.view(n.value + ".weight"), bias = s.view(n.value + ".bias")
                let want = try fd { f in
                    for i in (h * d * H)..<((h + 1) * d * H) { w.value[i] *= f }
                    for i in (h * d)..<((h + 1) * d) { bias.value[i] *= f }
                }
                XCTAssertEqual(masks.heads[l][h], want, accuracy: 2e-3 * max(want, 1e-2), "layer \(l) head \(h)")
            }
            let down = s.view(n.down + ".weight")
            for j in [0, layer.ffn / 2, layer.ffn - 1] {
                let want = try fd { f in for r in 0..<H { down.value[r * layer.ffn + j] *= f } }
                XCTAssertEqual(masks.neurons[l][j], want, accuracy: 2e-3 * max(want, 1e-2), "layer \(l) neuron \(j)")
            }
        }
    }

    /// Keeping everything changes nothing; removing heads and neurons gives the spec HF describes
    /// (original head indices in pruned_heads) and a checkpoint transformers loads with the same logits.
    func testSurgeryKeepsTheRestExactly() throws {
        let (s, ckpt) = try store("bert-pruned")
        let (b, _) = try batch(ckpt)
        let all = try Surgery.prune(s, keepHeads: s.spec.layers.map { Array(0..<$0.heads) }, keepNeurons: s.spec.layers.map { Array(0..<$0.ffn) })
        XCTAssertEqual(all.values.array, s.values.array)
        XCTAssertEqual(all.spec, s.spec)

        // Layer 0 has heads 0, 2, 3 left (1 was pruned): keep its current 0 and 2 (originals 0 and 3).
        let heads = [[0, 2], [1, 2, 3], [0]]
        let cut = try Surgery.prune(s, keepHeads: heads, keepNeurons: s.spec.layers.map { Array(0..<$0.ffn) })
        XCTAssertEqual(cut.spec.layers.map(\.heads), [2, 3, 1])
        XCTAssertEqual(cut.spec.layers.map(\.prunedHeads), [[1, 2], [0], [0, 2, 3]])
        XCTAssertLessThan(cut.spec.parameterCount, s.spec.parameterCount)
        let dir = try tempDir()
        try cut.writeCheckpoint(to: dir, base: ckpt)
        try assertSameLogitsAsHF(dir)
        _ = try Network<Linear>(checkpoint: try Checkpoint(dir: dir)).logits(b)

        // Neurons too: the zoo's own per-layer widths round-trip through config.json.
        let narrow = try Surgery.prune(s, keepHeads: heads, keepNeurons: zip(s.spec.layers, [2, 4, 1]).map { Array(stride(from: 0, to: $0.ffn, by: $1)) })
        let dir2 = try tempDir()
        try narrow.writeCheckpoint(to: dir2, base: ckpt)
        XCTAssertEqual(try Checkpoint(dir: dir2).spec, narrow.spec)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir2.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertEqual(config["zoo_intermediate_sizes"] as? [Int], [64, 32, 128])
        XCTAssertThrowsError(try Surgery.prune(try store("albert").0, keepHeads: [[0]], keepNeurons: [[0]]))
    }

    /// A tiny RTE and the reference's pruned BERT fine-tuned on it for an epoch.
    func tunedPrunedBERT() throws -> (glue: URL, tuned: URL) {
        let glue = try FinetuneTests.tinyGLUE(train: 48)
        let base = Paths.reference.appendingPathComponent("families/bert-pruned/model")
        try require(base.appendingPathComponent("config.json"), "make reference")
        let tuned = try tempDir().appendingPathComponent("tuned")
        let r = try zoo(["finetune", "--base", base.path, "--task", "rte", "--data", glue.path, "--out", tuned.path, "--epochs", "1", "--batch", "8", "--threads", "2"])
        XCTAssertEqual(r.code, 0, r.stderr)
        return (glue, tuned)
    }

    /// `zoo prune` as a user runs it: fine-tuned model in, fewer heads and neurons out, recovered,
    /// evaluated by the `pruned` variant; prune.json records the steps.
    func testPruneCommandEndToEnd() throws {
        let (glue, tuned) = try tunedPrunedBERT()
        let out = try tempDir().appendingPathComponent("pruned")
        var r = try zoo(["prune", "--weights", tuned.path, "--keep-heads", "0.5", "--keep-ffn", "0.75", "--data", glue.path, "--out", out.path,
                     "--recover-epochs", "1", "--threads", "2"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.out.contains("heads per layer"), r.out)
        let spec = try Checkpoint(dir: out).spec
        XCTAssertEqual(spec.layers.map(\.heads).reduce(0, +), 4)      // 8 heads in the checkpoint, half kept
        XCTAssertEqual(spec.layers.map(\.ffn).reduce(0, +), 288)      // 3 × 128 neurons, three quarters kept
        XCTAssert(spec.layers.allSatisfy { $0.heads >= 1 })
        XCTAssertTrue(spec.layers[2].prunedHeads.isSuperset(of: [0, 2, 3]), "earlier pruning is kept: \(spec.layers[2].prunedHeads)")
        let record = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("prune.json"))) as! [String: Any]
        XCTAssertEqual((record["steps"] as! [Any]).count, 5)         // half the heads, about 10 % of them per step
        XCTAssertEqual(try evalScore("pruned", out, glue), record["dev"] as! Double, "prune.json's dev score is zoo eval's")
        // FFN neurons removed: the widths in the zoo's field, intermediate_size still the width before.
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertEqual(config["intermediate_size"] as? Int, 128)
        XCTAssertEqual(config["zoo_intermediate_sizes"] as? [Int], spec.layers.map(\.ffn))

        // --distill: the same pruning, recovered against the unpruned model (a different result).
        let d = try tempDir().appendingPathComponent("distilled")
        r = try zoo(["prune", "--weights", tuned.path, "--keep-heads", "0.5", "--keep-ffn", "0.75", "--data", glue.path, "--out", d.path,
                     "--recover-epochs", "1", "--threads", "2", "--distill"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let drecord = try JSONSerialization.jsonObject(with: Data(contentsOf: d.appendingPathComponent("prune.json"))) as! [String: Any]
        XCTAssertEqual(drecord["recovery"] as? String, "distillation from the unpruned model: hidden states, soft predictions + labels")
        XCTAssertEqual(try Checkpoint(dir: d).spec.layers.map(\.heads), spec.layers.map(\.heads))
        XCTAssertNotEqual(try Data(contentsOf: d.appendingPathComponent("model.safetensors")), try Data(contentsOf: out.appendingPathComponent("model.safetensors")))
        XCTAssertEqual(try evalScore("pruned", d, glue), drecord["dev"] as! Double)
        XCTAssertFalse(FileManager.default.fileExists(atPath: d.appendingPathComponent(".steps").path))

        // --distill --augment 1: one augmented copy of each training example, the predictions only.
        let aug = try tempDir().appendingPathComponent("augmented")
        r = try zoo(["prune", "--weights", tuned.path, "--keep-heads", "0.5", "--keep-ffn", "0.75", "--data", glue.path, "--out", aug.path,
                     "--recover-epochs", "1", "--threads", "2", "--distill", "--augment", "1"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let n = try GLUETask.named("rte").load(.train, from: glue).count
        XCTAssertTrue(r.stderr.contains("recovery set: \(n) examples + \(n) augmented copies"), r.stderr)
        let arecord = try JSONSerialization.jsonObject(with: Data(contentsOf: aug.appendingPathComponent("prune.json"))) as! [String: Any]
        XCTAssertEqual(arecord["recovery"] as? String, "distillation from the unpruned model on the training set + 1 augmented copies: hidden states, soft predictions")
        XCTAssertEqual(try evalScore("pruned", aug, glue), arecord["dev"] as! Double)

        // --like: random weights of another geometry with the same per-layer fractions, for zoo bench.
        let like = try tempDir().appendingPathComponent("like")
        r = try zoo(["prune", "--like", out.path, "--geometry", "tinybert-4l", "--out", like.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        let g = try Checkpoint(dir: like).spec, geometry = Geometry.tinybert4l.spec
        XCTAssertEqual(g.layers.count, 4)
        for (l, layer) in g.layers.enumerated() {
            let p = spec.layers[l * spec.layers.count / g.layers.count]
            XCTAssertEqual(layer.heads, max(1, Int((12 * Double(p.heads) / Double(p.heads + p.prunedHeads.count)).rounded())), "layer \(l)")
            XCTAssertEqual(layer.ffn, max(1, Int((1200 * Double(p.ffn) / 128).rounded())), "layer \(l)")
            XCTAssertEqual(layer.headDim, geometry.layers[l].headDim)
        }
        r = try zoo(["bench", "pruned", "--weights", like.path, "--batch", "1", "--seq", "8", "--iters", "1", "--warmup", "0"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let dense = Paths.reference.appendingPathComponent("families/distilbert/model")
        let refused = try zoo(["eval", "pruned", "--task", "rte", "--weights", dense.path, "--data", glue.path])
        XCTAssertEqual(refused.code, 1)
        XCTAssertTrue(refused.stderr.contains("not a pruned checkpoint"), refused.stderr)
    }

    /// `zoo prune --curve`: one checkpoint per step, each step's dev score equal to `zoo eval` on it,
    /// step 0 the unpruned model.
    func testPruneCurve() throws {
        let (glue, tuned) = try tunedPrunedBERT()
        let out = try tempDir().appendingPathComponent("curve")
        let r = try zoo(["prune", "--weights", tuned.path, "--curve", "--steps", "2", "--keep-heads", "0.5", "--data", glue.path, "--out", out.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        let curve = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("curve.json"))) as! [String: Any]
        let points = curve["points"] as! [[String: Any]]
        XCTAssertEqual(points.map { $0["removed_heads"] as! Int }, [0, 2, 4])      // 8 heads; half removed in two steps
        XCTAssertEqual(points[0]["dev"] as! Double, try evalScore("bert", tuned, glue))
        for p in points.dropFirst() {
            let dir = URL(fileURLWithPath: p["dir"] as! String)
            XCTAssertEqual(try Checkpoint(dir: dir).spec.layers.map(\.heads), p["heads"] as! [Int])
            XCTAssertEqual(p["dev"] as! Double, try evalScore("pruned", dir, glue), dir.path)
        }
        XCTAssertTrue(r.out.contains("| 2 | 4 of 8 |"), r.out)
    }

    /// The dev score `zoo eval` reports for a checkpoint (its --json file).
    func evalScore(_ variant: String, _ dir: URL, _ glue: URL) throws -> Double {
        let json = try tempDir().appendingPathComponent("eval.json")
        let r = try zoo(["eval", variant, "--task", "rte", "--weights", dir.path, "--data", glue.path, "--json", json.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        return (try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [String: Any])["score"] as! Double
    }
}

extension Array where Element == Int {
    func isSuperset(of other: [Int]) -> Bool { Set(self).isSuperset(of: other) }
}
