import Foundation
import QBERT
import XCTest
@testable import ZooCore

/// Inputs that crashed, trapped or leaked in a parser (found by the libFuzzer harness, Tests/fuzz, or
/// while writing it), each through the same API: now a ZooError naming the file and the problem.
/// The inputs are also seeds of the fuzz corpus (Tests/fuzz/corpus/<target>/).
final class FuzzRegressionTests: XCTestCase {
    let corpus = Paths.root.appendingPathComponent("Tests/fuzz/corpus")

    /// `body` throws ZooError.badFile for `path` with a problem containing `problem`.
    func assertBadFile(_ path: String, _ problem: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard case .badFile(let p, let m)? = error as? ZooError else { return XCTFail("not ZooError.badFile: \(error)", file: file, line: line) }
            XCTAssertEqual(p, path, file: file, line: line)
            XCTAssertTrue(m.contains(problem), "'\(m)' does not contain '\(problem)'", file: file, line: line)
        }
    }

    /// A copy of corpus file `seed` as `name` in a fresh directory (parsers read files by name).
    func seed(_ seed: String, as name: String) throws -> URL {
        let url = try tempDir().appendingPathComponent(name)
        try Data(contentsOf: corpus.appendingPathComponent(seed)).write(to: url)
        return url
    }

    /// layer_norm_eps 1e212 became Float inf: the spec loaded, and writing its config.json back failed
    /// with an NSError ("Invalid number value (inf) in JSON write"). The fuzzed file also has a dropout
    /// of 5.1, the first field read.
    func testConfigRealFieldOutOfRange() throws {
        let url = try seed("config/crash-eps-1e212.json", as: "config.json")
        assertBadFile(url.path, "field 'hidden_dropout_prob' is 5.1, outside 0...1") { _ = try HFFamily.spec(configAt: url) }
        var config = Tiny.config
        config["layer_norm_eps"] = 1e212
        let dir = try Tiny.checkpoint(config: config)
        assertBadFile(dir.appendingPathComponent("config.json").path, "field 'layer_norm_eps' is 1e+212, outside 0...1") { _ = try Checkpoint(dir: dir) }
    }

    /// num_hidden_layers -1 trapped in `(0..<n)` (and 10^12 exhausted memory) before the spec was checked.
    func testConfigLayerCountOutOfRange() throws {
        let url = try seed("config/negative-layers.json", as: "config.json")
        assertBadFile(url.path, "field 'num_hidden_layers' is -1, outside 0...1024") { _ = try HFFamily.spec(configAt: url) }
        var config = Tiny.config
        for (key, value, problem) in [("num_hidden_layers", 1e12, "outside 0...1024"), ("vocab_size", 1e30, "outside 0...16777216"),
                                      ("intermediate_size", -5, "outside 0...16777216"), ("hidden_size", 8.5, "expected an integer")] as [(String, Any, String)] {
            config = Tiny.config
            config[key] = value
            let dir = try Tiny.checkpoint(config: config)
            assertBadFile(dir.appendingPathComponent("config.json").path, problem) { _ = try Checkpoint(dir: dir) }
        }
        config = Tiny.config
        config["zoo_intermediate_sizes"] = [-3]
        let dir = try Tiny.checkpoint(config: config)
        assertBadFile(dir.appendingPathComponent("config.json").path, "field 'zoo_intermediate_sizes' is -3") { _ = try Checkpoint(dir: dir) }
    }

    /// shape [2^50, 4096] of F64 with an empty byte range: 2^62 elements × 8 bytes overflowed (a trap)
    /// when checked against the range.
    func testSafetensorsByteCountOverflow() throws {
        let url = try seed("safetensors/overflow-byte-count", as: "model.safetensors")
        assertBadFile(url.path, "tensor 'x': 0 bytes do not hold shape [1125899906842624, 4096] of F64") { _ = try SafeTensors(url: url) }
    }

    /// A quantized checkpoint with group_size 0 divided by zero in QuantizedFormat.read; bits outside
    /// 2...8 and a "quantization" that is not an object are refused when the spec is read.
    func testQuantSpecChecked() throws {
        let packed = try Data(contentsOf: corpus.appendingPathComponent("qcheckpoint/bert-int8-group0"))
        let cut = try XCTUnwrap(packed.firstIndex(of: 0))
        let dir = try tempDir()
        try packed[..<cut].write(to: dir.appendingPathComponent("config.json"))
        try packed[(cut + 1)...].write(to: dir.appendingPathComponent("model.safetensors"))
        let configPath = dir.appendingPathComponent("config.json").path
        let ckpt = try Checkpoint(dir: dir)
        assertBadFile(configPath, "quantization group_size 0 must be at least 1") { _ = try QuantSpec.load(ckpt) }
        for v in QBERT.plugin.variants {
            assertBadFile(configPath, "group_size 0") { _ = try v.load(.checkpoint(ckpt)) }
        }
        for (q, problem) in [(["method": "mixed", "group_size": 1, "bits": ["x": 12]] as Any, "bits of 'x': 12 is outside 2...8"),
                             (5 as Any, "invalid \"quantization\" entry")] {
            var config = Tiny.config
            config["quantization"] = q
            let dir = try Tiny.checkpoint(config: config)
            assertBadFile(dir.appendingPathComponent("config.json").path, problem) { _ = try QuantSpec.load(try Checkpoint(dir: dir)) }
        }
    }

    /// An empty file read by FileManager leaked a 4 KB buffer (LeakSanitizer, every parser's first
    /// input); readFile answers it, and the parsers still name the file.
    func testEmptyFiles() throws {
        let dir = try tempDir()
        let empty = dir.appendingPathComponent("empty")
        try Data().write(to: empty)
        XCTAssertEqual(readFile(empty), Data())
        XCTAssertNil(readFile(dir.appendingPathComponent("missing")))
        assertBadFile(empty.path, "no sentences") { _ = try Corpus.load(empty) }
        assertBadFile(empty.path, "invalid JSON") { _ = try HFFamily.spec(configAt: empty) }
        assertBadFile(empty.path, "no [UNK] token") { _ = try WordPieceTokenizer(vocabURL: empty) }
        assertBadFile(empty.path, "header must be") { _ = try Leaderboard.read(try GLUETask.named("rte"), url: empty, count: 1) }
    }

    /// CRLF files (a Swift String holds CR LF as one Character) were one long line for the GLUE and
    /// leaderboard readers.
    func testCRLFLines() throws {
        let mrpc = try GLUETask.named("mrpc")
        let examples = try mrpc.parse(try readText(corpus.appendingPathComponent("glue/mrpc-dev-bom-crlf")), split: .dev, path: "dev.tsv")
        XCTAssertEqual(examples.map(\.label), [.classIndex(1), .classIndex(0)])
        XCTAssertEqual(examples.last?.textB, "The weather was mild on Monday.")
        let url = try seed("predictions/nli-crlf", as: "MNLI-m.tsv")
        XCTAssertEqual(try Leaderboard.read(try GLUETask.named("mnli-m"), url: url, count: 6), [1, 2, 0, 1, 2, 0])
    }

    /// The generated seeds are valid inputs, so the fuzzer starts from the paths that succeed: every
    /// packed checkpoint loads as qbert-int8 (quantized on the fly when fp32), every safetensors file opens.
    func testSeedsParse() throws {
        let dir = try tempDir()
        for name in ["bert-fp32", "bert-int8-g1", "bert-int8-g2", "distilbert-fp32", "distilbert-int8-g1", "albert-fp32", "albert-int8-g1"] {
            let packed = try Data(contentsOf: corpus.appendingPathComponent("qcheckpoint/\(name)"))
            let cut = try XCTUnwrap(packed.firstIndex(of: 0))
            try packed[..<cut].write(to: dir.appendingPathComponent("config.json"))
            try packed[(cut + 1)...].write(to: dir.appendingPathComponent("model.safetensors"))
            let model = try XCTUnwrap(QBERT.plugin.variants.first { $0.name == "qbert-int8" }).load(.checkpoint(try Checkpoint(dir: dir)))
            XCTAssertEqual(model.numLabels, name.hasPrefix("bert") ? 2 : 0, name)
        }
        for name in ["mixed-dtypes", "scalar-f64"] {
            XCTAssertFalse(try SafeTensors(url: corpus.appendingPathComponent("safetensors/\(name)")).names.isEmpty)
        }
    }
}
