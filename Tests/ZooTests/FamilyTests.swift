import BERT
import CKernels
import Foundation
import XCTest
@testable import ZooCore

/// Every BERT-family checkpoint through the one model graph, against HF transformers on the small
/// random-initialised checkpoints `tools/hf_reference.py families` writes (no real DistilBERT or
/// ALBERT weights can be downloaded here): BERT with `pruned_heads`, DistilBERT, ALBERT (one shared
/// layer) and ALBERT with two layer groups.
final class FamilyTests: XCTestCase {
    static let families = ["bert-pruned", "distilbert", "albert", "albert-groups"]

    struct Reference {
        let ckpt: Checkpoint
        let ref: SafeTensors
        let batch: Batch
        let labels: [Int32]
        var S: Int { batch.seqLen }
    }

    func reference(_ family: String) throws -> Reference {
        let dir = Paths.reference.appendingPathComponent("families/\(family)")
        try require(dir.appendingPathComponent("reference.safetensors"), "run `python tools/hf_reference.py families` (make reference)")
        let ref = try SafeTensors(url: dir.appendingPathComponent("reference.safetensors"))
        let ids = try ref.int32s("input_ids"), types = try ref.int32s("token_type_ids"), lengths = try ref.int32s("lengths")
        let B = lengths.count, S = ids.count / B
        let batch = Batch((0..<B).map { b in
            WordPieceTokenizer.Encoding(inputIds: Array(ids[b * S..<b * S + Int(lengths[b])]), tokenTypeIds: Array(types[b * S..<b * S + Int(lengths[b])]))
        })
        return Reference(ckpt: try Checkpoint(dir: dir.appendingPathComponent("model")), ref: ref, batch: batch,
                         labels: try ref.tensor("labels").array.map { Int32($0) })
    }

    /// Largest |zoo − HF| over the real tokens of packed zoo rows against HF's padded [B, S, H].
    func packedDiff(_ zoo: UnsafePointer<Float>, _ hf: Tensor, _ r: Reference, width H: Int) -> Float {
        var worst: Float = 0, t = 0
        for b in 0..<r.batch.size {
            for i in 0..<Int(r.batch.lengths[b]) {
                for j in 0..<H { worst = max(worst, abs(zoo[(t + i) * H + j] - hf[(b * r.S + i) * H + j])) }
            }
            t += Int(r.batch.lengths[b])
        }
        return worst
    }

    /// Inference (packed fp32 weights) and recording (the training forward) both within 1e-4 of HF:
    /// every hidden state, pre-softmax attention scores, logits; the two modes agree within 1e-5;
    /// parameters counted as HF counts them (shared layers once).
    func testForwardMatchesHuggingFace() throws {
        zk_set_threads(2)
        for family in Self.families {
            let r = try reference(family)
            let spec = r.ckpt.spec
            XCTAssertEqual(spec.parameterCount, Int(r.ref.metadata["parameters"] ?? "") ?? -1, "\(family) parameter count")
            let net = try BertNetwork(checkpoint: r.ckpt)
            let L = spec.layers.count, H = spec.hidden
            let last = try net.forward(r.batch), wantLast = try r.ref.tensor("hidden.\(L)")
            var worst: Float = 0
            for b in 0..<r.batch.size {
                for i in 0..<Int(r.batch.lengths[b]) * H { worst = max(worst, abs(last[b * r.S * H + i] - wantLast[b * r.S * H + i])) }
            }
            XCTAssertLessThan(worst, 1e-4, "\(family) last hidden states (inference)")
            let logits = try net.logits(r.batch), wantLogits = try r.ref.tensor("logits")
            XCTAssertLessThan(maxAbsDiff(logits, wantLogits), 1e-4, "\(family) logits (inference)")

            let store = ParameterStore(spec: spec, trainable: false)
            XCTAssertNil(store.grads, "a frozen store allocates no gradients")
            try store.load(r.ckpt, seed: 0)
            let trainNet = try Network(spec: spec, reader: store)
            let act = try trainNet.record(r.batch, dropoutSeed: nil)
            for l in 0...L {
                XCTAssertLessThan(packedDiff(act.hidden(l), try r.ref.tensor("hidden.\(l)"), r, width: H), 1e-4, "\(family) hidden.\(l) (recording)")
            }
            for l in 0..<L {
                let s = spec.layers[l], scores = act.scores(l, spec: spec), want = try r.ref.tensor("scores.\(l)")
                var w: Float = 0
                for b in 0..<r.batch.size {
                    let n = Int(r.batch.lengths[b])
                    for h in 0..<s.heads { for i in 0..<n { for j in 0..<n {
                        let z = scores[s.heads * act.squares[b] + (h * n + i) * n + j], hf = want[((b * s.heads + h) * r.S + i) * r.S + j]
                        w = max(w, abs(z - hf))
                    } } }
                }
                XCTAssertLessThan(w, 1e-4, "\(family) scores.\(l)")
            }
            var modes: Float = 0
            for i in 0..<logits.count { modes = max(modes, abs(logits[i] - act.logits[i])) }
            XCTAssertLessThan(modes, 1e-5, "\(family): inference and recording logits")
            XCTAssertLessThan(maxAbsDiff(Tensor(shape: [logits.count], values: Array(UnsafeBufferPointer(start: act.logits, count: logits.count))), wantLogits), 1e-4)
        }
    }

    /// Shared layers are stored once but run at every use: ALBERT's parameter count is that of its
    /// groups, its FLOPs those of the same network unshared; pruned heads take their share of FLOPs out.
    func testParameterAndFlopCountsFollowTheShapes() throws {
        let albert = try reference("albert").ckpt.spec
        var unshared = albert
        for i in unshared.layers.indices { unshared.layers[i].group = i }
        let perLayer = unshared.parameterCount - albert.parameterCount
        XCTAssertEqual(perLayer, 3 * ParameterStore(spec: albert).slots.filter { $0.name.contains("albert_layer_groups.0.") }.map(\.count).reduce(0, +))
        XCTAssertEqual(albert.flops(batch: 2, seq: 16), unshared.flops(batch: 2, seq: 16))
        let pruned = try reference("bert-pruned").ckpt.spec
        var dense = pruned
        for i in dense.layers.indices { dense.layers[i].heads += dense.layers[i].prunedHeads.count; dense.layers[i].prunedHeads = [] }
        let (B, S, H, d) = (2.0, 16.0, Double(pruned.hidden), Double(pruned.layers[0].headDim))
        let removed = Double(pruned.layers.map(\.prunedHeads.count).reduce(0, +))
        // Per removed head: Q, K, V and output projections (4·d·H multiply-adds per token) and its scores and context (2·S·d per token).
        XCTAssertEqual(dense.flops(batch: 2, seq: 16) - pruned.flops(batch: 2, seq: 16), removed * 2 * B * S * (4 * d * H + 2 * S * d), accuracy: 1)
    }

    /// One training step against PyTorch autograd (no dropout): loss within 1e-5, every parameter's
    /// gradient within 1e-4 of its tensor's largest (ALBERT's shared layers summed over their uses).
    func testTrainingStepMatchesPyTorch() throws {
        zk_set_threads(2)
        for family in Self.families {
            let r = try reference(family)
            let store = ParameterStore(spec: r.ckpt.spec)
            try store.load(r.ckpt, seed: 0)
            let net = try Network(spec: store.spec, reader: store)
            let loss = try net.step(r.batch, targets: .classes(r.labels), dropoutSeed: nil)
            XCTAssertEqual(loss, try r.ref.tensor("loss")[0], accuracy: 1e-5, "\(family) loss")
            let names = Set(r.ref.names.filter { $0.hasPrefix("grad.") }.map { String($0.dropFirst(5)) })
            XCTAssertEqual(names, Set(store.slots.map(\.name)), "\(family): the zoo's parameters are HF's")
            for s in store.slots {
                let want = try r.ref.tensor("grad.\(s.name)")
                var scale: Float = 0, err: Float = 0
                for i in 0..<s.count {
                    scale = max(scale, abs(want[i]))
                    err = max(err, abs(store.grads![s.offset + i] - want[i]))
                }
                XCTAssertLessThanOrEqual(err, 1e-4 * scale + 1e-7, "\(family) grad \(s.name): max err \(err), max |g| \(scale)")
            }
        }
    }

    /// A gradient injected at each tap (embedding output, every hidden state, every layer's
    /// pre-softmax scores, logits) equals finite differences of J = Σ G ⊙ tap with respect to
    /// parameters of every kind, shared ALBERT layers and the E→H projection included.
    func testGradientInjectionAtTapsMatchesFiniteDifferences() throws {
        zk_set_threads(1)
        let r = try reference("albert-groups")
        let store = ParameterStore(spec: r.ckpt.spec)
        try store.load(r.ckpt, seed: 0)
        let net = try Network(spec: store.spec, reader: store)
        let spec: ModelSpec = store.spec, H = spec.hidden
        var rng = SplitMix64(seed: 5)
        let act0 = try net.record(r.batch, dropoutSeed: nil)
        let taps: [(Tap, Int)] = [(.hidden(0), act0.T * H), (.hidden(2), act0.T * H), (.hidden(spec.layers.count), act0.T * H),
                                  (.scores(0), spec.layers[0].heads * act0.totalSquares), (.scores(3), spec.layers[3].heads * act0.totalSquares),
                                  (.logits, r.batch.size * spec.numLabels)]
        let probes = ["albert.embeddings.word_embeddings.weight", "albert.embeddings.LayerNorm.weight", "albert.encoder.embedding_hidden_mapping_in.weight",
                      "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight",
                      "albert.encoder.albert_layer_groups.1.albert_layers.0.attention.key.weight",
                      "albert.encoder.albert_layer_groups.1.albert_layers.0.ffn.weight", "albert.pooler.bias"]
        for (tap, count) in taps {
            let g = Tensor(shape: [count])
            for i in 0..<count { g[i] = rng.symmetric() }
            func objective() throws -> Double {
                let a = try net.record(r.batch, dropoutSeed: nil)
                let v: UnsafePointer<Float>
                var keep: Tensor?
                switch tap {
                case .hidden(let l): v = a.hidden(l)
                case .scores(let l): keep = a.scores(l, spec: spec); v = UnsafePointer(keep!.data)
                case .logits: v = UnsafePointer(a.logits)
                }
                defer { withExtendedLifetime(keep) {} }
                return (0..<count).reduce(0.0) { $0 + Double(g[$1]) * Double(v[$1]) }
            }
            store.zeroGrad()
            let act = try net.record(r.batch, dropoutSeed: nil)
            net.clearLogitGradient(act)
            net.backward(act, batch: r.batch, extra: [tap: UnsafePointer(g.data)])
            let grads = Tensor(shape: [store.count])
            grads.data.update(from: store.grads!.data, count: store.count)
            for name in probes {
                let s = try XCTUnwrap(store.slot(name))
                // The coordinate of the slot with the largest analytic gradient, and one more.
                let i0 = (0..<s.count).max { abs(grads[s.offset + $0]) < abs(grads[s.offset + $1]) }!
                for i in [i0, (i0 + s.count / 2) % s.count] {
                    let k = s.offset + i, w = store.values[k], h: Float = 3e-2 * max(abs(w), 0.1)   // J is float32: smaller steps drown in rounding
                    store.values[k] = w + h; let jp = try objective()
                    store.values[k] = w - h; let jm = try objective()
                    store.values[k] = w
                    let fd = (jp - jm) / Double(2 * h), an = Double(grads[k])
                    XCTAssertEqual(an, fd, accuracy: 2e-2 * max(abs(fd), abs(an)) + 2e-3, "\(tap) → \(name)[\(i)]")
                }
            }
        }
    }

    /// The CLI on each family as a user runs it: `zoo embed`, `zoo finetune` (the family's own head,
    /// 3 labels replaced by RTE's 2), `zoo eval` equal to fine-tuning's last dev score, and the
    /// written checkpoint loaded by HF transformers with the same logits.
    func testEmbedFinetuneEvalEachFamily() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 48)
        for family in Self.families {
            let base = Paths.reference.appendingPathComponent("families/\(family)/model")
            try require(base.appendingPathComponent("config.json"), "make reference")
            let e = try zoo(["embed", "bert", "--weights", base.path], stdin: Data("hello world\na b\tb a\n".utf8))
            XCTAssertEqual(e.code, 0, e.stderr)
            let rows = e.out.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [Double] }
            XCTAssertEqual(rows.map(\.count), [64, 64], family)
            // The base model (`DistilBertModel`, …: no family prefix, no head) gives the same embeddings.
            let plain = try tempDir()
            let st = try SafeTensors(url: base.appendingPathComponent("model.safetensors"))
            let prefix = try Checkpoint(dir: base).spec.family.names.prefix
            try SafeTensors.write(try st.names.filter { $0.hasPrefix(prefix) }.map { (String($0.dropFirst(prefix.count)), try st.tensor($0)) },
                                  to: plain.appendingPathComponent("model.safetensors"))
            for f in ["config.json", "vocab.txt"] { try FileManager.default.copyItem(at: base.appendingPathComponent(f), to: plain.appendingPathComponent(f)) }
            let e2 = try zoo(["embed", "bert", "--weights", plain.path], stdin: Data("hello world\na b\tb a\n".utf8))
            XCTAssertEqual(e2.code, 0, e2.stderr)
            XCTAssertEqual(e2.out, e.out, "\(family) base model")

            let out = try tempDir().appendingPathComponent(family)
            let f = try zoo(["finetune", "--base", base.path, "--task", "rte", "--data", glue.path, "--out", out.path, "--epochs", "2",
                             "--batch", "8", "--lr", "1e-3", "--threads", "2"])
            XCTAssertEqual(f.code, 0, f.stderr)
            XCTAssertTrue(f.stderr.contains("initialised"), f.stderr)
            let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as! [String: Any]
            XCTAssertEqual(config["model_type"] as? String, family.hasPrefix("albert") ? "albert" : family == "distilbert" ? "distilbert" : "bert")
            let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("metrics.json"))) as! [String: Any]
            let last = (metrics["epochs"] as! [[String: Any]]).last!
            let evalJSON = try tempDir().appendingPathComponent("e.json")
            let ev = try zoo(["eval", "bert", "--task", "rte", "--weights", out.path, "--data", glue.path, "--json", evalJSON.path])
            XCTAssertEqual(ev.code, 0, ev.stderr)
            let evObj = try JSONSerialization.jsonObject(with: Data(contentsOf: evalJSON)) as! [String: Any]
            XCTAssertEqual(evObj["score"] as! Double, last["score"] as! Double, "\(family): finetune's dev score is zoo eval's")
            try assertSameLogitsAsHF(out)
        }
    }
}
