import BERT
import Foundation
import XCTest
@testable import ZooCore

/// `zoo finetune` end to end on a tiny BERT and a small RTE-format task: exact resume after SIGKILL,
/// the output loads in HF transformers with the same logits, `zoo eval` scores it.
final class FinetuneTests: XCTestCase {
    /// A GLUE directory with an RTE train/dev/test split made of the tiny vocabulary's words.
    static func tinyGLUE(train: Int = 96) throws -> URL {
        let dir = try tempDir()
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("RTE"), withIntermediateDirectories: true)
        var rng = SplitMix64(seed: 11)
        let words = ["hello", "world", "a", "b", "as", "bs", "."]
        func sentence() -> String { (0..<(2 + Int(rng.next() % 9))).map { _ in words[Int(rng.next() % UInt64(words.count))] }.joined(separator: " ") }
        for (split, n) in [("train", train), ("dev", 24), ("test", 10)] {
            var text = "index\tsentence1\tsentence2" + (split == "test" ? "\n" : "\tlabel\n")
            for i in 0..<n {
                let a = sentence(), b = sentence()
                text += "\(i)\t\(a)\t\(b)" + (split == "test" ? "\n" : "\t" + (a.count % 2 == 0 ? "entailment" : "not_entailment") + "\n")
            }
            try text.write(to: dir.appendingPathComponent("RTE/\(split).tsv"), atomically: true, encoding: .utf8)
        }
        return dir
    }

    func finetuneArgs(base: URL, glue: URL, out: URL) -> [String] {
        ["finetune", "--base", base.path, "--task", "rte", "--data", glue.path, "--out", out.path, "--epochs", "3", "--batch", "8",
         "--lr", "1e-3", "--save-every", "1", "--threads", "2", "--seed", "7"]
    }

    /// Two runs writing one --out: the second is refused while the first runs (one error line, exit
    /// 1, the first's output untouched), and accepted once it has ended.
    func testSecondRunOnTheSameOutIsRefused() throws {
        let base = try Tiny.checkpoint(), glue = try Self.tinyGLUE(train: 400)
        let out = try tempDir().appendingPathComponent("out")
        let first = Process()
        first.executableURL = Paths.zoo
        first.arguments = finetuneArgs(base: base, glue: glue, out: out)
        first.environment = ProcessInfo.processInfo.environment.merging(["ZOO_PAUSE_AT_STEP": "1"]) { $1 }   // held after step 1
        first.standardError = FileHandle.nullDevice
        try first.run()
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }   // never left paused
        let started = Date()
        while !FileManager.default.fileExists(atPath: out.appendingPathComponent("checkpoint.safetensors").path), first.isRunning,
              Date().timeIntervalSince(started) < 60 { usleep(20_000) }
        XCTAssertTrue(first.isRunning, "the first run ended before the second could start")
        let checkpoint = try Data(contentsOf: out.appendingPathComponent("checkpoint.safetensors"))
        let second = try zoo(finetuneArgs(base: base, glue: glue, out: out))
        XCTAssertEqual(second.code, 1, second.stderr)
        XCTAssertTrue(second.stderr.contains("another zoo is writing there"), second.stderr)
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("checkpoint.safetensors")), checkpoint)
        kill(first.processIdentifier, SIGINT)
        first.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 130)
        let resumed = try zoo(finetuneArgs(base: base, glue: glue, out: out) + ["--resume"])
        XCTAssertEqual(resumed.code, 0, "the lock goes with its process: \(resumed.stderr)")
        XCTAssertNoThrow(try SafeTensors(url: out.appendingPathComponent("model.safetensors")))
    }

    func testResumeAfterSIGKILLIsBitIdentical() throws {
        let base = try Tiny.checkpoint(), glue = try Self.tinyGLUE(train: 400)
        let full = try tempDir().appendingPathComponent("full")
        let r = try zoo(finetuneArgs(base: base, glue: glue, out: full))
        XCTAssertEqual(r.code, 0, r.stderr)
        let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: full.appendingPathComponent("metrics.json"))) as! [String: Any]
        XCTAssertEqual((metrics["epochs"] as! [Any]).count, 3)
        XCTAssertEqual(metrics["steps"] as? Int, 150)

        func assertResumes(_ cut: URL, steps: ClosedRange<Int>) throws {
            let checkpoint = try SafeTensors(url: cut.appendingPathComponent("checkpoint.safetensors"))
            let state = try JSONSerialization.jsonObject(with: Data(checkpoint.metadata["zoo_state"]!.utf8)) as! [String: Any]
            let saved = state["step"] as! Int
            XCTAssertTrue(steps.contains(saved), "killed: checkpoint at step \(saved), expected \(steps)")
            let resumed = try zoo(finetuneArgs(base: base, glue: glue, out: cut) + ["--resume"])
            XCTAssertEqual(resumed.code, 0, resumed.stderr)
            XCTAssertTrue(resumed.stderr.contains("at step \(saved)\n"), resumed.stderr)
            XCTAssertEqual(try Data(contentsOf: cut.appendingPathComponent("model.safetensors")), try Data(contentsOf: full.appendingPathComponent("model.safetensors")),
                           "resumed weights must be bit-identical to the uninterrupted run")
        }

        // Killed with SIGKILL at an arbitrary moment after it has written a checkpoint (every step
        // here): the checkpoint is whole (never torn) and the run resumes from it to the same end.
        // How far the run got depends on the machine; it may be anywhere up to the last step.
        let cut = try tempDir().appendingPathComponent("cut")
        XCTAssertTrue(try killedMidway(finetuneArgs(base: base, glue: glue, out: cut), after: cut.appendingPathComponent("checkpoint.safetensors"),
                                       finished: cut.appendingPathComponent("model.safetensors"), delays: [400, 250, 700, 150, 50, 10, 0]),
                      "could not interrupt a run before it finished")
        try assertResumes(cut, steps: 1...150)
        // Killed at a known step in the middle (held there by ZOO_PAUSE_AT_STEP): it continues from
        // that step, not from 0 (a silent restart would also end identical).
        try FileManager.default.removeItem(at: cut)
        let killed = try zoo(finetuneArgs(base: base, glue: glue, out: cut), env: ["ZOO_PAUSE_AT_STEP": "60"], signalWhen: (SIGKILL, "paused at step 60"))
        XCTAssertEqual(killed.code, SIGKILL, killed.stderr)
        try assertResumes(cut, steps: 60...60)

        // A different recipe is refused.
        let other = try zoo(finetuneArgs(base: base, glue: glue, out: cut) + ["--resume", "--lr", "2e-3"])
        XCTAssertEqual(other.code, 2)
        XCTAssertTrue(other.stderr.contains("same recipe"), other.stderr)
    }

    func testFineTunedModelLoadsInHFWithSameLogitsAndEvaluates() throws {
        let base = try Tiny.checkpoint(), glue = try Self.tinyGLUE()
        let out = try tempDir().appendingPathComponent("rte")
        let r = try zoo(finetuneArgs(base: base, glue: glue, out: out))
        XCTAssertEqual(r.code, 0, r.stderr)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertEqual(config["num_labels"] as? Int, 2)
        XCTAssertEqual((config["id2label"] as? [String: String])?["1"], "not_entailment")
        XCTAssertEqual(config["problem_type"] as? String, "single_label_classification")

        // The dev accuracy that finetune reported equals what `zoo eval` computes from the saved model.
        let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("metrics.json"))) as! [String: Any]
        let last = (metrics["epochs"] as! [[String: Any]]).last!
        let evalJSON = try tempDir().appendingPathComponent("e.json")
        let e = try zoo(["eval", "bert", "--task", "rte", "--weights", out.path, "--data", glue.path, "--json", evalJSON.path])
        XCTAssertEqual(e.code, 0, e.stderr)
        let ev = try JSONSerialization.jsonObject(with: Data(contentsOf: evalJSON)) as! [String: Any]
        XCTAssertEqual((ev["metrics"] as! [String: Double])["accuracy"]!, (last["dev"] as! [String: Double])["accuracy"]!, accuracy: 1e-9)
        let preds = try tempDir()
        let t = try zoo(["eval", "bert", "--task", "rte", "--weights", out.path, "--data", glue.path, "--split", "test", "--predictions-out", preds.path])
        XCTAssertEqual(t.code, 0, t.stderr)
        let lines = try String(contentsOf: preds.appendingPathComponent("RTE.tsv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 11)
        XCTAssertEqual(lines[0], "index\tprediction")

        // HF transformers loads it and gives the same logits (tolerance 1e-4).
        try assertSameLogitsAsHF(out)
    }

    /// MNLI has no train split here; the layout of the official one (12 columns, gold_label last)
    /// trains like any other, with three classes and the matched dev file.
    func testMNLISliceTrains() throws {
        let glue = try tempDir()
        try FileManager.default.createDirectory(at: glue.appendingPathComponent("MNLI"), withIntermediateDirectories: true)
        let labels = ["entailment", "neutral", "contradiction"]
        var train = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n"
        for i in 0..<40 { train += "\(i)\t1\t1e\tfiction\tx\tx\tx\tx\thello world\ta b \(i % 3 == 0 ? "as" : "bs")\t\(labels[i % 3])\t\(labels[i % 3])\n" }
        var dev = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
        for i in 0..<9 { dev += "\(i)\t1\t1e\tfiction\tx\tx\tx\tx\thello\tb a\t\(labels[i % 3])\tn\tn\tn\tn\t\(labels[i % 3])\n" }
        try train.write(to: glue.appendingPathComponent("MNLI/train.tsv"), atomically: true, encoding: .utf8)
        try dev.write(to: glue.appendingPathComponent("MNLI/dev_matched.tsv"), atomically: true, encoding: .utf8)
        let out = try tempDir().appendingPathComponent("mnli")
        let r = try zoo(["finetune", "--base", try Tiny.checkpoint().path, "--task", "MNLI-m", "--data", glue.path, "--out", out.path,
                         "--epochs", "1", "--batch", "8", "--threads", "1"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as! [String: Any]
        XCTAssertEqual(config["num_labels"] as? Int, 3)
        let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("metrics.json"))) as! [String: Any]
        XCTAssertEqual(metrics["steps"] as? Int, 5)
        XCTAssertNotNil(((metrics["epochs"] as! [[String: Any]])[0]["dev"] as! [String: Double])["accuracy"])
    }
}
