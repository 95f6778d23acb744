import Foundation
import XCTest
@testable import ZooCore

/// Bad input: a one-line error naming the file or field, exit code 1 (bad data) or 2 (bad usage),
/// nothing on stdout and no output file left behind. Checked through the real CLI.
final class ErrorTests: XCTestCase {
    func checkpoint(config: [String: Any] = Tiny.config, vocab: [String] = Tiny.vocab,
                    tensors: [(String, Tensor)] = Tiny.tensors()) throws -> URL {
        try Tiny.checkpoint(config: config, vocab: vocab, tensors: tensors)
    }

    /// Writes a safetensors file from a header object and a data section (optionally lying about the header length).
    func writeRaw(_ header: [String: Any], data: Data, headerLength: UInt64? = nil, to url: URL) throws {
        let json = try JSONSerialization.data(withJSONObject: header)
        var len = (headerLength ?? UInt64(json.count)).littleEndian
        var out = Data(bytes: &len, count: 8)
        out.append(json)
        out.append(data)
        try out.write(to: url)
    }

    /// Runs `zoo embed bert --weights dir` on one line and checks the failure.
    func assertEmbedFails(_ dir: URL, mentions: [String], code: Int32 = 1, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try zoo(["embed", "bert", "--weights", dir.path], stdin: Data("hello world\n".utf8))
        assertFailure(r, code: code, mentions: mentions, file: file, line: line)
    }

    func assertFailure(_ r: RunResult, code: Int32, mentions: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.code, code, r.stderr, file: file, line: line)
        XCTAssertTrue(r.stdout.isEmpty, "stdout should be empty, got \(r.out.prefix(200))", file: file, line: line)
        let lines = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("usage:") }
        XCTAssertEqual(lines.count, 1, "one error line expected: \(r.stderr)", file: file, line: line)
        for m in mentions { XCTAssertTrue(r.stderr.contains(m), "'\(m)' not in: \(r.stderr)", file: file, line: line) }
        XCTAssertFalse(r.stderr.contains("Fatal error"), file: file, line: line)
    }

    func testTinyCheckpointWorks() throws {
        let r = try zoo(["embed", "bert", "--weights", try checkpoint().path, "--pool", "cls"], stdin: Data("hello world\na b\n".utf8))
        XCTAssertEqual(r.code, 0, r.stderr)
        let rows = r.out.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [Double] }
        XCTAssertEqual(rows.count, 2)
        XCTAssertEqual(rows[0].count, 8)
        // After the final LayerNorm (weight ~ U(-0.1, 0.1)) values are small and not all equal.
        XCTAssertNotEqual(rows[0], rows[1])
    }

    /// `BertFor*` checkpoints: names with the `bert.` prefix, plus head tensors the encoder ignores.
    func testBertForPrefixedNamesLoadTheSameEncoder() throws {
        let plain = try zoo(["embed", "bert", "--weights", try checkpoint().path], stdin: Data("hello world\n".utf8))
        let prefixed = Tiny.tensors().map { ("bert." + $0.0, $0.1) } + [("classifier.weight", Tensor(shape: [2, 8])), ("classifier.bias", Tensor(shape: [2]))]
        let r = try zoo(["embed", "bert", "--weights", try checkpoint(tensors: prefixed).path], stdin: Data("hello world\n".utf8))
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(r.out, plain.out)
    }

    /// F16, BF16 and I8 tensors convert to the float32 values they encode.
    func testDtypeConversions() throws {
        let url = try tempDir().appendingPathComponent("t.safetensors")
        var data = Data()
        for h: Float16 in [1.5, -2.25, 65504] { withUnsafeBytes(of: h.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        for b: Float in [3.0, -0.5] { withUnsafeBytes(of: UInt16(b.bitPattern >> 16).littleEndian) { data.append(contentsOf: $0) } }
        data.append(contentsOf: [0x7F, 0x80, 0x00].map { UInt8($0) })
        try writeRaw(["h": ["dtype": "F16", "shape": [3], "data_offsets": [0, 6]], "b": ["dtype": "BF16", "shape": [2], "data_offsets": [6, 10]],
                      "i": ["dtype": "I8", "shape": [3], "data_offsets": [10, 13]]], data: data, to: url)
        let st = try SafeTensors(url: url)
        XCTAssertEqual(try st.tensor("h").array, [1.5, -2.25, 65504])
        XCTAssertEqual(try st.tensor("b").array, [3.0, -0.5])
        XCTAssertEqual(try st.tensor("i").array, [127, -128, 0])
    }

    func testTruncatedSafetensors() throws {
        let dir = try checkpoint()
        try Data([1, 2, 3]).write(to: dir.appendingPathComponent("model.safetensors"))
        try assertEmbedFails(dir, mentions: ["model.safetensors", "truncated"])
    }

    func testHeaderLengthPastEndOfFile() throws {
        let dir = try checkpoint()
        try writeRaw(["a": ["dtype": "F32", "shape": [1], "data_offsets": [0, 4]]], data: Data(count: 4), headerLength: 1_000_000,
                     to: dir.appendingPathComponent("model.safetensors"))
        try assertEmbedFails(dir, mentions: ["model.safetensors", "header length 1000000 runs past the end"])
    }

    func testOffsetsOutOfRange() throws {
        let dir = try checkpoint()
        try writeRaw(["a": ["dtype": "F32", "shape": [4], "data_offsets": [0, 16]]], data: Data(count: 8), to: dir.appendingPathComponent("model.safetensors"))
        try assertEmbedFails(dir, mentions: ["model.safetensors", "tensor 'a'", "out of range"])
    }

    func testOverlappingOffsets() throws {
        let dir = try checkpoint()
        try writeRaw(["a": ["dtype": "F32", "shape": [2], "data_offsets": [0, 8]], "b": ["dtype": "F32", "shape": [2], "data_offsets": [4, 12]]],
                     data: Data(count: 12), to: dir.appendingPathComponent("model.safetensors"))
        try assertEmbedFails(dir, mentions: ["model.safetensors", "overlap"])
    }

    func testByteCountNotMatchingShape() throws {
        let dir = try checkpoint()
        try writeRaw(["a": ["dtype": "F16", "shape": [3], "data_offsets": [0, 4]]], data: Data(count: 4), to: dir.appendingPathComponent("model.safetensors"))
        try assertEmbedFails(dir, mentions: ["tensor 'a'", "do not hold shape [3]"])
    }

    func testShapeMismatchAgainstConfig() throws {
        var t = Tiny.tensors()
        t[0] = (t[0].0, Tensor(shape: [12, 9]))
        try assertEmbedFails(try checkpoint(tensors: t), mentions: ["embeddings.word_embeddings.weight", "[12, 9]", "config.json implies [12, 8]"])
    }

    func testDtypeMismatch() throws {
        let dir = try checkpoint()
        var header: [String: Any] = [:]
        var offset = 0
        for (name, t) in Tiny.tensors() {
            let bytes = name == "embeddings.LayerNorm.bias" ? t.count * 8 : t.count * 4
            header[name] = ["dtype": name == "embeddings.LayerNorm.bias" ? "I64" : "F32", "shape": t.shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        try writeRaw(header, data: Data(count: offset), to: dir.appendingPathComponent("model.safetensors"))
        try assertEmbedFails(dir, mentions: ["embeddings.LayerNorm.bias", "dtype I64"])
    }

    func testMissingTensor() throws {
        let t = Tiny.tensors().filter { $0.0 != "encoder.layer.0.output.dense.bias" }
        try assertEmbedFails(try checkpoint(tensors: t), mentions: ["model.safetensors", "missing tensor 'encoder.layer.0.output.dense.bias'"])
    }

    func testInvalidConfigJSON() throws {
        let dir = try checkpoint()
        try Data("{\"hidden_size\": 8,".utf8).write(to: dir.appendingPathComponent("config.json"))
        try assertEmbedFails(dir, mentions: ["config.json", "invalid JSON"])
        var c = Tiny.config
        c.removeValue(forKey: "hidden_size")
        try assertEmbedFails(try checkpoint(config: c), mentions: ["config.json", "missing field 'hidden_size'"])
        c = Tiny.config
        c["num_attention_heads"] = 3
        try assertEmbedFails(try checkpoint(config: c), mentions: ["config.json", "not divisible"])
    }

    func testUnknownModelTypesAndFieldsAreRefused() throws {
        var c = Tiny.config
        c["model_type"] = "xlnet"
        try assertEmbedFails(try checkpoint(config: c), mentions: ["config.json", "model_type 'xlnet' is not supported", "bert, distilbert, albert"])
        c["model_type"] = "distilbert"   // BERT's field names are not DistilBERT's
        try assertEmbedFails(try checkpoint(config: c), mentions: ["config.json", "missing field 'dim'"])
        c = Tiny.config
        c["hidden_act"] = "swish"
        try assertEmbedFails(try checkpoint(config: c), mentions: ["config.json", "hidden_act 'swish' is not supported"])
        c = Tiny.config
        c["pruned_heads"] = ["0": [0, 7]]
        try assertEmbedFails(try checkpoint(config: c), mentions: ["config.json", "pruned_heads entry '0'"])
        c["pruned_heads"] = ["0": [0, 1]]
        try assertEmbedFails(try checkpoint(config: c), mentions: ["config.json", "layer 0 has no attention heads left"])
        c = Tiny.config
        c["pruned_heads"] = ["0": [1]]   // config and tensors disagree: the query weight is still [8, 8]
        try assertEmbedFails(try checkpoint(config: c), mentions: ["model.safetensors", "attention.self.query.weight"])
    }

    func testPickleCheckpointRefused() throws {
        let dir = try checkpoint()
        try FileManager.default.removeItem(at: dir.appendingPathComponent("model.safetensors"))
        try Data([0x80, 0x02, 0x7d]).write(to: dir.appendingPathComponent("pytorch_model.bin"))
        try assertEmbedFails(dir, mentions: ["pytorch_model.bin", "never unpickles", "safe_serialization=True"])
    }

    func testPickleNamedSafetensorsRefused() throws {
        let dir = try checkpoint()
        try Data([0x80, 0x02, 0x63, 0x63, 0x6f, 0x6c, 0x6c, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x73]).write(to: dir.appendingPathComponent("model.safetensors"))
        try assertEmbedFails(dir, mentions: ["model.safetensors", "PyTorch pickle", "never unpickles"])
    }

    func testVocabWithoutSpecialTokens() throws {
        try assertEmbedFails(try checkpoint(vocab: Tiny.vocab.filter { $0 != "[UNK]" }), mentions: ["vocab.txt", "no [UNK] token"])
        let r = try zoo(["tokenize", "--vocab", try checkpoint(vocab: Tiny.vocab.filter { $0 != "[CLS]" }).appendingPathComponent("vocab.txt").path],
                        stdin: Data("a\n".utf8))
        assertFailure(r, code: 1, mentions: ["vocab.txt", "no [CLS] token"])
    }

    func testInvalidUTF8Input() throws {
        let vocab = try checkpoint().appendingPathComponent("vocab.txt")
        let r = try zoo(["tokenize", "--vocab", vocab.path], stdin: Data([0x61, 0x0A, 0x62, 0xFF, 0xFE, 0x0A]))
        assertFailure(r, code: 1, mentions: ["<stdin>", "line 2", "invalid UTF-8"])
    }

    func testWrongColumnCountInTSV() throws {
        let glue = try tempDir()
        try FileManager.default.createDirectory(at: glue.appendingPathComponent("STS-B"), withIntermediateDirectories: true)
        let header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        try (header + "0\tg\tf\ty\t0\ts\ts\tA man.\tA man.\t5.000\n1\tg\tf\ty\t1\ts\ts\tonly nine\t4.0\n")
            .write(to: glue.appendingPathComponent("STS-B/dev.tsv"), atomically: true, encoding: .utf8)
        let out = try tempDir().appendingPathComponent("eval.json")
        let r = try zoo(["eval", "bert", "--task", "stsb", "--zero-shot", "--weights", try checkpoint().path, "--data", glue.path, "--json", out.path])
        assertFailure(r, code: 1, mentions: ["STS-B/dev.tsv", "line 3", "expected 10 tab-separated fields, found 9"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "no half-written result")
    }

    func testUnknownTaskVariantCommandAndOption() throws {
        assertFailure(try zoo(["eval", "bert", "--task", "squad", "--zero-shot"]), code: 2, mentions: ["unknown task 'squad'"])
        assertFailure(try zoo(["eval", "nope", "--task", "stsb", "--zero-shot"]), code: 2, mentions: ["unknown variant 'nope'"])
        assertFailure(try zoo(["bench", "bert", "--geometry", "huge"]), code: 2, mentions: ["unknown geometry 'huge'"])
        assertFailure(try zoo(["list", "--frobnicate"]), code: 2, mentions: ["unknown option --frobnicate"])
        let r = try zoo(["fly"])
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.stderr.contains("unknown command 'fly'"))
    }

    /// Options checked against the model: --max-len past the position table (16 in the tiny
    /// checkpoint) is refused, not cut quietly; --batch 0 is refused.
    func testOptionsBeyondTheModel() throws {
        let dir = try checkpoint().path
        assertFailure(try zoo(["embed", "bert", "--weights", dir, "--max-len", "100000"], stdin: Data("hello world\n".utf8)),
                      code: 2, mentions: ["--max-len 100000 exceeds the model's 16 positions"])
        assertFailure(try zoo(["embed", "bert", "--weights", dir, "--batch", "0"], stdin: Data("hello world\n".utf8)),
                      code: 2, mentions: ["--batch takes a whole number in 1..."])
        XCTAssertEqual(try zoo(["embed", "bert", "--weights", dir, "--max-len", "16"], stdin: Data("hello world\n".utf8)).code, 0)
    }

    func testBadPredictionsFile() throws {
        try require(Paths.glue.appendingPathComponent("RTE/dev.tsv"), "set ZOO_GLUE_DIR")
        let f = try tempDir().appendingPathComponent("RTE.tsv")
        try "index\tprediction\n0\tentailment\n0\tentailment\n".write(to: f, atomically: true, encoding: .utf8)
        assertFailure(try zoo(["score", "--task", "RTE", "--predictions", f.path, "--data", Paths.glue.path]), code: 1, mentions: ["RTE.tsv", "line 3", "index 0 appears twice"])
    }
}
