import Foundation
import XCTest
@testable import ZooCore

/// The training loop outside fine-tuning: another `TrainingStep` on another data source.
final class TrainerTests: XCTestCase {
    /// Sentences from a corpus file and a loss injected at the logits tap (mean squared logit, as a
    /// distillation term would inject its gradient): the trainer runs it, logs the term per step,
    /// checkpoints it, and the loss goes down.
    final class ShrinkLogits: TrainingStep {
        let network: Network<ParamLinear>
        let sentences: [WordPieceTokenizer.Encoding]
        init(_ ckpt: Checkpoint, _ sentences: [String]) throws {
            let store = ParameterStore(spec: ckpt.spec.withHead(numLabels: 2))
            try store.load(ckpt, seed: 3)
            network = try Network(spec: store.spec, reader: store)
            let tok = try ckpt.tokenizer()
            self.sentences = sentences.map { tok.encode($0, nil, maxLength: 16) }
        }
        var stores: [ParameterStore] { [network.store!] }
        var exampleCount: Int { sentences.count }
        func step(_ examples: [Int], dropoutSeed: UInt64) throws -> (loss: Float, terms: [String: Float], tokens: Int) {
            let batch = Batch(examples.map { sentences[$0] })
            let act = try network.record(batch, dropoutSeed: dropoutSeed)
            let n = batch.size * 2
            let g = Tensor(shape: [n])
            var loss: Float = 0
            for i in 0..<n { loss += act.logits[i] * act.logits[i] / Float(n); g[i] = 2 * act.logits[i] / Float(n) }
            network.clearLogitGradient(act)
            network.backward(act, batch: batch, extra: [.logits: UnsafePointer(g.data)])
            return (loss, ["logits_mse": loss], act.T)
        }
        func evaluate() throws -> TaskResult? { nil }
    }

    func testCustomStepOnCorpus() throws {
        let file = try tempDir().appendingPathComponent("corpus.txt")
        var rng = SplitMix64(seed: 2)
        let words = ["hello", "world", "a", "b", "as", "."]
        var text = (0..<40).map { _ in (0..<(2 + Int(rng.next() % 6))).map { _ in words[Int(rng.next() % 6)] }.joined(separator: " ") }.joined(separator: "\r\n")
        text += "\n\n"
        try text.write(to: file, atomically: true, encoding: .utf8)
        let sentences = try Corpus.load(file)
        XCTAssertEqual(sentences.count, 40)
        let work = try ShrinkLogits(try Checkpoint(dir: try Tiny.checkpoint()), sentences)
        var o = TrainOptions()
        (o.epochs, o.batch, o.lr, o.saveEvery) = (4, 8, 1e-2, 0)
        let out = try tempDir()
        let trainer = try Trainer(work, options: o, out: out)
        var logged: [String] = []
        try trainer.run(log: { logged.append($0) })
        XCTAssertEqual(trainer.step, 20)
        XCTAssertEqual(trainer.termCurves["logits_mse"]?.count, 20)
        XCTAssertEqual(logged.count, 4)
        XCTAssertTrue(logged[0].hasPrefix("epoch 1/4: mean loss"), logged[0])
        let curve = trainer.lossCurve
        XCTAssertLessThan(curve.suffix(5).reduce(0, +), 0.5 * curve.prefix(5).reduce(0, +), "loss \(curve)")
        XCTAssertNoThrow(try SafeTensors(url: trainer.checkpointURL))
    }

    func testCorpusErrorsNameFileAndLine() throws {
        let dir = try tempDir()
        let bad = dir.appendingPathComponent("bad.txt")
        try Data("one\ntwo\nthr\u{FF}ee\n".utf8.map { $0 } + [0xFF, 0x0A]).write(to: bad)
        XCTAssertThrowsError(try Corpus.load(bad)) { XCTAssertEqual("\($0)", "\(bad.path): line 4: invalid UTF-8") }
        let empty = dir.appendingPathComponent("empty.txt")
        try Data("\n  \n".utf8).write(to: empty)
        XCTAssertThrowsError(try Corpus.load(empty)) { XCTAssertTrue("\($0)".contains("no sentences"), "\($0)") }
        XCTAssertThrowsError(try Corpus.load(dir.appendingPathComponent("missing.txt"))) { XCTAssertTrue("\($0)".contains("missing.txt: cannot read"), "\($0)") }
    }
}
