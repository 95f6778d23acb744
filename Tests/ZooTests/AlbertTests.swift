import CKernels
import Foundation
import XCTest
@testable import ALBERT
@testable import ZooCore

/// ALBERT from a trained BERT: the embedding basis, and `zoo albertize` end to end (HF loads the
/// result with the same logits; the `albert` variant evaluates it).
final class AlbertTests: XCTestCase {
    /// Tables whose rows lie in an E-dimensional subspace are reproduced exactly by the basis
    /// (T·Uᵀ·U = T within 1e-4 of the largest entry) with all of the squared norm kept; U's rows are
    /// orthonormal (1e-5).
    func testBasisOfLowRankTables() throws {
        let (H, E) = (24, 5)
        var rng = SplitMix64(seed: 3)
        let mix = (0..<E * H).map { _ in rng.normal() }
        func table(_ n: Int) -> Tensor {
            let t = Tensor(shape: [n, H])
            for i in 0..<n { let c = (0..<E).map { _ in rng.normal() }; for h in 0..<H { t[i * H + h] = (0..<E).reduce(0) { $0 + c[$1] * mix[$1 * H + h] } } }
            return t
        }
        let store = ParameterStore(spec: .bert(vocab: 60, hidden: H, layers: 1, heads: 2, ffn: 8, positions: 20), trainable: false)
        let names = store.spec.family.names, tables = [table(60), table(20), table(2)]
        for (name, t) in zip([names.word, names.position, names.tokenType!], tables) { store.view(name).value.update(from: t.data, count: t.count) }
        let (u, kept) = try Albertize.basis([names.word, names.position, names.tokenType!].map { store.view($0) }, rows: [60, 20, 2], H: H, E: E)
        XCTAssertEqual(kept, 1, accuracy: 1e-5)
        for a in 0..<E { for b in 0..<E {
            XCTAssertEqual((0..<H).reduce(Float(0)) { $0 + u[a * H + $1] * u[b * H + $1] }, a == b ? 1 : 0, accuracy: 1e-5)
        } }
        for t in tables {
            let rows = t.count / H, scale = (0..<t.count).map { abs(t[$0]) }.max()!
            for i in 0..<rows {
                let c = (0..<E).map { e in (0..<H).reduce(Float(0)) { $0 + t[i * H + $1] * u[e * H + $1] } }
                for h in 0..<H { XCTAssertEqual((0..<E).reduce(0) { $0 + c[$1] * u[$1 * H + h] }, t[i * H + h], accuracy: 1e-4 * scale) }
            }
        }
    }

    /// `zoo albertize` as a user runs it on a fine-tuned 4-layer BERT: an HF ALBERT checkpoint with
    /// two shared groups and a 4-wide embedding, the parameter count of that shape, each group started
    /// from its lowest-loss candidate, albertize.json's dev score equal to `zoo eval albert`'s.
    func testAlbertizeEndToEnd() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 64), tuned = try Tiny.fineTuned4Layers(glue)
        let out = try tempDir().appendingPathComponent("albert")
        var r = try zoo(["albertize", "--weights", tuned.path, "--share", "groups:2", "--embedding-size", "4", "--recover-epochs", "1", "--batch", "8",
                     "--candidate-examples", "32", "--data", glue.path, "--out", out.path, "--threads", "2"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let ckpt = try Checkpoint(dir: out)
        XCTAssertEqual(ckpt.spec.family, .albert)
        XCTAssertEqual(ckpt.spec.embedding, 4)
        XCTAssertEqual(ckpt.spec.layers.map(\.group), [0, 0, 1, 1])
        // word/position/type tables at E, LayerNorm(E), projection E→H, two layers, pooler, classifier.
        let layer = 3 * (16 * 16 + 16) + (16 * 16 + 16) + 2 * 16 + (32 * 16 + 32) + (16 * 32 + 16) + 2 * 16
        XCTAssertEqual(ckpt.spec.parameterCount, (12 + 16 + 2) * 4 + 2 * 4 + (16 * 4 + 16) + 2 * layer + (16 * 16 + 16) + (2 * 16 + 2))
        let record = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("albertize.json"))) as! [String: Any]
        let tried = record["candidates"] as! [[String: Any]], chosen = record["chosen"] as! [String]
        XCTAssertEqual(tried.count, 6)   // per group: the mean and each of its two layers
        for g in 0..<2 {
            let mine = tried.filter { $0["group"] as! Int == g }
            XCTAssertEqual(mine.map { $0["candidate"] as! String }, ["mean", "layer \(2 * g)", "layer \(2 * g + 1)"])
            XCTAssertEqual(mine.min { ($0["loss"] as! Double) < ($1["loss"] as! Double) }!["candidate"] as! String, chosen[g])
        }
        let json = try tempDir().appendingPathComponent("eval.json")
        r = try zoo(["eval", "albert", "--task", "rte", "--weights", out.path, "--data", glue.path, "--json", json.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [String: Any])["score"] as! Double, record["dev"] as! Double)
        try assertSameLogitsAsHF(out)

        r = try zoo(["eval", "albert", "--task", "rte", "--weights", tuned.path, "--data", glue.path])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.stderr.contains("not albert"), r.stderr)
        r = try zoo(["albertize", "--weights", tuned.path, "--share", "groups:3", "--data", glue.path, "--out", out.path])
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.stderr.contains("groups:G needs G dividing"), r.stderr)
    }

    /// --general-epochs: the shared layer first learns the dense model's embedding output, hidden
    /// states and attention scores on unlabelled sentences (--corpus): each term logged per step
    /// and the hidden-state loss falling over three epochs; --corpus alone is refused.
    func testGeneralStageOnACorpus() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 32), tuned = try Tiny.fineTuned4Layers(glue)
        let corpus = try tempDir().appendingPathComponent("corpus.txt")
        try (0..<64).map { ["hello world a", "b a .", "as bs hello", "world . a b"][$0 % 4] + String(repeating: " a", count: $0 % 5) }
            .joined(separator: "\n").write(to: corpus, atomically: true, encoding: .utf8)
        let out = try tempDir().appendingPathComponent("albert")
        var r = try zoo(["albertize", "--weights", tuned.path, "--embedding-size", "4", "--general-epochs", "3", "--corpus", corpus.path, "--lr", "1e-3",
                         "--recover-epochs", "0", "--batch", "8", "--candidate-examples", "16", "--data", glue.path, "--out", out.path, "--threads", "2"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("general stage: 64 of 64 sentences (\(corpus.path))"), r.stderr)
        let record = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("albertize.json"))) as! [String: Any]
        let terms = record["general_loss_terms"] as! [String: [Double]]
        XCTAssertEqual(Set(terms.keys), ["embedding", "hidden", "attention"])
        let hidden = terms["hidden"]!
        XCTAssertEqual(hidden.count, 24)                                    // 64 sentences in batches of 8, three epochs
        XCTAssertLessThan(hidden.suffix(4).reduce(0, +), 0.9 * hidden.prefix(4).reduce(0, +), "\(hidden)")
        XCTAssertNotNil(record["dev_after_general"] as? Double)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent(".general").path))

        r = try zoo(["albertize", "--weights", tuned.path, "--corpus", corpus.path, "--data", glue.path, "--out", try tempDir().path])
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.stderr.contains("--corpus is read by the general stage: give --general-epochs N"), r.stderr)
    }

    /// The `albert` variant runs a real HF ALBERT checkpoint and has a geometry of its own (shared).
    func testAlbertVariant() throws {
        let dir = Paths.reference.appendingPathComponent("families/albert/model")
        try require(dir.appendingPathComponent("config.json"), "make reference")
        var r = try zoo(["embed", "albert", "--weights", dir.path], stdin: Data("hello world\n".utf8))
        XCTAssertEqual(r.code, 0, r.stderr)
        r = try zoo(["bench", "albert", "--geometry", "tinybert-4l", "--batch", "1", "--seq", "8", "--iters", "1", "--warmup", "0", "--json"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let spec = Albertize.spec(Geometry.tinybert4l.spec, embedding: 128, groups: 1)
        XCTAssertEqual(spec.groups.count, 1)
        XCTAssertEqual(spec.flops(batch: 1, seq: 8) - 2 * 8 * 128 * 312, Geometry.tinybert4l.spec.flops(batch: 1, seq: 8), accuracy: 1)
    }
}
