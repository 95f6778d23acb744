import Foundation
import XCTest
@testable import ZooCore

/// Token ids identical to HF's (Python) BertTokenizer on Fixtures/tokenizer.jsonl, which
/// tools/hf_reference.py tokenizer-fixture made with transformers 4.57.6.
final class TokenizerTests: XCTestCase {
    struct Case: Decodable {
        let a: String
        let b: String?
        let max_len: Int
        let input_ids: [Int32]
        let token_type_ids: [Int32]
    }

    func loadCases() throws -> [Case] {
        let text = try String(contentsOf: Paths.fixtures.appendingPathComponent("tokenizer.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(Case.self, from: Data($0.utf8)) }
    }

    func testIdsMatchHuggingFaceOnFixture() throws {
        try require(Paths.weights.appendingPathComponent("vocab.txt"), "run `zoo weights fetch minilm-l6`")
        let tok = try WordPieceTokenizer(vocabURL: Paths.weights.appendingPathComponent("vocab.txt"))
        let cases = try loadCases()
        XCTAssertGreaterThanOrEqual(cases.count, 200)
        var mismatches = 0
        for c in cases {
            let e = tok.encode(c.a, c.b, maxLength: c.max_len)
            if e.inputIds != c.input_ids || e.tokenTypeIds != c.token_type_ids {
                mismatches += 1
                if mismatches <= 5 {
                    XCTFail("mismatch for \(c.a.debugDescription) / \(c.b?.debugDescription ?? "-"): zoo \(e.inputIds) vs HF \(c.input_ids)")
                }
            }
        }
        XCTAssertEqual(mismatches, 0, "\(mismatches) of \(cases.count) fixture lines differ")
    }

    func testCLITokenizeMatchesFixture() throws {
        try require(Paths.weights.appendingPathComponent("vocab.txt"), "run `zoo weights fetch minilm-l6`")
        // Lines the one-example-per-line format can carry: no LF/CR/TAB inside a text.
        let plain = { (s: String) in !s.unicodeScalars.contains { $0 == "\n" || $0 == "\r" || $0 == "\t" } }
        let cases = try loadCases().filter { $0.max_len == 128 && plain($0.a) && plain($0.b ?? "") }
        let input = cases.map { $0.a + ($0.b.map { "\t" + $0 } ?? "") }.joined(separator: "\n") + "\n"
        let r = try zoo(["tokenize", "--vocab", Paths.weights.appendingPathComponent("vocab.txt").path], stdin: Data(input.utf8))
        XCTAssertEqual(r.code, 0, r.stderr)
        let lines = r.out.split(separator: "\n")
        XCTAssertEqual(lines.count, cases.count)
        for (line, c) in zip(lines, cases) {
            let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: [Int]]
            XCTAssertEqual(obj["input_ids"]!.map(Int32.init), c.input_ids, c.a)
            XCTAssertEqual(obj["token_type_ids"]!.map(Int32.init), c.token_type_ids, c.a)
        }
    }

    func testLongestFirstTruncation() throws {
        try require(Paths.weights.appendingPathComponent("vocab.txt"), "run `zoo weights fetch minilm-l6`")
        let tok = try WordPieceTokenizer(vocabURL: Paths.weights.appendingPathComponent("vocab.txt"))
        let a = Array(repeating: "the", count: 10).joined(separator: " ")
        let b = Array(repeating: "a", count: 4).joined(separator: " ")
        let e = tok.encode(a, b, maxLength: 11)   // 8 word tokens fit: a keeps 4, b keeps 4
        XCTAssertEqual(e.inputIds.count, 11)
        XCTAssertEqual(e.tokenTypeIds.filter { $0 == 1 }.count, 5)   // 4 + [SEP]
        let f = tok.encode(a, b, maxLength: 9)    // 6 fit: the longer side is cut first, ties cut the second
        XCTAssertEqual(f.tokenTypeIds.filter { $0 == 1 }.count, 4)
    }
}
