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
    let longestEntry: Int                   // bytes of the longest vocabulary entry

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
        longestEntry = v.keys.map(\.count).max() ?? 0
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

    /// HF's truncation strategies (`truncation=` of a tokenizer call).
    public enum Truncation: String, CaseIterable {
        case longestFirst = "longest_first", onlyFirst = "only_first", onlySecond = "only_second"
    }

    /// `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, truncated to `maxLength` tokens as HF's slow
    /// tokenizer truncates (`truncate_sequences`, right side). Where HF cannot truncate (the side to
    /// cut is not longer than what must go: only_first/only_second, or a single text at
    /// maxLength 2) it logs an error and returns the sequence untruncated, and so does this; every
    /// command that runs a model takes --max-len ≥ 3, where longest_first always fits.
    public func encode(_ a: String, _ b: String? = nil, maxLength: Int = 128, truncation: Truncation = .longestFirst) -> Encoding {
        var ta = ids(a)
        var tb = b.map(ids)
        let remove = ta.count + (tb?.count ?? 0) + (tb == nil ? 2 : 3) - maxLength
        if remove > 0 {
            switch (truncation, tb) {
            case (.onlySecond, let second?):
                if second.count > remove { tb = Array(second.dropLast(remove)) }
            case (.longestFirst, let second?):
                // Both sides lose half of what remains once the longer is cut to the shorter's length.
                let first = min(abs(second.count - ta.count), remove), rest = remove - first
                let (cutA, cutB) = ta.count > second.count ? (first + rest / 2, rest - rest / 2) : (rest / 2, first + rest - rest / 2)
                ta.removeLast(min(cutA, ta.count))
                tb = Array(second.dropLast(cutB))
            default:  // only_first, or longest_first of a single text
                if ta.count > remove { ta.removeLast(remove) }
            }
        }
        var ids = [cls] + ta + [sep]
        var types = [Int32](repeating: 0, count: ids.count)
        if let tb {
            ids += tb + [sep]
            types += [Int32](repeating: 1, count: tb.count + 1)
        }
        return Encoding(inputIds: ids, tokenTypeIds: types)
    }

    /// Word-piece ids of one text, without [CLS]/[SEP] around it. As HF's (default
    /// `split_special_tokens=False`), the special tokens written in the text itself — "[CLS]",
    /// "[SEP]", "[PAD]", "[MASK]", "[UNK]", exactly so — become their ids; everything else is
    /// lowercased character by character (Python's `str.lower` per code point, as HF's slow tokenizer
    /// does before its basic tokenizer) and word-pieced.
    public func ids(_ text: String) -> [Int32] {
        let scalars = Array(text.unicodeScalars)
        var out: [Int32] = []
        var start = 0, i = 0
        while i < scalars.count {
            guard scalars[i] == "[", let name = Self.specialTokens.first(where: { scalars[i...].starts(with: $0) }) else { i += 1; continue }
            for word in basicTokens(scalars[start..<i]) { wordPiece(word, into: &out) }
            out.append(vocab[Array(String(String.UnicodeScalarView(name)).utf8)] ?? unk)
            i += name.count
            start = i
        }
        for word in basicTokens(scalars[start...]) { wordPiece(word, into: &out) }
        return out
    }

    /// HF's `all_special_tokens` of BertTokenizer.
    static let specialTokens = ["[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"].map { Array($0.unicodeScalars) }

    // MARK: basic tokenizer

    public func basicTokens(_ text: String) -> [[Unicode.Scalar]] { basicTokens(Array(text.unicodeScalars)[...]) }

    func basicTokens(_ text: ArraySlice<Unicode.Scalar>) -> [[Unicode.Scalar]] {
        var cleaned: [Unicode.Scalar] = []
        cleaned.reserveCapacity(text.count)
        for s in lowercase ? Self.lowercased(text) : Array(text) {
            if s.value == 0 || s.value == 0xFFFD || Self.isControl(s) { continue }
            if Self.isWhitespace(s) { cleaned.append(" "); continue }
            if Self.isCJK(s.value) { cleaned.append(" "); cleaned.append(s); cleaned.append(" "); continue }
            cleaned.append(s)
        }
        // Python normalises to NFC before splitting (transformers >= 4.37).
        let nfc = cleaned.allSatisfy(Self.isBelowDecompositions) ? cleaned : Self.nfc(cleaned)
        var out: [[Unicode.Scalar]] = []
        for token in Self.pySplit(nfc) {
            var t = token
            if lowercase {
                t = Self.lowercased(t)
                if !t.allSatisfy(Self.isBelowDecompositions) {
                    t = Array(String(String.UnicodeScalarView(t)).decomposedStringWithCanonicalMapping.unicodeScalars)
                        .filter { !Self.isNonspacingMark($0) }
                }
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

    /// No code point below U+00C0 has a canonical decomposition or is a combining mark, so text of
    /// them is already NFC and NFD, with no mark to strip (the ASCII of most GLUE text skips both).
    static func isBelowDecompositions(_ s: Unicode.Scalar) -> Bool { s.value < 0xC0 }

    /// NFC. Foundation's (Swift 6.3, Linux) composes a code point above U+FFFF as if it were its low
    /// 16 bits — U+E0112 + U+0301 becomes U+1E16 "Ḗ", U+10041 + U+0301 "Á" (found by the differential
    /// test) — so only runs of BMP code points go through it; the others pass unchanged. (That leaves
    /// out the few compositions of two supplementary code points, Kaithi and the like, whose letters
    /// are [UNK] either way; decomposition, NFD, has no such bug.)
    static func nfc(_ scalars: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(scalars.count)
        var run = String.UnicodeScalarView()
        func flush() {
            if !run.isEmpty { out += String(run).precomposedStringWithCanonicalMapping.unicodeScalars; run = String.UnicodeScalarView() }
        }
        for s in scalars {
            if s.value > 0xFFFF { flush(); out.append(s) } else { run.append(s) }
        }
        flush()
        return out
    }

    /// Python's `str.lower` code point by code point (full mappings, no context: HF lowercases one
    /// character at a time).
    static func lowercased<C: Collection>(_ text: C) -> [Unicode.Scalar] where C.Element == Unicode.Scalar {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        for s in text {
            if s.isASCII {
                out.append((65...90).contains(s.value) ? Unicode.Scalar(UInt8(s.value) + 32) : s)
            } else {
                out += s.properties.lowercaseMapping.unicodeScalars
            }
        }
        return out
    }

    /// Greedy longest-match-first, as HF's WordpieceTokenizer; candidates longer (in UTF-8 bytes)
    /// than the longest vocabulary entry are skipped, since they cannot match.
    private func wordPiece(_ word: [Unicode.Scalar], into out: inout [Int32]) {
        if word.count > maxInputCharsPerWord { out.append(unk); return }
        let bytes = Array(String(String.UnicodeScalarView(word)).utf8)
        var offset = [0]   // offset[i]: where scalar i starts in bytes
        for s in word { offset.append(offset.last! + UTF8.width(s)) }
        var pieces: [Int32] = []
        var start = 0
        while start < word.count {
            let prefix: [UInt8] = start > 0 ? [0x23, 0x23] : []
            var end = word.count
            while end > start && prefix.count + offset[end] - offset[start] > longestEntry { end -= 1 }
            var found: Int32?
            while start < end {
                if let id = vocab[prefix + bytes[offset[start]..<offset[end]]] { found = id; break }
                end -= 1
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
        case 0..<0x80: return false
        default: return s.properties.generalCategory == .spaceSeparator
        }
    }

    /// The Unicode version of the reference: HF's slow tokenizer takes its character data from
    /// Python's `unicodedata` — Unicode 14.0 in the Python 3.11 of tools/requirements.txt — while
    /// Swift's runtime knows later versions. A code point assigned after it is unassigned (Cn) there,
    /// so HF drops it as a control character; so does the zoo.
    static let referenceUnicode = (major: 14, minor: 0)

    static func isNewerThanReference(_ s: Unicode.Scalar) -> Bool {
        guard let age = s.properties.age else { return false }
        return (age.major, age.minor) > referenceUnicode
    }

    /// Unicode 14's Mn (stripped with accents); U+1171E (Ahom) became Mc in Unicode 15.
    static func isNonspacingMark(_ s: Unicode.Scalar) -> Bool {
        s.value == 0x1171E || s.properties.generalCategory == .nonspacingMark
    }

    static func isControl(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x09, 0x0A, 0x0D: return false
        case 0..<0x20, 0x7F: return true   // ASCII's Cc
        case 0x20..<0x7F: return false
        default: break
        }
        if isNewerThanReference(s) { return true }
        switch s.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }

    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) { return true }
        if v < 0x80 { return false }
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
