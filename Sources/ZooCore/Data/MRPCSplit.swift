import Foundation

/// GLUE's MRPC files are not an archive: the download script splits Microsoft's
/// msr_paraphrase_train.txt into train/dev by dev_ids.tsv and renumbers the test file. Same rule here.
public enum MRPCSplit {
    public static func build(trainTxt: URL, testTxt: URL, devIds: URL, into dir: URL) throws {
        let ids = Set(try readText(devIds).split(whereSeparator: \.isNewline).map { $0.split(separator: "\t").map(String.init) }
            .filter { $0.count == 2 }.map { "\($0[0])\t\($0[1])" })
        let (trainHeader, trainRows) = try rows(trainTxt)
        var train = trainHeader, dev = trainHeader
        for f in trainRows {
            let line = f.joined(separator: "\t") + "\n"
            if ids.contains("\(f[1])\t\(f[2])") { dev += line } else { train += line }
        }
        let (_, testRows) = try rows(testTxt)
        var test = "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        for (i, f) in testRows.enumerated() { test += "\(i)\t\(f[1])\t\(f[2])\t\(f[3])\t\(f[4])\n" }
        for (name, text) in [("train.tsv", train), ("dev.tsv", dev), ("test.tsv", test)] {
            try writeAtomically(Data(text.utf8), to: dir.appendingPathComponent(name))
        }
    }

    /// Header line kept as is (with its BOM), then rows stripped and split into 5 fields.
    static func rows(_ url: URL) throws -> (String, [[String]]) {
        let text = try readText(url)
        guard let nl = text.firstIndex(of: "\n") else { throw ZooError.badFile(path: url.path, problem: "no header line") }
        let header = String(text[...nl])
        var out: [[String]] = []
        for (i, line) in text[text.index(after: nl)...].split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let s = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if s.isEmpty { continue }
            let f = s.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 5 else { throw ZooError.badFile(path: url.path, problem: "line \(i + 2): expected 5 tab-separated fields, found \(f.count)") }
            out.append(f)
        }
        return (header, out)
    }
}
