import BERT
import CKernels
import Foundation
import XCTest
@testable import ZooCore

/// all-MiniLM-L6-v2 in the zoo against HF transformers (tools/hf_reference.py encoder): last hidden
/// states and both poolings within 1e-4 max abs, on 60 inputs, at every SIMD level the CPU runs and
/// 1 and 2 threads, one sequence at a time and in one dynamically padded batch.
final class EncoderParityTests: XCTestCase {
    static let tolerance: Float = 1e-4

    func testMiniLMMatchesHuggingFace() throws {
        try require(Paths.weights.appendingPathComponent("model.safetensors"), "run `zoo weights fetch minilm-l6`")
        let refURL = Paths.reference.appendingPathComponent("encoder.safetensors")
        try require(refURL, "run `python tools/hf_reference.py encoder` (tools/test.sh does)")
        let ref = try SafeTensors(url: refURL)
        let model = try BertNetwork(checkpoint: try Checkpoint(dir: Paths.weights))
        let n = ref.names.filter { $0.hasPrefix("hidden.") }.count
        XCTAssertGreaterThanOrEqual(n, 50)
        let encodings = try (0..<n).map { WordPieceTokenizer.Encoding(inputIds: try ref.int32s("ids.\($0)"), tokenTypeIds: try ref.int32s("types.\($0)")) }
        let H = model.spec.hidden
        try forEachSIMD { level in
            for threads in [1, 2] {
                zk_set_threads(Int32(threads))
                var worst: (Float, Float, Float) = (0, 0, 0)
                for i in 0..<n {
                    let batch = Batch([encodings[i]])
                    let h = try model.forward(batch)
                    let want = try ref.tensor("hidden.\(i)")
                    XCTAssertEqual(h.count, want.count)
                    worst.0 = max(worst.0, maxAbsDiff(h, want))
                    worst.1 = max(worst.1, maxAbsDiff(try model.embed(batch, pooling: .mean), try ref.tensor("mean.\(i)")))
                    worst.2 = max(worst.2, maxAbsDiff(try model.embed(batch, pooling: .cls), try ref.tensor("cls.\(i)")))
                }
                XCTAssertLessThan(worst.0, Self.tolerance, "hidden states, \(level), \(threads) threads")
                XCTAssertLessThan(worst.1, Self.tolerance, "mean pooling, \(level), \(threads) threads")
                XCTAssertLessThan(worst.2, Self.tolerance, "cls pooling, \(level), \(threads) threads")

                // All inputs in one padded batch: real tokens unchanged by the padding of others.
                let batch = Batch(encodings)
                let h = try model.forward(batch)
                var worstPadded: Float = 0
                for i in 0..<n {
                    let want = try ref.tensor("hidden.\(i)")
                    worstPadded = max(worstPadded, maxAbsDiff(h, want, offset: i * batch.seqLen * H))
                }
                XCTAssertLessThan(worstPadded, Self.tolerance, "padded batch, \(level), \(threads) threads")
            }
        }
    }

    /// The chunk size only schedules work: one sequence per chunk, the default, and the whole batch
    /// in one chunk give the same hidden states (the GEMM kernels sum each row in the same order
    /// whatever the number of rows, so the tolerance is 1e-6 for safety, not for expected drift).
    func testChunkSizeDoesNotChangeOutput() throws {
        let model = try BertNetwork(packing: randomStore(Geometry.tinybert4l.spec, seed: 3))
        let batch = Batch((0..<9).map { i in
            let n = 5 + 7 * i
            return WordPieceTokenizer.Encoding(inputIds: (0..<n).map { Int32(101 + ($0 * 37 + i) % 20000) }, tokenTypeIds: [Int32](repeating: 0, count: n))
        })
        let reference = try model.forward(batch)
        for chunk in [1, 64, 100_000] {
            model.chunkTokens = chunk
            XCTAssertLessThanOrEqual(maxAbsDiff(try model.forward(batch), reference, offset: 0), 1e-6, "chunk \(chunk)")
        }
    }

    func testRejectsOutOfVocabularyIds() throws {
        let model = try BertNetwork(packing: randomStore(Geometry.tinybert4l.spec, seed: 1))
        let bad = Batch([WordPieceTokenizer.Encoding(inputIds: [101, 999_999, 102], tokenTypeIds: [0, 0, 0])])
        XCTAssertThrowsError(try model.forward(bad)) { XCTAssertTrue("\($0)".contains("outside the vocabulary")) }
    }
}
