import Foundation

/// Unlabelled text, one sentence per line (the data source of general distillation and other
/// training steps that need no labels). Strict UTF-8; blank lines are skipped.
public enum Corpus {
    public static func load(_ url: URL) throws -> [String] {
        guard let data = readFile(url) else {
            throw ZooError.badFile(path: url.path, problem: "cannot read file (missing or unreadable)")
        }
        let lines = try textLines(data, path: url.path).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        guard !lines.isEmpty else { throw ZooError.badFile(path: url.path, problem: "no sentences (one per line expected)") }
        return lines
    }

    /// Every distinct sentence of the GLUE files present in `dir` (train, dev and test of every task;
    /// both sides of a pair; no labels), in file order: the default corpus of general distillation.
    public static func glue(_ dir: URL) -> [String] {
        var seen = Set<String>(), out: [String] = []
        for task in GLUETask.all {
            for split in Split.allCases {
                guard let examples = try? task.load(split, from: dir) else { continue }
                for e in examples {
                    for t in [e.textA, e.textB].compactMap({ $0 }) where !t.isEmpty && seen.insert(t).inserted { out.append(t) }
                }
            }
        }
        return out
    }
}

/// The lines of `data` (LF or CRLF; no empty line after a final newline), strictly UTF-8: a bad byte
/// is an error naming `path` and the line.
public func textLines(_ data: Data, path: String) throws -> [String] {
    if data.isEmpty { return [] }
    var parts = data.split(separator: 0x0A, omittingEmptySubsequences: false)
    if data.last == 0x0A { parts.removeLast() }
    return try parts.enumerated().map { i, raw in
        guard let s = String(validatingUTF8Data: Data(raw.last == 0x0D ? raw.dropLast() : raw)) else {
            throw ZooError.badFile(path: path, problem: "line \(i + 1): invalid UTF-8")
        }
        return s
    }
}
