import CKernels
import Foundation

/// TinyBERT's data augmentation (Jiao et al., 2020), with one stated deviation: a word's candidate
/// replacements are its M nearest whole words by cosine similarity in the teacher's word-embedding
/// table (TinyBERT uses GloVe neighbours and BERT's masked-LM predictions; neither exists here, and
/// all-MiniLM-L6-v2 has no MLM head). Each word that is a single whole-word vocabulary entry is
/// replaced with probability p by one of its neighbours, uniformly; other words are kept.
public struct Augmenter {
    public let neighbours: [Int32: [Int32]]
    let tokenizer: WordPieceTokenizer
    let words: [Int32: String]

    /// Neighbours of every whole word (letters only, no ## piece or [special]) of `tokenizer`'s
    /// vocabulary that occurs in `texts`, among all whole words: the M most cosine-similar rows of
    /// `table` [V, H] (the word itself excluded).
    public init(tokenizer: WordPieceTokenizer, table: UnsafePointer<Float>, width H: Int, texts: [String], M: Int = 15) {
        self.tokenizer = tokenizer
        var words: [Int32: String] = [:]
        for (bytes, id) in tokenizer.vocab {
            guard let w = String(bytes: bytes, encoding: .utf8), w.count >= 2, w.unicodeScalars.allSatisfy({ CharacterSet.letters.contains($0) }) else { continue }
            words[id] = w
        }
        self.words = words
        let candidates = words.keys.sorted()
        var queries = Set<Int32>()
        for t in texts { for w in tokenizer.basicTokens(t) { if let id = tokenizer.vocab[Array(String(String.UnicodeScalarView(w)).utf8)], words[id] != nil { queries.insert(id) } } }
        let q = queries.sorted()
        // Unit rows of the candidates, then similarities chunk by chunk of queries, top M per row.
        let C = candidates.count
        let unit = Tensor(shape: [max(C, 1), H])
        for (i, id) in candidates.enumerated() {
            let row = table + Int(id) * H
            let n = max((0..<H).reduce(Float(0)) { $0 + row[$1] * row[$1] }.squareRoot(), 1e-12)
            for j in 0..<H { unit[i * H + j] = row[j] / n }
        }
        let position = Dictionary(uniqueKeysWithValues: candidates.enumerated().map { ($0.element, $0.offset) })
        var out: [Int32: [Int32]] = [:]
        let chunk = 256
        let sims = Tensor(shape: [chunk, max(C, 1)]), rows = Tensor(shape: [chunk, H])
        for start in stride(from: 0, to: q.count, by: chunk) {
            let part = q[start..<min(start + chunk, q.count)]
            for (r, id) in part.enumerated() { (rows.data + r * H).update(from: unit.data + position[id]! * H, count: H) }
            zk_sgemm_nt(Int32(part.count), Int32(C), Int32(H), rows.data, Int32(H), unit.data, Int32(H), 0, sims.data, Int32(C))
            for (r, id) in part.enumerated() {
                let s = sims.data + r * C
                var best: [(Float, Int32)] = []
                for c in 0..<C where candidates[c] != id {
                    if best.count < M { best.append((s[c], candidates[c])); if best.count == M { best.sort { $0.0 > $1.0 } } }
                    else if s[c] > best[M - 1].0 {
                        var k = M - 1
                        while k > 0 && best[k - 1].0 < s[c] { k -= 1 }
                        best.insert((s[c], candidates[c]), at: k)
                        best.removeLast()
                    }
                }
                out[id] = best.sorted { $0.0 > $1.0 }.map(\.1)
            }
        }
        neighbours = out
    }

    /// One augmented copy of `text`: its basic tokens joined by spaces (the tokenizer splits them
    /// the same way), each replaceable word swapped with probability p.
    public func augment(_ text: String, p: Double, rng: inout SplitMix64) -> String {
        tokenizer.basicTokens(text).map { scalars -> String in
            let w = String(String.UnicodeScalarView(scalars))
            guard let id = tokenizer.vocab[Array(w.utf8)], let n = neighbours[id], !n.isEmpty,
                  Double(rng.next() >> 11) / Double(1 << 53) < p else { return w }
            return words[n[Int(rng.next() % UInt64(n.count))]]!
        }.joined(separator: " ")
    }

    /// The examples followed by up to `copies` augmented copies of each (labels kept; the teacher's
    /// outputs are what a distillation learns on them), made a round over all examples at a time
    /// until `cap` examples in all.
    public func augment(_ examples: [Example], copies: Int, p: Double = 0.4, cap: Int, seed: UInt64) -> [Example] {
        var rng = SplitMix64(seed: seed)
        var out = examples
        for _ in 0..<copies {
            for e in examples where out.count < cap {
                var a = e
                a.textA = augment(e.textA, p: p, rng: &rng)
                a.textB = e.textB.map { augment($0, p: p, rng: &rng) }
                out.append(a)
            }
        }
        return out
    }
}
