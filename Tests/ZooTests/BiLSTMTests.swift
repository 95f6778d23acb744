import Foundation
import XCTest
@testable import DISTILL
@testable import ZooCore

/// The distilled BiLSTM student (its LSTM kernels are checked against PyTorch in LSTMTests).
final class BiLSTMTests: XCTestCase {
    /// A tiny pair-task student and a batch of two pairs of different lengths (Tiny's vocabulary).
    func tiny(pair: Bool) throws -> (BiLSTM, Batch) {
        let config = BiLSTM.Config(vocabSize: 12, embeddingSize: 6, hiddenSize: 5, classifierSize: 7, numLabels: 3, pair: pair, maxLength: 16)
        var rng = SplitMix64(seed: 3)
        let table = (0..<12 * 6).map { _ in rng.normal() }
        let model = BiLSTM(config: config, table: table, seed: 11)
        let tok = try Checkpoint(dir: try Tiny.checkpoint()).tokenizer()
        let batch = pair ? Batch([tok.encode("hello world a", "b a .", maxLength: 16), tok.encode("as", "world hello hello b", maxLength: 16)])
                         : Batch([tok.encode("hello world a", maxLength: 16), tok.encode("as . b", maxLength: 16)])
        return (model, batch)
    }

    /// The whole student's backward (classifier, ReLU layer, pair features, both LSTM directions,
    /// word vectors) equals central finite differences of Σ w·logits for every parameter
    /// (ε = 1e-3; within 1e-3 + 1 % of the difference, float arithmetic).
    func testGradientsMatchFiniteDifferences() throws {
        for pair in [true, false] {
            let (model, batch) = try tiny(pair: pair)
            var rng = SplitMix64(seed: 5)
            let w = (0..<batch.size * 3).map { _ in rng.normal() }
            func loss() -> Float { zip(model.record(batch).logits, w).map(*).reduce(0, +) }
            model.store.grads!.data.update(repeating: 0, count: model.store.count)
            model.backward(model.record(batch), dlogits: w)
            var checked = 0
            for s in model.store.slots {
                let v = model.store.view(s.name)
                for i in 0..<s.count where v.grad![i] != 0 || s.name != "embedding.weight" {
                    let x = v.value[i]
                    v.value[i] = x + 1e-3; let up = loss()
                    v.value[i] = x - 1e-3; let down = loss()
                    v.value[i] = x
                    let fd = (up - down) / 2e-3
                    XCTAssertEqual(v.grad![i], fd, accuracy: 1e-3 + 1e-2 * abs(fd), "pair \(pair): \(s.name)[\(i)]")
                    checked += 1
                }
            }
            XCTAssertGreaterThan(checked, pair ? 800 : 600)
        }
    }

    /// Each example's logits do not depend on the rest of the batch (padding, other lengths); the
    /// hidden states are zero at [CLS], [SEP] and padding; saved and loaded, the same logits.
    func testBatchIndependenceAndRoundTrip() throws {
        let (model, batch) = try tiny(pair: true)
        let both = try model.logits(batch)
        let tok = try Checkpoint(dir: try Tiny.checkpoint()).tokenizer()
        let alone = try model.logits(Batch([tok.encode("as", "world hello hello b", maxLength: 16)]))
        for j in 0..<3 { XCTAssertEqual(both[3 + j], alone[j], accuracy: 1e-6) }
        let h = try model.forward(batch), W = model.width, S = batch.seqLen
        let special = [0, 4, 8] + Array(9..<S)          // row 0: [CLS] hello world a [SEP] b a . [SEP] <pad>…
        for p in special { XCTAssertEqual((0..<W).map { h[p * W + $0] }, [Float](repeating: 0, count: W), "position \(p)") }
        XCTAssertNotEqual(h[1 * W], 0)
        let dir = try tempDir()
        try model.save(to: dir, vocab: try Tiny.checkpoint().appendingPathComponent("vocab.txt"))
        let loaded = try BiLSTM(directory: dir)
        XCTAssertEqual(loaded.config, model.config)
        XCTAssertEqual(try loaded.logits(batch).row(1), both.row(1))
        try "{\"model_type\": \"bert\"}".write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try BiLSTM(directory: dir)) { XCTAssertTrue("\($0)".contains("not a bilstm-soft config"), "\($0)") }
    }
}
