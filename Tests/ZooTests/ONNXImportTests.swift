import BERT
import Foundation
import XCTest
@testable import ZooCore

/// paraphrase-MiniLM-L3-v2, which exists here only as an ONNX export: `zoo weights fetch
/// paraphrase-minilm-l3` converts it (ONNXModel, ParameterStore.importBERT), and the converted
/// checkpoint must compute what onnxruntime computes on the original file
/// (tools/hf_reference.py onnx). Malformed ONNX files are errors naming the file.
final class ONNXImportTests: XCTestCase {
    static let weights = Paths.root.appendingPathComponent("weights/paraphrase-minilm-l3")

    /// Last hidden states within 1e-4 max abs of onnxruntime on 60 inputs (token types all 0: the
    /// export has no token-type input), and zero-shot STS-B dev within 0.05 points of onnxruntime's.
    func testParaphraseL3MatchesOnnxRuntime() throws {
        try require(Self.weights.appendingPathComponent("model.safetensors"), "run `zoo weights fetch paraphrase-minilm-l3` (make weights)")
        let refURL = Paths.reference.appendingPathComponent("onnx_l3.safetensors")
        try require(refURL, "run `python tools/hf_reference.py onnx`")
        let ref = try SafeTensors(url: refURL)
        let ckpt = try Checkpoint(dir: Self.weights)
        XCTAssertEqual(ckpt.spec.layers.count, 3)
        XCTAssertEqual(ckpt.spec.layers[0].heads, 12)
        let model = try BertNetwork(checkpoint: ckpt)
        let n = ref.names.filter { $0.hasPrefix("hidden.") }.count
        XCTAssertEqual(n, 60)
        var worst: Float = 0
        for i in 0..<n {
            let ids = try ref.int32s("ids.\(i)")
            let h = try model.forward(Batch([WordPieceTokenizer.Encoding(inputIds: ids, tokenTypeIds: [Int32](repeating: 0, count: ids.count))]))
            let want = try ref.tensor("hidden.\(i)")
            XCTAssertEqual(h.count, want.count)
            worst = max(worst, maxAbsDiff(h, want))
        }
        print("paraphrase-minilm-l3 vs onnxruntime: worst |hidden − ORT| \(worst)")
        XCTAssertLessThan(worst, 1e-4)

        let stsb = try JSONSerialization.jsonObject(with: Data(contentsOf: Paths.reference.appendingPathComponent("onnx_l3_stsb.json"))) as! [String: Double]
        let out = try tempDir().appendingPathComponent("eval.json")
        let r = try zoo(["eval", "bert", "--task", "stsb", "--zero-shot", "--weights", Self.weights.path, "--data", Paths.glue.path, "--json", out.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        let metrics = (try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as! [String: Any])["metrics"] as! [String: Double]
        XCTAssertEqual(metrics["spearman"]!, stsb["spearman"]!, accuracy: 0.05)
        XCTAssertEqual(metrics["pearson"]!, stsb["pearson"]!, accuracy: 0.05)
        // The vocabulary is minilm-l6's (the wheel has none): a wrong one would not score like this.
        XCTAssertGreaterThan(metrics["spearman"]!, 80)
    }

    /// A random 2-layer BertModel exported by torch.onnx.export (tools/hf_reference.py onnx): the
    /// imported model's last hidden states within 1e-5 of PyTorch's, its LayerNorm epsilon (1e-7,
    /// not BERT's default) read from the graph.
    func testTransformersExportMatchesPyTorch() throws {
        let refURL = Paths.reference.appendingPathComponent("tiny_bert.safetensors")
        try require(refURL, "run `python tools/hf_reference.py onnx`")
        let store = try ParameterStore.importBERT(try ONNXModel(url: Paths.reference.appendingPathComponent("tiny_bert.onnx")), prefix: "", heads: 2)
        XCTAssertEqual(store.spec.layers.count, 2)
        XCTAssertEqual(store.spec.layerNormEps, 1e-7)
        let ref = try SafeTensors(url: refURL)
        let ids = try ref.int32s("ids")
        let h = try BertNetwork(packing: store).forward(Batch([WordPieceTokenizer.Encoding(inputIds: ids, tokenTypeIds: [Int32](repeating: 0, count: ids.count))]))
        XCTAssertLessThan(maxAbsDiff(h, try ref.tensor("hidden")), 1e-5)
    }

    // MARK: malformed files

    /// Protobuf encoding, for building small ONNX files by hand.
    static func varint(_ v: UInt64) -> [UInt8] {
        var v = v, out: [UInt8] = []
        while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        return out + [UInt8(v)]
    }
    static func field(_ n: Int, _ payload: [UInt8]) -> [UInt8] { varint(UInt64(n << 3 | 2)) + varint(UInt64(payload.count)) + payload }
    static func field(_ n: Int, _ s: String) -> [UInt8] { field(n, Array(s.utf8)) }
    static func int(_ n: Int, _ v: Int) -> [UInt8] { varint(UInt64(n << 3)) + varint(UInt64(v)) }

    /// A float TensorProto: dims, data_type 1, name, raw_data of `values`.
    static func tensor(_ name: String, dims: [Int], values: [Float]) -> [UInt8] {
        let raw = values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
        return dims.flatMap { int(1, $0) } + int(2, 1) + field(8, name) + field(9, raw)
    }
    static func model(_ initializers: [[UInt8]]) -> [UInt8] {
        int(1, 8) + field(7, initializers.flatMap { field(5, $0) })   // ir_version, graph
    }

    func load(_ bytes: [UInt8]) throws -> (URL, Result<ONNXModel, Error>) {
        let url = try tempDir().appendingPathComponent("model.onnx")
        try Data(bytes).write(to: url)
        return (url, Result { try ONNXModel(url: url) })
    }

    func testReadsInitializers() throws {
        let (_, m) = try load(Self.model([Self.tensor("w", dims: [2, 3], values: [1, 2, 3, 4, 5, 6])]))
        let w = try XCTUnwrap(try m.get().initializers["w"])
        XCTAssertEqual(w.shape, [2, 3])
        XCTAssertEqual((0..<6).map { w[$0] }, [1, 2, 3, 4, 5, 6])
    }

    func testMalformedFilesNameTheFileAndProblem() throws {
        let good = Self.model([Self.tensor("w", dims: [2, 3], values: [1, 2, 3, 4, 5, 6])])
        let cases: [([UInt8], String)] = [
            ([], "not an ONNX model (0 graphs; expected 1)"),
            (Array("hello world, not protobuf".utf8), "malformed ONNX"),
            (Array(good.dropLast(5)), "runs past the end of its message (truncated file?)"),
            (Self.model([Self.tensor("w", dims: [2, 3], values: [1, 2, 3])]), "tensor 'w': 12 bytes of data for dims [2, 3]"),
            (Self.model([Self.tensor("w", dims: [1 << 40], values: [])]), "tensor 'w' has dims"),
            (Self.model([Self.tensor("w", dims: [1 << 20, 1 << 20, 1 << 20, 1 << 20], values: [1])]), "tensor 'w': 4 bytes of data for dims"),
            (Self.model([Self.tensor("w", dims: [2], values: [1, 2]) + Self.int(14, 1)]), "external file (not supported)"),
            (Self.int(1, 8) + [0x7B], "wire type 3"),
        ]
        for (bytes, want) in cases {
            let (url, m) = try load(bytes)
            XCTAssertThrowsError(try m.get(), want) { e in
                XCTAssertTrue("\(e)".contains(url.path) && "\(e)".contains(want), "\(e)")
            }
        }
        // A well-formed ONNX file without a BERT encoder in it.
        let (url, m) = try load(good)
        XCTAssertThrowsError(try ParameterStore.importBERT(try m.get(), prefix: "", heads: 12)) { e in
            XCTAssertTrue("\(e)".contains(url.path) && "\(e)".contains("no BERT embeddings named 'embeddings.word_embeddings.weight'"), "\(e)")
        }
    }
}
