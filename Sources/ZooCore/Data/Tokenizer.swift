import Foundation

/// BERT's uncased tokenizer, step for step as HF's (slow, Python) `BertTokenizer`:
/// clean text → split CJK ideographs → whitespace split → lowercase, NFD, drop combining marks →
/// split punctuation → greedy longest-match WordPiece. Everything works on Unicode scalars (Python
/// code points), never on Swift Characters.
public final class WordPieceTokenizer {
    public let vocab: [[UInt8]: Int32]
    public let unk: Int32, cls: Int32, sep: Int32, pad: Int32
    public let lowercase: Bool
    public let maxInputCharsPerWord = 100   // HF WordpieceTokenizer's max_input_chars_per_word

    public init(vocabURL: URL, lowercase: Bool = true) throws {
        let text = try readText(vocabURL)
        var v: [[UInt8]: Int32] = [:]
        var lines = text.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        for (i, line) in lines.enumerated() {
            let tok = line.hasSuffix("\r") ? String(line.dropLast()) : line
            if v[Array(tok.utf8)] == nil { v[Array(tok.utf8)] = Int32(i) }
        }
        func special(_ s: String) throws -> Int32 {
            guard let id = v[Array(s.utf8)] else { throw ZooError.badFile(path: vocabURL.path, problem: "vocabulary has no \(s) token") }
            return id
        }
        vocab = v
        unk = try special("[UNK]")
        cls = try special("[CLS]")
        sep = try special("[SEP]")
        pad = v[Array("[PAD]".utf8)] ?? 0
        self.lowercase = lowercase
    }

    public struct Encoding: Equatable {
        public var inputIds: [Int32]
        public var tokenTypeIds: [Int32]
    }

    /// `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, truncated longest-first to `maxLength` tokens.
    public func encode(_ a: String, _ b: String? = nil, maxLength: Int = 128) -> Encoding {
        var ta = ids(a)
        var tb = b.map(ids)
        let budget = max(maxLength - (tb == nil ? 2 : 3), 0)
        if var second = tb {
            // HF longest_first: drop from the longer side, from the second one on ties.
            while ta.count + second.count > budget {
                if ta.count > second.count { ta.removeLast() } else { second.removeLast() }
            }
            tb = second
        } else if ta.count > budget {
            ta.removeLast(ta.count - budget)
        }
        var ids = [cls] + ta + [sep]
        var types = [Int32](repeating: 0, count: ids.count)
        if let tb {
            ids += tb + [sep]
            types += [Int32](repeating: 1, count: tb.count + 1)
        }
        return Encoding(inputIds: ids, tokenTypeIds: types)
    }

    /// Word-piece ids of one text, without special tokens.
    public func ids(_ text: String) -> [Int32] {
        var out: [Int32] = []
        for word in basicTokens(text) { wordPiece(word, into: &out) }
        return out
    }

    // MARK: basic tokenizer

    public func basicTokens(_ text: String) -> [[Unicode.Scalar]] {
        var cleaned: [Unicode.Scalar] = []
        cleaned.reserveCapacity(text.unicodeScalars.count)
        for s in text.unicodeScalars {
            if s.value == 0 || s.value == 0xFFFD || Self.isControl(s) { continue }
            if Self.isWhitespace(s) { cleaned.append(" "); continue }
            if Self.isCJK(s.value) { cleaned.append(" "); cleaned.append(s); cleaned.append(" "); continue }
            cleaned.append(s)
        }
        // Python normalises to NFC before splitting (transformers >= 4.37).
        let nfc = Array(String(String.UnicodeScalarView(cleaned)).precomposedStringWithCanonicalMapping.unicodeScalars)
        var out: [[Unicode.Scalar]] = []
        for token in Self.pySplit(nfc) {
            var t = token
            if lowercase {
                t = Array(String(String.UnicodeScalarView(t)).lowercased().unicodeScalars)
                t = Array(String(String.UnicodeScalarView(t)).decomposedStringWithCanonicalMapping.unicodeScalars)
                    .filter { $0.properties.generalCategory != .nonspacingMark }
            }
            var current: [Unicode.Scalar] = []
            for s in t {
                if Self.isPunctuation(s) {
                    if !current.isEmpty { out.append(current); current = [] }
                    out.append([s])
                } else {
                    current.append(s)
                }
            }
            if !current.isEmpty { out.append(current) }
        }
        // HF re-splits the joined pieces on whitespace; pieces can only contain Python-whitespace
        // that survived cleaning (U+2028, U+2029), so split them once more.
        return out.flatMap { Self.pySplit($0) }
    }

    private func wordPiece(_ word: [Unicode.Scalar], into out: inout [Int32]) {
        if word.count > maxInputCharsPerWord { out.append(unk); return }
        let utf8: [[UInt8]] = word.map { Array(String($0).utf8) }
        var pieces: [Int32] = []
        var start = 0
        while start < word.count {
            var end = word.count
            var found: Int32?
            // The key is ("##" +) word[start..<end], shortened from the back as `end` goes down.
            var key: [UInt8] = start > 0 ? [0x23, 0x23] : []
            for i in start..<end { key += utf8[i] }
            while start < end {
                if let id = vocab[key] { found = id; break }
                end -= 1
                key.removeLast(utf8[end].count)
            }
            guard let id = found else { out.append(unk); return }
            pieces.append(id)
            start = end
        }
        out += pieces
    }

    // MARK: character classes (HF's definitions)

    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x20, 0x09, 0x0A, 0x0D: return true
        default: return s.properties.generalCategory == .spaceSeparator
        }
    }

    static func isControl(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x09, 0x0A, 0x0D: return false
        default:
            switch s.properties.generalCategory {
            case .control, .format, .surrogate, .privateUse, .unassigned: return true
            default: return false
            }
        }
    }

    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) { return true }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    static func isCJK(_ v: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v) || (0x20000...0x2A6DF).contains(v)
            || (0x2A700...0x2B73F).contains(v) || (0x2B740...0x2B81F).contains(v) || (0x2B820...0x2CEAF).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }

    /// Python's `str.split()`: splits on every character for which `str.isspace()` is true.
    static func pySplit(_ scalars: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        var out: [[Unicode.Scalar]] = []
        var cur: [Unicode.Scalar] = []
        for s in scalars {
            if isPySpace(s) {
                if !cur.isEmpty { out.append(cur); cur = [] }
            } else {
                cur.append(s)
            }
        }
        if !cur.isEmpty { out.append(cur) }
        return out
    }

    static func isPySpace(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }
}
