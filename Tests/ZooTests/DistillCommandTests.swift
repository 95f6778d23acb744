import Foundation
import XCTest
@testable import DISTILL
@testable import ZooCore

/// `zoo distill` as a user runs it, per recipe, on a fine-tuned 4-layer BERT and a tiny RTE.
final class DistillCommandTests: XCTestCase {
    func distill(_ teacher: URL, _ glue: URL, _ out: URL, _ extra: [String]) throws -> RunResult {
        try zoo(["distill", "--teacher", teacher.path, "--data", glue.path, "--out", out.path, "--batch", "8", "--epochs", "1", "--threads", "2"] + extra)
    }

    /// The dev score in distill.json equals `zoo eval <variant>` on the written student.
    func assertEvalMatches(_ variant: String, _ out: URL, _ glue: URL, file: StaticString = #filePath, line: UInt = #line) throws {
        let json = try tempDir().appendingPathComponent("e.json")
        let r = try zoo(["eval", variant, "--task", "rte", "--weights", out.path, "--data", glue.path, "--json", json.path])
        XCTAssertEqual(r.code, 0, r.stderr, file: file, line: line)
        let record = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("distill.json"))) as! [String: Any]
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [String: Any])["score"] as! Double, record["dev"] as! Double,
                       file: file, line: line)
    }

    /// DistilBERT: every other teacher layer, an HF DistilBERT checkpoint transformers loads with the
    /// same logits; before training, single sentences embed exactly as in the teacher (type-0 row
    /// folded into the positions). BERT-PKD: the first two layers, an HF BERT checkpoint.
    func testDistilBERTAndPKDStudents() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 48), teacher = try Tiny.fineTuned4Layers(glue)
        let t = ParameterStore(spec: try Checkpoint(dir: teacher).spec, trainable: false)
        try t.load(try Checkpoint(dir: teacher), seed: 0)
        let initial = t.subset(layers: [0, 2], family: .distilbert)
        let batch = Batch([try Checkpoint(dir: teacher).tokenizer().encode("hello world a", nil, maxLength: 16)])
        let ta = try Network(spec: t.spec, reader: t).record(batch, dropoutSeed: nil)
        let sa = try Network(spec: initial.spec, reader: initial).record(batch, dropoutSeed: nil)
        for i in 0..<ta.T * 16 { XCTAssertEqual(sa.hidden(0)[i], ta.hidden(0)[i], accuracy: 1e-5) }      // embeddings
        for i in 0..<ta.T * 16 { XCTAssertEqual(sa.hidden(1)[i], ta.hidden(1)[i], accuracy: 1e-5) }      // teacher layer 0

        let d = try tempDir().appendingPathComponent("distilbert")
        var r = try distill(teacher, glue, d, ["--recipe", "distilbert"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let spec = try Checkpoint(dir: d).spec
        XCTAssertEqual(spec.family, .distilbert)
        XCTAssertEqual(spec.layers.count, 2)
        let stages = (try JSONSerialization.jsonObject(with: Data(contentsOf: d.appendingPathComponent("distill.json"))) as! [String: Any])["stages"]
        XCTAssertEqual((stages as! [[String: Any]]).map { $0["stage"] as! String }, ["task"], "no general stage unless asked for")
        try assertSameLogitsAsHF(d)
        try assertEvalMatches("distilbert", d, glue)

        let p = try tempDir().appendingPathComponent("pkd")
        r = try distill(teacher, glue, p, ["--recipe", "bert-pkd", "--student-layers", "2", "--augment", "2"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("augmented training set: 48 examples + 96 copies"), r.stderr)
        let augmented = try JSONSerialization.jsonObject(with: Data(contentsOf: p.appendingPathComponent("augmented.json"))) as! [String: Any]
        XCTAssertEqual((augmented["examples"] as! [Any]).count, 144)
        XCTAssertEqual(try Checkpoint(dir: p).spec.layers.count, 2)
        let stage = try JSONSerialization.jsonObject(with: Data(contentsOf: p.appendingPathComponent("task/stage.json"))) as! [String: Any]
        XCTAssertEqual(Set((stage["loss_terms"] as! [String: [Double]]).keys), ["hard", "soft_ce", "pkd"])   // each term logged per step
        try assertSameLogitsAsHF(p)
        try assertEvalMatches("bert-pkd", p, glue)
        let before = try Data(contentsOf: p.appendingPathComponent("model.safetensors"))
        r = try distill(teacher, glue, p, ["--recipe", "bert-pkd", "--student-layers", "2", "--augment", "2", "--resume"])   // all stages done: reloads
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("144 examples from"), r.stderr)
        XCTAssertEqual(try Data(contentsOf: p.appendingPathComponent("model.safetensors")), before)

        r = try zoo(["eval", "distilbert", "--task", "rte", "--weights", p.path, "--data", glue.path])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.stderr.contains("a distilbert student is distilbert"), r.stderr)
    }

    /// --student-from names the teacher layers a DistilBERT or BERT-PKD student keeps: at lr 0 the
    /// student's layers are those teacher layers, weight for weight. --cosine adds DistilBERT's
    /// cosine term to its task stage (logged per step).
    func testStudentFrom() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 16), teacher = try Tiny.fineTuned4Layers(glue)
        let t = ParameterStore(spec: try Checkpoint(dir: teacher).spec, trainable: false)
        try t.load(try Checkpoint(dir: teacher), seed: 0)
        for (recipe, from) in [("distilbert", [1, 3]), ("bert-pkd", [0, 2, 3])] {
            let out = try tempDir().appendingPathComponent(recipe)
            let r = try distill(teacher, glue, out, ["--recipe", recipe, "--student-from", from.map(String.init).joined(separator: ","), "--lr", "0"]
                                + (recipe == "distilbert" ? ["--cosine", "0.5"] : []))
            XCTAssertEqual(r.code, 0, r.stderr)
            let stage = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("task/stage.json"))) as! [String: Any]
            XCTAssertEqual(Set((stage["loss_terms"] as! [String: [Double]]).keys), recipe == "distilbert" ? ["hard", "soft_ce", "cosine"] : ["hard", "soft_ce", "pkd"])
            let ckpt = try Checkpoint(dir: out), s = ParameterStore(spec: ckpt.spec, trainable: false)
            try s.load(ckpt, seed: 0)
            XCTAssertEqual(s.spec.layers.count, from.count)
            for (m, l) in from.enumerated() {
                let (a, b) = (t.spec.family.names.layer(l), s.spec.family.names.layer(m))
                for (x, y) in [(a.query, b.query), (a.value, b.value), (a.up, b.up), (a.outputNorm, b.outputNorm)] {
                    let (p, q) = (t.view(x + ".weight"), s.view(y + ".weight"))
                    XCTAssertEqual(Array(UnsafeBufferPointer(start: q.value, count: q.count)), Array(UnsafeBufferPointer(start: p.value, count: p.count)),
                                   "\(recipe): student layer \(m) is teacher layer \(l) (\(y))")
                }
            }
        }
        for (args, message) in [(["--recipe", "distilbert", "--student-from", "2,1"], "--student-from takes increasing teacher layers from 0 to 3"),
                                (["--recipe", "distilbert", "--student-from", "0,4"], "--student-from takes increasing teacher layers from 0 to 3"),
                                (["--recipe", "bert-pkd", "--student-from", "0,1", "--student-layers", "2"], "leave out --student-layers"),
                                (["--recipe", "tinybert", "--student-from", "0,1"], "--student-from applies to the distilbert and bert-pkd recipes"),
                                (["--recipe", "bert-pkd", "--cosine", "1"], "--cosine applies to the distilbert recipe only")] {
            let r = try distill(teacher, glue, try tempDir().appendingPathComponent("x"), args)
            XCTAssertEqual(r.code, 2, args.joined(separator: " "))
            XCTAssertTrue(r.stderr.contains(message), r.stderr)
        }
    }

    /// TinyBERT: a new narrow student, general distillation on a corpus file then the two task
    /// stages; killed at an arbitrary moment and resumed, the weights are byte-identical.
    func testTinyBERTStagesAndResume() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 48), teacher = try Tiny.fineTuned4Layers(glue)
        let corpus = try tempDir().appendingPathComponent("corpus.txt")
        try (0..<64).map { ["hello world a", "b a .", "as bs hello", "world . a b"][$0 % 4] + String(repeating: " a", count: $0 % 5) }
            .joined(separator: "\n").write(to: corpus, atomically: true, encoding: .utf8)
        let args = ["--recipe", "tinybert", "--student-layers", "2", "--student-width", "8", "--student-heads", "2", "--student-ffn", "16",
                    "--corpus", corpus.path, "--general-epochs", "2", "--save-every", "2"]
        let full = try tempDir().appendingPathComponent("full")
        var r = try distill(teacher, glue, full, args)
        XCTAssertEqual(r.code, 0, r.stderr)
        for stage in ["general", "intermediate", "prediction"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: full.appendingPathComponent("\(stage)/stage.json").path), stage)
        }
        XCTAssertEqual(try Checkpoint(dir: full).spec.hidden, 8)
        try assertSameLogitsAsHF(full)
        try assertEvalMatches("tinybert", full, glue)

        let cut = try tempDir().appendingPathComponent("cut")
        XCTAssertTrue(try killedMidway(["distill", "--teacher", teacher.path, "--data", glue.path, "--out", cut.path, "--batch", "8", "--epochs", "1",
                                        "--threads", "2"] + args,
                                       after: cut.appendingPathComponent("general/checkpoint.safetensors"), finished: cut.appendingPathComponent("distill.json"),
                                       delays: [300, 150, 600, 80, 30, 10, 0]), "could not interrupt a run before it finished")
        r = try distill(teacher, glue, cut, args + ["--resume"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(try Data(contentsOf: cut.appendingPathComponent("model.safetensors")), try Data(contentsOf: full.appendingPathComponent("model.safetensors")),
                       "resumed weights must be bit-identical to the uninterrupted run")
    }

    /// A tiny RTE, a 4-layer teacher fine-tuned on it, a random pre-trained (headless) base of the same
    /// vocabulary and width, and a 40-line corpus.
    func generalSetup() throws -> (glue: URL, teacher: URL, base: URL, corpus: URL) {
        let glue = try FinetuneTests.tinyGLUE(train: 48), teacher = try Tiny.fineTuned4Layers(glue)
        let base = try tempDir().appendingPathComponent("base")
        try randomStore(.bert(vocab: 12, hidden: 16, layers: 4, heads: 2, ffn: 32, positions: 16), seed: 9)
            .writeCheckpoint(to: base, base: try Checkpoint(dir: try Tiny.checkpoint()))
        let corpus = try tempDir().appendingPathComponent("corpus.txt")
        try (0..<40).map { ["hello world a", "b a .", "as bs hello"][$0 % 3] }.joined(separator: "\n").write(to: corpus, atomically: true, encoding: .utf8)
        return (glue, teacher, base, corpus)
    }

    /// TinyBERT's two-step use: one general student distilled from the pre-trained (headless) model
    /// with --general-only, then a task's student started from it with --general (no general stage;
    /// with lr 0 its encoder is the general student's exactly).
    func testGeneralStudentMadeOnceAndReused() throws {
        let (glue, teacher, base, corpus) = try generalSetup()
        let general = try tempDir().appendingPathComponent("general")
        var r = try distill(base, glue, general, ["--recipe", "tinybert", "--general-only", "--corpus", corpus.path, "--student-layers", "2",
                                                  "--student-width", "8", "--student-heads", "2", "--student-ffn", "16"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.out.contains("general stage only"), r.out)
        let g = try Checkpoint(dir: general)
        XCTAssertEqual(g.spec.head, .none)
        XCTAssertEqual(g.spec.hidden, 8)
        XCTAssertFalse(FileManager.default.fileExists(atPath: general.appendingPathComponent("intermediate").path))
        var record = try JSONSerialization.jsonObject(with: Data(contentsOf: general.appendingPathComponent("distill.json"))) as! [String: Any]
        XCTAssertNil(record["dev"])
        XCTAssertEqual((record["stages"] as! [[String: Any]]).map { $0["stage"] as! String }, ["general"])

        let task = try tempDir().appendingPathComponent("task")
        r = try distill(teacher, glue, task, ["--recipe", "tinybert", "--general", general.path, "--lr", "0"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: task.appendingPathComponent("general").path))
        record = try JSONSerialization.jsonObject(with: Data(contentsOf: task.appendingPathComponent("distill.json"))) as! [String: Any]
        XCTAssertEqual(record["general"] as? String, general.path)
        XCTAssertEqual((record["stages"] as! [[String: Any]]).map { $0["stage"] as! String }, ["intermediate", "prediction"])
        let s = try Checkpoint(dir: task)
        XCTAssertEqual(s.spec.numLabels, 2)
        for name in ["bert.embeddings.word_embeddings.weight", "bert.encoder.layer.1.output.dense.weight"] {
            let (a, b) = (try s.tensors.tensor(s.name(name)), try g.tensors.tensor(g.name(name)))
            XCTAssertEqual(Array(UnsafeBufferPointer(start: a.data, count: a.count)), Array(UnsafeBufferPointer(start: b.data, count: b.count)), name)
        }
        try assertEvalMatches("tinybert", task, glue)

        r = try distill(teacher, glue, try tempDir(), ["--recipe", "tinybert", "--general", general.path, "--student-width", "16"])
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.stderr.contains("--student-width: the student's shape comes from --general"), r.stderr)
        r = try distill(base, glue, try tempDir(), ["--recipe", "tinybert", "--general", general.path])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.stderr.contains("must be a fine-tuned dense BERT"), r.stderr)
        r = try distill(teacher, glue, try tempDir(), ["--recipe", "bert-pkd", "--general-only"])
        XCTAssertTrue(r.stderr.contains("apply to the tinybert and distilbert recipes only"), r.stderr)
        r = try distill(teacher, glue, try tempDir(), ["--recipe", "tinybert", "--without", "hidden,nope"])
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.stderr.contains("--without takes general, embedding, attention, hidden, prediction, augmentation, got 'nope'"), r.stderr)
    }

    /// DistilBERT's general stage: every other layer of the pre-trained (headless) model learns its
    /// last hidden states by the cosine loss (--general-only); a task's student starts from it with
    /// the fine-tuned teacher's pooler and classifier as its head (with lr 0 exactly those tensors).
    func testDistilBERTGeneralStage() throws {
        let (glue, teacher, base, corpus) = try generalSetup()
        let general = try tempDir().appendingPathComponent("general")
        var r = try distill(base, glue, general, ["--recipe", "distilbert", "--general-only", "--corpus", corpus.path, "--general-epochs", "4", "--lr", "1e-3"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let g = try Checkpoint(dir: general)
        XCTAssertEqual(g.spec.family, .distilbert)
        XCTAssertEqual(g.spec.head, .none)
        XCTAssertEqual(g.spec.layers.count, 2)
        let stage = try JSONSerialization.jsonObject(with: Data(contentsOf: general.appendingPathComponent("general/stage.json"))) as! [String: Any]
        XCTAssertEqual(Set((stage["loss_terms"] as! [String: [Double]]).keys), ["cosine"])
        // Without dropout, the trained student's last states are closer to the base's than the
        // untrained layers' were.
        let b = ParameterStore(spec: try Checkpoint(dir: base).spec, trainable: false)
        try b.load(try Checkpoint(dir: base), seed: 0)
        let trained = ParameterStore(spec: g.spec)
        try trained.load(g, seed: 0)
        let tok = try g.tokenizer()
        let batch = Batch(["hello world a", "as bs hello"].map { tok.encode($0, nil, maxLength: 16) })
        func distance(_ s: ParameterStore) throws -> Float {
            let (sa, ta) = (try Network(spec: s.spec, reader: s).record(batch, dropoutSeed: nil), try Network(spec: b.spec, reader: b).record(batch, dropoutSeed: nil))
            var d = [Float](repeating: 0, count: ta.T * 16)
            return DistillLoss.cosine(student: sa.hidden(2), teacher: ta.hidden(4), T: ta.T, H: 16, ds: &d)
        }
        XCTAssertLessThan(try distance(trained), try distance(b.subset(layers: [0, 2], family: .distilbert)))

        let task = try tempDir().appendingPathComponent("task")
        r = try distill(teacher, glue, task, ["--recipe", "distilbert", "--general", general.path, "--lr", "0"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let record = try JSONSerialization.jsonObject(with: Data(contentsOf: task.appendingPathComponent("distill.json"))) as! [String: Any]
        XCTAssertEqual((record["stages"] as! [[String: Any]]).map { $0["stage"] as! String }, ["task"])
        let (s, t) = (try Checkpoint(dir: task), try Checkpoint(dir: teacher))
        func values(_ c: Checkpoint, _ name: String) throws -> [Float] {
            let x = try c.tensors.tensor(c.name(name))
            return Array(UnsafeBufferPointer(start: x.data, count: x.count))
        }
        for name in ["distilbert.embeddings.word_embeddings.weight", "distilbert.transformer.layer.1.ffn.lin2.weight"] {
            XCTAssertEqual(try values(s, name), try values(g, name), name)
        }
        XCTAssertEqual(try values(s, "pre_classifier.weight"), try values(t, "bert.pooler.dense.weight"))
        XCTAssertEqual(try values(s, "classifier.weight"), try values(t, "classifier.weight"))
        try assertEvalMatches("distilbert", task, glue)

        r = try distill(teacher, glue, try tempDir(), ["--recipe", "distilbert", "--general", general.path, "--student-layers", "1"])
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.stderr.contains("--student-layers: the student's shape comes from --general"), r.stderr)
        r = try distill(teacher, glue, try tempDir(), ["--recipe", "distilbert", "--general", teacher.path])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.stderr.contains("not a general DistilBERT student"), r.stderr)
    }

    /// --student-init teacher: cut at the teacher's own shape the student is the teacher, tensor for
    /// tensor; cut narrower it keeps the residual dimensions of largest Σ(γ² + β²) over the LayerNorms
    /// of its layers (teacher layers 2 and 4 for 2 of 4), each query row is a teacher row of its own
    /// head (over those dimensions) times √(d'/d), and with the projections started as that
    /// embedding its first hidden-state loss is far below a random student's. A general student made
    /// so carries its dimensions (config.json zoo_teacher_dims) to the task stages.
    func testStudentCutOutOfTheTeacher() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 48), teacher = try Tiny.fineTuned4Layers(glue)
        let t = ParameterStore(spec: try Checkpoint(dir: teacher).spec, trainable: false)
        try t.load(try Checkpoint(dir: teacher), seed: 0)
        let (same, all) = try Students.cut(from: t, layers: 4, hidden: 16, heads: 2, ffn: 32)
        XCTAssertEqual(all, Array(0..<16))
        XCTAssertEqual(same.slots.map(\.name), t.slots.map(\.name))
        for slot in t.slots {
            XCTAssertEqual(Array(UnsafeBufferPointer(start: same.view(slot.name).value, count: slot.count)),
                           Array(UnsafeBufferPointer(start: t.view(slot.name).value, count: slot.count)), slot.name)
        }

        let (s, kept) = try Students.cut(from: t, layers: 2, hidden: 12, heads: 2, ffn: 20)
        XCTAssertEqual(s.spec.hidden, 12)
        XCTAssertEqual(s.spec.layers.map(\.headDim), [6, 6])
        XCTAssertEqual(s.spec.layers.map(\.ffn), [20, 20])
        let names = t.spec.family.names
        let norms = [names.embeddingNorm] + [1, 3].flatMap { [names.layer($0).attentionNorm, names.layer($0).outputNorm] }
        let energy = (0..<16).map { h in norms.map { n -> Float in
            let (g, b) = (t.view(n + ".weight").value[h], t.view(n + ".bias").value[h]); return g * g + b * b }.reduce(0, +) }
        XCTAssertEqual(Set(kept), Set((0..<16).sorted { energy[$0] > energy[$1] }.prefix(12)))
        for (j, h) in kept.enumerated() { XCTAssertEqual(s.view(names.embeddingNorm + ".weight").value[j], t.view(names.embeddingNorm + ".weight").value[h]) }
        let (sq, tq) = (s.view(names.layer(0).query + ".weight").value, t.view(names.layer(1).query + ".weight").value)
        let scale = Float(6.0 / 8.0).squareRoot()
        for row in 0..<12 {
            let head = row / 6
            let candidates = (0..<8).map { i in kept.map { tq[(head * 8 + i) * 16 + $0] * scale } }
            XCTAssertTrue(candidates.contains((0..<12).map { sq[row * 12 + $0] }), "query row \(row) is no row of teacher head \(head)")
        }

        let examples = try (0..<16).map { try Checkpoint(dir: teacher).tokenizer().encode(["hello world a", "b a .", "as bs hello"][$0 % 3], nil, maxLength: 16) }
        var objective = DistillObjective()
        (objective.hidden, objective.embedding) = (1, 1)
        func firstLoss(_ student: ParameterStore, _ dims: [Int]?) throws -> Float {
            try DistillStep(teacher: t, student: student, objective: objective, examples: examples, targets: nil, projectionFrom: dims)
                .step(Array(0..<16), dropoutSeed: 1).terms["hidden"]!
        }
        let cutLoss = try firstLoss(s, kept), randomLoss = try firstLoss(Students.random(like: t.spec, layers: 2, hidden: 12, heads: 2, ffn: 20, seed: 1), nil)
        XCTAssertLessThan(cutLoss, 0.25 * randomLoss, "cut \(cutLoss), random \(randomLoss)")

        let general = try tempDir().appendingPathComponent("general")
        let corpus = try tempDir().appendingPathComponent("corpus.txt")
        try (0..<24).map { ["hello world a", "b a .", "as bs hello"][$0 % 3] }.joined(separator: "\n").write(to: corpus, atomically: true, encoding: .utf8)
        var r = try distill(teacher, glue, general, ["--recipe", "tinybert", "--general-only", "--corpus", corpus.path, "--student-init", "teacher",
                                                     "--student-layers", "2", "--student-width", "12", "--student-heads", "2", "--student-ffn", "20"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(try Checkpoint(dir: general).configDictionary()["zoo_teacher_dims"] as? [Int], kept)
        let task = try tempDir().appendingPathComponent("task")
        r = try distill(teacher, glue, task, ["--recipe", "tinybert", "--general", general.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(try Checkpoint(dir: task).configDictionary()["zoo_teacher_dims"] as? [Int], kept)
        try assertSameLogitsAsHF(task)

        r = try distill(teacher, glue, try tempDir(), ["--recipe", "tinybert", "--general", general.path, "--student-init", "teacher"])
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.stderr.contains("--student-init: the student's shape comes from --general"), r.stderr)
        r = try distill(teacher, glue, try tempDir(), ["--recipe", "tinybert", "--student-init", "teacher", "--student-width", "20"])
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.stderr.contains("a width of at most 16"), r.stderr)
        r = try distill(teacher, glue, try tempDir(), ["--recipe", "tinybert", "--student-init", "parent"])
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.stderr.contains("--student-init takes random or teacher, got 'parent'"), r.stderr)
        var config = try Checkpoint(dir: general).configDictionary()
        config["zoo_teacher_dims"] = [0, 1, 99]
        try JSONSerialization.data(withJSONObject: config).write(to: general.appendingPathComponent("config.json"))
        r = try distill(teacher, glue, try tempDir(), ["--recipe", "tinybert", "--general", general.path])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.stderr.contains(general.appendingPathComponent("config.json").path + ": zoo_teacher_dims must list 12 dimensions of the teacher's 16"), r.stderr)
    }

    /// BiLSTM-SOFT: a pair task's student in the zoo's own format, run as the `bilstm-soft` variant
    /// (zoo eval = distill.json's dev score, zoo bench), resumed when done, clear errors.
    func testBiLSTMSoft() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 48), teacher = try Tiny.fineTuned4Layers(glue)
        let out = try tempDir().appendingPathComponent("bilstm")
        var r = try distill(teacher, glue, out, ["--recipe", "bilstm-soft", "--student-width", "6", "--augment", "1"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let model = try BiLSTM(directory: out)
        XCTAssertEqual(model.config, BiLSTM.Config(vocabSize: 12, embeddingSize: 16, hiddenSize: 6, classifierSize: 400, numLabels: 2, pair: true, maxLength: 16))
        let stage = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("task/stage.json"))) as! [String: Any]
        XCTAssertEqual(Set((stage["loss_terms"] as! [String: [Double]]).keys), ["logits_mse"])
        XCTAssertEqual(stage["steps"] as? Int, 12)                       // 96 examples (48 + 48 augmented), batches of 8
        try assertEvalMatches("bilstm-soft", out, glue)
        r = try zoo(["bench", "bilstm-soft", "--weights", out.path, "--batch", "2", "--seq", "8", "--iters", "2", "--json"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let before = try Data(contentsOf: out.appendingPathComponent("model.safetensors"))
        r = try distill(teacher, glue, out, ["--recipe", "bilstm-soft", "--student-width", "6", "--augment", "1", "--resume"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("model.safetensors")), before)

        r = try zoo(["eval", "bilstm-soft", "--task", "rte", "--weights", teacher.path, "--data", glue.path])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.stderr.contains("not a bilstm-soft config"), r.stderr)
        r = try zoo(["bench", "bilstm-soft", "--geometry", "bert-base"])
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.stderr.contains("bilstm-soft has no geometry"), r.stderr)
        r = try distill(teacher, glue, try tempDir(), ["--recipe", "bilstm-soft", "--student-layers", "2"])
        XCTAssertTrue(r.stderr.contains("the BiLSTM student has one layer"), r.stderr)
    }

    /// On a regression task the prediction terms are the MSE to the teacher's output (a soft
    /// cross-entropy over one logit is constant); classification keeps the soft cross-entropy.
    func testRegressionPredictionLoss() {
        for recipe in [Recipe.tinybert, .distilbert, .bertPKD] {
            let last = recipe.stages(temperature: 2, regression: true).last!.objective
            XCTAssertEqual(last.softCE, 0, recipe.rawValue)
            XCTAssertEqual(last.logitsMSE, recipe == .tinybert ? 1 : 0.5, recipe.rawValue)
            XCTAssertEqual(recipe.stages(temperature: 2, regression: false).last!.objective.softCE, recipe == .tinybert ? 1 : 0.5, recipe.rawValue)
        }
    }

    /// --without (the KD-stage experiment): a switched-off loss is zero in every stage, a stage left
    /// with nothing to learn is dropped, and without prediction distillation the last stage learns
    /// the labels.
    func testWithoutParts() {
        let all = Recipe.tinybert.stages(temperature: 1, regression: false)
        func names(_ without: Set<String>) -> [String] { all.compactMap { Recipe.ablated($0, without: without) }.map(\.name) }
        XCTAssertEqual(names([]), ["general", "intermediate", "prediction"])
        XCTAssertEqual(names(["general"]), ["intermediate", "prediction"])
        XCTAssertEqual(names(["embedding", "attention", "hidden"]), ["prediction"])
        let noAttention = all.compactMap { Recipe.ablated($0, without: ["attention"]) }
        XCTAssertEqual(noAttention.map(\.objective.attention), [0, 0, 0])
        XCTAssertEqual(noAttention[1].objective.hidden, 1)
        let last = Recipe.ablated(all[2], without: ["prediction"])!.objective
        XCTAssertEqual([last.softCE, last.hard], [0, 1])
    }
}
