import Foundation
import XCTest
@testable import DISTILL
@testable import ZooCore

/// `zoo distill` as a user runs it, per recipe, on a fine-tuned 4-layer BERT and a tiny RTE.
final class DistillCommandTests: XCTestCase {
    /// A 4-layer BERT (hidden 16, 2 heads) fine-tuned on the tiny RTE: the teacher.
    static func teacher(_ glue: URL) throws -> URL {
        let dense = try tempDir().appendingPathComponent("dense"), tuned = try tempDir().appendingPathComponent("teacher")
        try randomStore(.bert(vocab: 12, hidden: 16, layers: 4, heads: 2, ffn: 32, positions: 16), seed: 9)
            .writeCheckpoint(to: dense, base: try Checkpoint(dir: try Tiny.checkpoint()))
        let r = try zoo(["finetune", "--base", dense.path, "--task", "rte", "--data", glue.path, "--out", tuned.path, "--epochs", "2", "--batch", "8",
                         "--lr", "1e-3", "--threads", "2"])
        XCTAssertEqual(r.code, 0, r.stderr)
        return tuned
    }

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
        let glue = try FinetuneTests.tinyGLUE(train: 48), teacher = try Self.teacher(glue)
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
        let glue = try FinetuneTests.tinyGLUE(train: 48), teacher = try Self.teacher(glue)
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
        var killedMidway = false
        for delayMs in [300, 150, 600, 80] {
            try? FileManager.default.removeItem(at: cut)
            let p = Process()
            p.executableURL = Paths.zoo
            p.arguments = ["distill", "--teacher", teacher.path, "--data", glue.path, "--out", cut.path, "--batch", "8", "--epochs", "1", "--threads", "2"] + args
            p.standardError = FileHandle.nullDevice
            try p.run()
            let first = cut.appendingPathComponent("general/checkpoint.safetensors")
            let deadline = Date().addingTimeInterval(30)
            while !FileManager.default.fileExists(atPath: first.path) && Date() < deadline { usleep(2000) }
            usleep(useconds_t(delayMs * 1000))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            if !FileManager.default.fileExists(atPath: cut.appendingPathComponent("distill.json").path) { killedMidway = true; break }
        }
        XCTAssertTrue(killedMidway, "could not interrupt a run before it finished")
        r = try distill(teacher, glue, cut, args + ["--resume"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(try Data(contentsOf: cut.appendingPathComponent("model.safetensors")), try Data(contentsOf: full.appendingPathComponent("model.safetensors")),
                       "resumed weights must be bit-identical to the uninterrupted run")
    }
}
