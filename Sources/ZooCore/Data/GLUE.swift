import Foundation

/// One labelled (or unlabelled, for test splits) GLUE example.
public struct Example: Equatable {
    public var index: Int           // 0-based position in its file: the leaderboard `index`
    public var textA: String
    public var textB: String?
    public var label: Label?

    public init(index: Int, textA: String, textB: String?, label: Label?) {
        (self.index, self.textA, self.textB, self.label) = (index, textA, textB, label)
    }
}

public enum Label: Equatable {
    case classIndex(Int)
    case score(Double)

    public var classIndex: Int? { if case .classIndex(let i) = self { return i }; return nil }
    public var score: Double? { if case .score(let s) = self { return s }; return nil }
}

extension Example {
    /// The label as a number metrics take: the class index, or the score; NaN when unlabelled.
    public var labelValue: Double {
        switch label {
        case .classIndex(let i): return Double(i)
        case .score(let s): return s
        case nil: return .nan
        }
    }
}

public enum Split: String, CaseIterable {
    case train, dev, test
}

/// A GLUE task: where its files are, which columns hold the texts and label, and how it is scored.
public struct GLUETask: Equatable {
    public let name: String          // zoo's spelling: cola, sst2, …, mnli-m
    public let glueName: String      // the leaderboard's: CoLA, SST-2, …, MNLI-m
    public let folder: String
    public let labels: [String]      // class names in the file/leaderboard; empty for regression
    public let metrics: [Metric]
    let files: [Split: [String]]     // candidate file names per split, first existing wins
    let textA: String, textB: String?, labelColumn: String?
    let headerless: (textA: Int, label: Int)?   // CoLA train/dev: no header, fixed positions

    public var isRegression: Bool { labels.isEmpty }
    public var numLabels: Int { isRegression ? 1 : labels.count }
    /// Sentence pairs (MRPC, STS-B, RTE, …) rather than single sentences.
    public var isPair: Bool { textB != nil }

    public static func == (a: GLUETask, b: GLUETask) -> Bool { a.name == b.name }

    static let nli = ["entailment", "neutral", "contradiction"]
    static let binary = ["0", "1"]

    public static let all: [GLUETask] = [
        GLUETask(name: "cola", glueName: "CoLA", folder: "CoLA", labels: binary, metrics: [.matthews],
                 files: [.train: ["train.tsv"], .dev: ["dev.tsv"], .test: ["test.tsv"]],
                 textA: "sentence", textB: nil, labelColumn: nil, headerless: (3, 1)),
        GLUETask(name: "sst2", glueName: "SST-2", folder: "SST-2", labels: binary, metrics: [.accuracy],
                 files: [.train: ["train.tsv"], .dev: ["dev.tsv"], .test: ["test.tsv"]],
                 textA: "sentence", textB: nil, labelColumn: "label", headerless: nil),
        GLUETask(name: "mrpc", glueName: "MRPC", folder: "MRPC", labels: binary, metrics: [.f1, .accuracy],
                 files: [.train: ["train.tsv"], .dev: ["dev.tsv"], .test: ["test.tsv"]],
                 textA: "#1 String", textB: "#2 String", labelColumn: "Quality", headerless: nil),
        GLUETask(name: "stsb", glueName: "STS-B", folder: "STS-B", labels: [], metrics: [.pearson, .spearman],
                 files: [.train: ["train.tsv"], .dev: ["dev.tsv"], .test: ["test.tsv"]],
                 textA: "sentence1", textB: "sentence2", labelColumn: "score", headerless: nil),
        GLUETask(name: "qqp", glueName: "QQP", folder: "QQP", labels: binary, metrics: [.f1, .accuracy],
                 files: [.train: ["train.tsv"], .dev: ["dev.tsv"], .test: ["test.tsv"]],
                 textA: "question1", textB: "question2", labelColumn: "is_duplicate", headerless: nil),
        GLUETask(name: "mnli-m", glueName: "MNLI-m", folder: "MNLI", labels: nli, metrics: [.accuracy],
                 files: [.train: ["train.tsv"], .dev: ["dev_matched.tsv"], .test: ["test_matched.tsv"]],
                 textA: "sentence1", textB: "sentence2", labelColumn: "gold_label", headerless: nil),
        GLUETask(name: "mnli-mm", glueName: "MNLI-mm", folder: "MNLI", labels: nli, metrics: [.accuracy],
                 files: [.train: ["train.tsv"], .dev: ["dev_mismatched.tsv"], .test: ["test_mismatched.tsv"]],
                 textA: "sentence1", textB: "sentence2", labelColumn: "gold_label", headerless: nil),
        GLUETask(name: "qnli", glueName: "QNLI", folder: "QNLI", labels: ["entailment", "not_entailment"], metrics: [.accuracy],
                 files: [.train: ["train.tsv"], .dev: ["dev.tsv"], .test: ["test.tsv"]],
                 textA: "question", textB: "sentence", labelColumn: "label", headerless: nil),
        GLUETask(name: "rte", glueName: "RTE", folder: "RTE", labels: ["entailment", "not_entailment"], metrics: [.accuracy],
                 files: [.train: ["train.tsv"], .dev: ["dev.tsv"], .test: ["test.tsv"]],
                 textA: "sentence1", textB: "sentence2", labelColumn: "label", headerless: nil),
        GLUETask(name: "wnli", glueName: "WNLI", folder: "WNLI", labels: binary, metrics: [.accuracy],
                 files: [.train: ["train.tsv"], .dev: ["dev.tsv"], .test: ["test.tsv"]],
                 textA: "sentence1", textB: "sentence2", labelColumn: "label", headerless: nil),
        // AX is the diagnostic set: test only, unlabelled, predicted with MNLI's label set.
        GLUETask(name: "ax", glueName: "AX", folder: "diagnostic", labels: nli, metrics: [.matthews],
                 files: [.test: ["diagnostic.tsv", "AX.tsv"]],
                 textA: "sentence1", textB: "sentence2", labelColumn: nil, headerless: nil),
    ]

    /// Accepts zoo spellings and GLUE spellings, case-insensitive (`sst2`, `SST-2`, `MNLI-m`, `sts-b`).
    public static func named(_ s: String) throws -> GLUETask {
        let key = s.lowercased()
        if let t = all.first(where: { $0.name == key || $0.glueName.lowercased() == key || $0.name.replacingOccurrences(of: "-", with: "") == key.replacingOccurrences(of: "-", with: "") }) {
            return t
        }
        if key == "mnli" { return all.first { $0.name == "mnli-m" }! }
        throw ZooError.usage("unknown task '\(s)'; known: \(all.map(\.name).joined(separator: " "))")
    }

    /// The file of a split inside a GLUE data directory.
    public func file(_ split: Split, in dir: URL) throws -> URL {
        guard let names = files[split] else {
            throw ZooError.usage("task \(glueName) has no \(split.rawValue) split")
        }
        let folderURL = dir.appendingPathComponent(folder)
        for n in names where FileManager.default.fileExists(atPath: folderURL.appendingPathComponent(n).path) {
            return folderURL.appendingPathComponent(n)
        }
        throw ZooError.usage("\(folderURL.appendingPathComponent(names[0]).path): no such file (the \(split.rawValue) split of \(glueName)); point --data or ZOO_GLUE_DIR at a GLUE directory, or run `zoo data fetch`")
    }

    /// Reads a split with the original TSV quirks: tab split, no CSV quoting, optional UTF-8 BOM,
    /// no header for CoLA train/dev, a missing final newline tolerated.
    public func load(_ split: Split, from dir: URL) throws -> [Example] {
        let url = try file(split, in: dir)
        return try parse(try readText(url), split: split, path: url.path)
    }

    public func parse(_ text: String, split: Split, path: String) throws -> [Example] {
        var body = text
        if body.hasPrefix("\u{FEFF}") { body.removeFirst() }
        var lines = body.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).map { $0.hasSuffix("\r") ? $0.dropLast() : $0 }
        if lines.last?.isEmpty == true { lines.removeLast() }
        let wantLabel = split != .test
        var colA: Int, colB: Int?, colLabel: Int?, width: Int, firstRow: Int
        if let fixed = headerless, split != .test {
            (colA, colB, colLabel, width, firstRow) = (fixed.textA, nil, fixed.label, 4, 0)
        } else {
            guard let header = lines.first else { throw ZooError.badFile(path: path, problem: "empty file") }
            let names = header.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            func column(_ n: String) throws -> Int {
                guard let i = names.firstIndex(of: n) else { throw ZooError.badFile(path: path, problem: "line 1: header has no '\(n)' column") }
                return i
            }
            colA = try column(textA)
            colB = try textB.map(column)
            if wantLabel, let l = labelColumn {
                // MNLI's label is the last column named gold_label; STS-B's score is the last column.
                colLabel = l == "score" ? names.count - 1 : try column(l)
            } else {
                colLabel = nil
            }
            if wantLabel && labelColumn == nil && !isRegression {
                throw ZooError.usage("task \(glueName) has no labelled \(split.rawValue) split")
            }
            width = names.count
            firstRow = 1
        }
        var out: [Example] = []
        out.reserveCapacity(lines.count)
        for (i, line) in lines.enumerated().dropFirst(firstRow) {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count == width else {
                throw ZooError.badFile(path: path, problem: "line \(i + 1): expected \(width) tab-separated fields, found \(fields.count)")
            }
            var label: Label?
            if let c = colLabel {
                let raw = String(fields[c])
                if isRegression {
                    guard let v = Double(raw), (0...5).contains(v) else {
                        throw ZooError.badFile(path: path, problem: "line \(i + 1): score '\(raw)' is not a number from 0 to 5")
                    }
                    label = .score(v)
                } else {
                    guard let k = labels.firstIndex(of: raw) else {
                        throw ZooError.badFile(path: path, problem: "line \(i + 1): label '\(raw)' is not one of \(labels.joined(separator: ", "))")
                    }
                    label = .classIndex(k)
                }
            }
            out.append(Example(index: out.count, textA: String(fields[colA]), textB: colB.map { String(fields[$0]) }, label: label))
        }
        return out
    }
}

/// Where GLUE lives: `--data DIR`, else `ZOO_GLUE_DIR`, else `./data/glue`.
public func glueDirectory(_ flag: String?) -> URL {
    if let flag { return URL(fileURLWithPath: flag) }
    if let env = ProcessInfo.processInfo.environment["ZOO_GLUE_DIR"], !env.isEmpty { return URL(fileURLWithPath: env) }
    return URL(fileURLWithPath: "data/glue")
}
