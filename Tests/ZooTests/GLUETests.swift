import Foundation
import XCTest
@testable import ZooCore

/// The GLUE data layer on the real files, the official metrics against sklearn/scipy, the
/// leaderboard writer, and `zoo score` / `zoo eval` end to end.
final class GLUETests: XCTestCase {
    func testEveryTaskParsesWithSourcesRowCounts() throws {
        try require(Paths.glue.appendingPathComponent("SST-2/dev.tsv"), "set ZOO_GLUE_DIR to a GLUE directory")
        // Row counts from shared/glue/SOURCES.md.
        let expected: [(String, Split, Int)] = [
            ("cola", .train, 8551), ("cola", .dev, 1043), ("cola", .test, 1063), ("sst2", .train, 67349), ("sst2", .dev, 872),
            ("sst2", .test, 1821), ("mrpc", .train, 3668), ("mrpc", .dev, 408), ("mrpc", .test, 1725), ("stsb", .train, 5749),
            ("stsb", .dev, 1500), ("stsb", .test, 1379), ("mnli-m", .dev, 9815), ("mnli-mm", .dev, 9832), ("qnli", .dev, 5463),
            ("qnli", .test, 5463), ("rte", .train, 2490), ("rte", .dev, 277), ("rte", .test, 3000), ("wnli", .train, 635),
            ("wnli", .dev, 71), ("wnli", .test, 146), ("ax", .test, 1104),
        ]
        for (name, split, count) in expected {
            let ex = try GLUETask.named(name).load(split, from: Paths.glue)
            XCTAssertEqual(ex.count, count, "\(name) \(split)")
            XCTAssertEqual(ex.allSatisfy { split == .test ? $0.label == nil : $0.label != nil }, true, "\(name) \(split) labels")
        }
        let mnli = try GLUETask.named("MNLI-m").load(.dev, from: Paths.glue)
        XCTAssertEqual(mnli.filter { $0.label == .classIndex(0) }.count, 3479)   // entailment, per SOURCES.md
        let mrpc = try GLUETask.named("mrpc").load(.dev, from: Paths.glue)
        XCTAssertNotNil(mrpc[0].textB)
        XCTAssertFalse(mrpc[0].textA.hasPrefix("\u{FEFF}"))
        let cola = try GLUETask.named("CoLA").load(.dev, from: Paths.glue)
        XCTAssertEqual(cola[0].textA, "The sailors rode the breeze clear of the rocks.")
        let stsb = try GLUETask.named("STS-B").load(.dev, from: Paths.glue)
        XCTAssertEqual(stsb[0].label, .score(5.0))
    }

    func testTaskNames() throws {
        for (spelling, name) in [("SST-2", "sst2"), ("sts-b", "stsb"), ("MNLI-m", "mnli-m"), ("mnli-MM", "mnli-mm"), ("QQP", "qqp"), ("CoLA", "cola")] {
            XCTAssertEqual(try GLUETask.named(spelling).name, name)
        }
        XCTAssertThrowsError(try GLUETask.named("squad"))
    }

    func testMalformedRowNamesFileAndLine() throws {
        let task = try GLUETask.named("rte")
        XCTAssertThrowsError(try task.parse("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\n", split: .dev, path: "x/RTE/dev.tsv")) {
            XCTAssertEqual("\($0)", "x/RTE/dev.tsv: line 3: expected 4 tab-separated fields, found 3")
        }
        XCTAssertThrowsError(try task.parse("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n", split: .dev, path: "f")) {
            XCTAssertTrue("\($0)".contains("line 2: label 'maybe'"))
        }
    }

    /// Hand-checked fixtures: sklearn matthews_corrcoef([1,1,0,0,1],[1,0,0,1,1]) = 1/6,
    /// f1 = 2/3, scipy spearmanr([1,2,2,3],[1,3,2,4]) = 0.9486832980505138 (ties averaged).
    func testMetricDefinitions() {
        XCTAssertEqual(Metrics.matthews([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]), 1.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(Metrics.f1([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]), 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(Metrics.spearman([1, 2, 2, 3], [1, 3, 2, 4]), 0.9486832980505138, accuracy: 1e-12)
        XCTAssertEqual(Metrics.ranks([10, 20, 20, 5]), [2, 3.5, 3.5, 1])
        XCTAssertEqual(Metrics.matthews([0, 0, 0], [0, 1, 0]), 0)   // undefined -> 0, like sklearn
        XCTAssertEqual(Metrics.f1([0, 0], [0, 0]), 0)
    }

    /// `zoo score` equals sklearn / scipy (tools/hf_reference.py metrics) on random predictions for
    /// every task with dev labels here, to 1e-9.
    func testScoreCommandMatchesSklearnScipy() throws {
        let dir = Paths.reference.appendingPathComponent("metrics")
        try require(dir.appendingPathComponent("expected.json"), "run `python tools/hf_reference.py metrics`")
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("expected.json"))) as! [String: [String: Any]]
        XCTAssertGreaterThanOrEqual(expected.count, 9)
        for (task, want) in expected {
            let r = try zoo(["score", "--task", task, "--predictions", dir.appendingPathComponent("\(task).tsv").path, "--data", Paths.glue.path, "--json"])
            XCTAssertEqual(r.code, 0, r.stderr)
            let got = try JSONSerialization.jsonObject(with: r.stdout) as! [String: Any]
            let gm = got["metrics"] as! [String: Double], wm = want["metrics"] as! [String: Double]
            XCTAssertEqual(Set(gm.keys), Set(wm.keys), task)
            for (k, v) in wm { XCTAssertEqual(gm[k]!, v, accuracy: 1e-9, "\(task) \(k)") }
            XCTAssertEqual(got["score"] as! Double, want["score"] as! Double, accuracy: 1e-9, task)
        }
    }

    func testLeaderboardRoundTripAndGLUEScore() throws {
        let dir = try tempDir()
        let rte = try GLUETask.named("rte"), stsb = try GLUETask.named("stsb")
        let url = try Leaderboard.write(rte, predictions: [(0, 1), (1, 0)], to: dir)
        XCTAssertEqual(url.lastPathComponent, "RTE.tsv")
        XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), "index\tprediction\n0\tnot_entailment\n1\tentailment\n")
        XCTAssertEqual(try Leaderboard.read(rte, url: url, count: 2), [1, 0])
        XCTAssertEqual(Leaderboard.format(stsb, predictions: [(0, 3.14159)]), "index\tprediction\n0\t3.142\n")
        XCTAssertEqual(Leaderboard.fileName(try GLUETask.named("mnli-mm")), "MNLI-mm.tsv")
        XCTAssertThrowsError(try Leaderboard.read(rte, url: url, count: 3)) { XCTAssertTrue("\($0)".contains("no prediction for index 2")) }
        let results = [
            TaskResult(task: try GLUETask.named("mnli-m"), predictions: [0, 1], labels: [0, 1]),      // 100
            TaskResult(task: try GLUETask.named("mnli-mm"), predictions: [0, 1], labels: [0, 0]),     // 50
            TaskResult(task: rte, predictions: [0, 0], labels: [0, 0]),                                // 100
        ]
        let (score, convention) = glueScore(results)
        XCTAssertEqual(score, (75 + 100) / 2, accuracy: 1e-12)
        XCTAssertTrue(convention.contains("MNLI = mean of -m and -mm"))
    }

    /// MRPC's split rebuilt from Microsoft's files gives the release's train/dev/test byte for byte.
    func testMRPCSplitReproducesRelease() throws {
        let m = Paths.glue.appendingPathComponent("MRPC")
        try require(m.appendingPathComponent("msr_paraphrase_train.txt"), "set ZOO_GLUE_DIR to a GLUE directory with MRPC sources")
        let out = try tempDir()
        try MRPCSplit.build(trainTxt: m.appendingPathComponent("msr_paraphrase_train.txt"), testTxt: m.appendingPathComponent("msr_paraphrase_test.txt"),
                            devIds: m.appendingPathComponent("dev_ids.tsv"), into: out)
        for f in ["train.tsv", "dev.tsv", "test.tsv"] {
            XCTAssertEqual(try Fetch.sha256(out.appendingPathComponent(f)), try Fetch.sha256(m.appendingPathComponent(f)), f)
        }
    }

    /// Zero-shot STS-B dev Spearman equal to the same computation in PyTorch within 0.1 points.
    func testZeroShotSTSBMatchesPyTorch() throws {
        try require(Paths.weights.appendingPathComponent("model.safetensors"), "run `zoo weights fetch minilm-l6`")
        let refURL = Paths.reference.appendingPathComponent("stsb.json")
        try require(refURL, "run `python tools/hf_reference.py stsb`")
        let ref = try JSONSerialization.jsonObject(with: Data(contentsOf: refURL)) as! [String: Double]
        let out = try tempDir().appendingPathComponent("eval.json")
        let r = try zoo(["eval", "bert", "--task", "stsb", "--zero-shot", "--weights", Paths.weights.path, "--data", Paths.glue.path, "--json", out.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        let got = try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as! [String: Any]
        let metrics = got["metrics"] as! [String: Double]
        XCTAssertEqual(metrics["spearman"]!, ref["spearman"]!, accuracy: 0.1)
        XCTAssertEqual(metrics["pearson"]!, ref["pearson"]!, accuracy: 0.1)
        XCTAssertEqual(got["examples"] as? Int, 1500)
        XCTAssertEqual(got["variant"] as? String, "bert")
        XCTAssertEqual(got["split"] as? String, "dev")
        XCTAssertNotNil(got["seconds"] as? Double)
    }
}
