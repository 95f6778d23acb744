import Foundation
import XCTest
@testable import ZooCore

/// TinyBERT-style augmentation with neighbours from an embedding table.
final class AugmentTests: XCTestCase {
    func testNeighboursAndReplacement() throws {
        let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "alpha", "beta", "gamma", "delta", "omega", "##s", ".", "x"]
        let dir = try tempDir()
        try vocab.joined(separator: "\n").write(to: dir.appendingPathComponent("vocab.txt"), atomically: true, encoding: .utf8)
        let tok = try WordPieceTokenizer(vocabURL: dir.appendingPathComponent("vocab.txt"))
        // 2-d vectors: alpha ≈ beta (angle 0.1 rad), gamma ≈ delta, omega between; x and ## pieces never offered.
        let angles: [String: Float] = ["alpha": 0, "beta": 0.1, "gamma": 2, "delta": 2.1, "omega": 1, "x": 0.05, "##s": 0.02]
        let table = Tensor(shape: [vocab.count, 2])
        for (i, w) in vocab.enumerated() { let a = angles[w] ?? 3; table[2 * i] = cos(a) * 3; table[2 * i + 1] = sin(a) }
        // (cosine ignores the length: scaling x by 3 is irrelevant)
        let aug = Augmenter(tokenizer: tok, table: table.data, width: 2, texts: ["alpha gamma x .", "omega"], M: 2)
        let id = { (w: String) in tok.vocab[Array(w.utf8)]! }
        XCTAssertEqual(Set(aug.neighbours.keys), [id("alpha"), id("gamma"), id("omega")])   // words in the texts; x is one letter
        XCTAssertEqual(aug.neighbours[id("alpha")], [id("beta"), id("omega")])
        XCTAssertEqual(aug.neighbours[id("gamma")], [id("delta"), id("omega")])
        var rng = SplitMix64(seed: 1)
        XCTAssertEqual(aug.augment("Alpha gamma x.", p: 0, rng: &rng), "alpha gamma x .")
        for _ in 0..<20 {
            let out = aug.augment("alpha gamma x .", p: 1, rng: &rng).split(separator: " ").map(String.init)
            XCTAssertTrue(["beta", "omega"].contains(out[0]), out[0])
            XCTAssertTrue(["delta", "omega"].contains(out[1]), out[1])
            XCTAssertEqual(Array(out[2...]), ["x", "."])
        }
        let examples = [Example(index: 0, textA: "alpha", textB: "gamma", label: .classIndex(1)), Example(index: 1, textA: "omega", textB: nil, label: .classIndex(0))]
        let more = aug.augment(examples, copies: 3, p: 1, cap: 7, seed: 2)
        XCTAssertEqual(more.count, 7)                                      // 2 originals + 5 copies (the cap)
        XCTAssertEqual(Array(more.prefix(2)), examples)
        XCTAssertEqual(more.map { $0.label?.classIndex }, [1, 0, 1, 0, 1, 0, 1])   // rounds over all examples
        XCTAssertTrue(["beta", "omega"].contains(more[2].textA) && ["delta", "omega"].contains(more[2].textB!), "\(more[2])")
    }
}
