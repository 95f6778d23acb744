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
        let initial = Students.subset(t, layers: [0, 2], family: .distilbert)
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
                                       delays: [300, 150, 600, 80]), "could not interrupt a run before it finished")
        r = try distill(teacher, glue, cut, args + ["--resume"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(try Data(contentsOf: cut.appendingPathComponent("model.safetensors")), try Data(contentsOf: full.appendingPathComponent("model.safetensors")),
                       "resumed weights must be bit-identical to the uninterrupted run")
    }
}
