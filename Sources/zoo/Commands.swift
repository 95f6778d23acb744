import Foundation
import ZooCore

struct ListCommand: Command {
    static let name = "list"
    static let summary = "list the registered variants (or zoo table's methods)"
    static let help = """
    zoo list [--methods] [--json]
      One line per registered variant: name and description. --methods: the methods `zoo table`
      rows are made of, with the variant each result runs as. --json prints [{"name","description"}].
    """
    static let options: Set<String> = []
    static let flags: Set<String> = ["json", "methods"]

    static func run(_ args: Arguments) throws {
        guard args.positional.isEmpty else { throw ZooError.usage("zoo list takes no arguments") }
        let rows = args.flag("methods") ? registry.methods.map { ($0.name, "(\($0.variant)) " + $0.summary) } : registry.variants.map { ($0.name, $0.summary) }
        if args.flag("json") {
            print(try jsonString(rows.map { ["name": $0.0, "description": $0.1] }))
        } else {
            let w = rows.map(\.0.count).max() ?? 0
            for (name, text) in rows { print(name.padding(toLength: w + 2, withPad: " ", startingAt: 0) + text) }
        }
    }
}

struct TokenizeCommand: Command {
    static let name = "tokenize"
    static let summary = "WordPiece-tokenize stdin lines (TAB separates a pair) to JSON"
    static let help = """
    zoo tokenize --vocab FILE [--max-len N] [--truncation longest_first|only_first|only_second] [--json]
      Reads one example per line on stdin (a TAB separates a sentence pair) and prints one JSON object
      per line: {"input_ids":[…],"token_type_ids":[…]} with [CLS]/[SEP], no padding, truncated to
      --max-len tokens (default 128) as HF's tokenizer truncates (default longest_first).
      --json: each line is instead a JSON object with HF's argument names, {"text": A, "text_pair": B,
      "max_length": N, "truncation": S}, all but "text" optional (defaults: the options) — texts
      holding TABs or line breaks, and per-line lengths (tools/tokenizer_diff.py uses it).
    """
    static let options: Set<String> = ["vocab", "max-len", "truncation"]
    static let flags: Set<String> = ["json"]

    struct Line: Decodable {
        let text: String
        let text_pair: String?
        let max_length: Int?
        let truncation: String?
    }

    static func run(_ args: Arguments) throws {
        let tok = try WordPieceTokenizer(vocabURL: URL(fileURLWithPath: try args.required("vocab")))
        let maxLen = try args.int("max-len", default: 128, range: 2...100_000)!
        func strategy(_ s: String, _ where_: String) throws -> WordPieceTokenizer.Truncation {
            guard let t = WordPieceTokenizer.Truncation(rawValue: s) else {
                throw ZooError.usage("\(where_): unknown truncation '\(s)' (longest_first, only_first, only_second)")
            }
            return t
        }
        let truncation = try strategy(args["truncation"] ?? "longest_first", "--truncation")
        var out = ""
        for (i, line) in try readStdinLines().enumerated() {
            let e: WordPieceTokenizer.Encoding
            if args.flag("json") {
                let where_ = "<stdin> line \(i + 1)"
                let l: Line
                do { l = try JSONDecoder().decode(Line.self, from: Data(line.utf8)) } catch {
                    throw ZooError.badFile(path: "<stdin>", problem: "line \(i + 1): not a JSON object with a string \"text\"")
                }
                let n = l.max_length ?? maxLen
                guard (2...100_000).contains(n) else { throw ZooError.badFile(path: "<stdin>", problem: "line \(i + 1): max_length \(n) outside 2…100000") }
                let t = try l.truncation.map { try strategy($0, where_) } ?? truncation
                if t == .onlySecond && l.text_pair == nil { throw ZooError.badFile(path: "<stdin>", problem: "line \(i + 1): only_second needs a text_pair") }
                e = tok.encode(l.text, l.text_pair, maxLength: n, truncation: t)
            } else {
                let (a, b) = try splitPair(line, lineNumber: i + 1)
                e = tok.encode(a, b, maxLength: maxLen, truncation: truncation)
            }
            out += "{\"input_ids\":[\(e.inputIds.map(String.init).joined(separator: ","))],\"token_type_ids\":[\(e.tokenTypeIds.map(String.init).joined(separator: ","))]}\n"
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }
}

struct EmbedCommand: Command {
    static let name = "embed"
    static let summary = "sentence embeddings of stdin lines"
    static let help = """
    zoo embed <variant> [--weights DIR] [--pool mean|cls] [--max-len N] [--batch B] [--threads N]
      Reads one example per line on stdin (a TAB separates a pair) and prints one JSON array of floats
      per line: mean = attention-masked mean of the last hidden state (default), cls = the [CLS] state.
      --weights defaults to $ZOO_WEIGHTS, else weights/minilm-l6.
    """
    static let options: Set<String> = ["weights", "pool", "max-len", "batch", "threads"]
    static let flags: Set<String> = []

    static func run(_ args: Arguments) throws {
        let variant = try registry.variant(try args.onlyPositional("variant name"))
        guard let pooling = Pooling(rawValue: args["pool"] ?? "mean") else { throw ZooError.usage("--pool takes mean or cls, got '\(args["pool"]!)'") }
        let batchSize = try args.int("batch", default: 32)!
        Runtime.setThreads(try args.int("threads"))
        let lines = try readStdinLines()
        let (model, dir) = try loadModel(variant, weights: args["weights"])
        let maxLen = try maxLength(args, model)
        let tok = try WordPieceTokenizer(vocabURL: dir!.appendingPathComponent("vocab.txt"))
        let encodings = try lines.enumerated().map { i, line -> WordPieceTokenizer.Encoding in
            let (a, b) = try splitPair(line, lineNumber: i + 1)
            return tok.encode(a, b, maxLength: maxLen)
        }
        let progress = Progress("embed")
        let rows = try model.embeddings(encodings, pooling: pooling, batchSize: batchSize, progress: lines.count > 1000 ? progress.update : nil)
        var out = ""
        for r in rows { out += "[" + r.map { "\($0)" }.joined(separator: ",") + "]\n" }
        FileHandle.standardOutput.write(Data(out.utf8))
    }
}

struct ScoreCommand: Command {
    static let name = "score"
    static let summary = "score a leaderboard-format predictions file against dev labels"
    static let help = """
    zoo score --task T --predictions FILE [--data DIR] [--json]
      FILE is in the GLUE submission format (header index<TAB>prediction; index = 0-based position of
      the example in the dev file). Tasks: cola sst2 mrpc stsb qqp mnli-m mnli-mm qnli rte wnli
      (GLUE spellings such as SST-2 or MNLI-m work too). --json: {"task","metrics":{…},"score"}.
    """
    static let options: Set<String> = ["task", "predictions", "data"]
    static let flags: Set<String> = ["json"]

    static func run(_ args: Arguments) throws {
        let task = try GLUETask.named(try args.required("task"))
        let examples = try task.load(.dev, from: glueDirectory(args["data"]))
        let preds = try Leaderboard.read(task, url: URL(fileURLWithPath: try args.required("predictions")), count: examples.count)
        let result = TaskResult(task: task, predictions: preds, labels: examples.map(\.labelValue))
        if args.flag("json") {
            print(try jsonString(["task": result.task, "metrics": result.metrics, "score": result.score] as [String: Any]))
        } else {
            print("\(task.glueName) (\(examples.count) dev examples)")
            for (k, v) in result.metrics.sorted(by: { $0.key < $1.key }) { print(String(format: "  %-9@ %.2f", k, v)) }
            print(String(format: "  score     %.2f", result.score))
        }
    }
}


struct EvalCommand: Command {
    /// `zoo eval NAME` without --task: NAME's row of `zoo table` (a method chain such as heads40 or
    /// tinybert+qbert-int8, or a variant: the rows of the methods that make it), beside the bert row,
    /// from the base in --base (default $ZOO_WEIGHTS, else weights/minilm-l6), with the table's
    /// defaults for everything else (tasks, seed 42, runs/table, speed).
    static func row(_ name: String, _ args: Arguments) throws {
        for option in ["weights", "json", "split", "batch", "max-len", "predictions-out"] where args[option] != nil {
            throw ZooError.usage("--\(option) needs --task (without --task, zoo eval runs \(name)'s zoo table row)")
        }
        if args.flag("zero-shot") { throw ZooError.usage("--zero-shot needs --task stsb") }
        var rows = [name]
        if (try? TableCommand.chain(name)) == nil {
            rows = registry.methods.filter { $0.variant == name }.map(\.name)
            guard !rows.isEmpty else {
                throw ZooError.usage("'\(name)' is neither a method of zoo table nor a variant one makes (zoo list --methods)")
            }
        }
        var argv = ["--base", args["base"] ?? ProcessInfo.processInfo.environment["ZOO_WEIGHTS"] ?? "weights/minilm-l6",
                    "--variants", (["bert"] + rows.filter { $0 != "bert" }).joined(separator: ",")]
        argv += args.forwarded(options: ["tasks", "seeds", "out", "limit", "finetune-epochs", "rounds", "data", "threads"], flags: ["no-speed"])
        log("zoo table \(argv.joined(separator: " "))")
        try TableCommand.run(try Arguments(argv, options: TableCommand.options, flags: TableCommand.flags))
    }

    static let name = "eval"
    static let summary = "evaluate a variant on a GLUE task"
    static let help = """
    zoo eval <variant> --task T [--weights DIR] [--data DIR] [--json FILE] [--split dev|test]
             [--predictions-out DIR] [--zero-shot] [--batch B] [--max-len N] [--threads N]
      Fine-tuned checkpoints (a classifier head, from `zoo finetune`): dev metrics with the official
      definitions; --split test --predictions-out DIR writes the leaderboard file (<Task>.tsv).
      --zero-shot (STS-B): cosine similarity of mean-pooled sentence embeddings against the gold
      scores, Pearson and Spearman ×100. --json FILE writes {variant, task, split, metrics, examples,
      seconds}.
    zoo eval <variant or method> [--base DIR] [--tasks …] [--seeds …] [--out DIR] [--limit N]
             [--finetune-epochs N] [--no-speed]
      Without --task: that variant's row of the seed's table — `zoo table --variants bert,<row>` with
      the table's defaults (five tasks, seed 42, runs/table, speed side by side with bert) from
      --base (default $ZOO_WEIGHTS, else weights/minilm-l6); cached cells are reused.
    """
    static let options: Set<String> = ["task", "weights", "data", "json", "split", "batch", "max-len", "threads", "predictions-out",
                                       "base", "tasks", "seeds", "out", "limit", "finetune-epochs", "rounds"]
    static let flags: Set<String> = ["zero-shot", "no-speed"]

    static func run(_ args: Arguments) throws {
        let name = try args.onlyPositional("variant name")
        guard args["task"] != nil else { return try row(name, args) }
        for option in ["base", "tasks", "seeds", "out", "limit", "rounds"] where args[option] != nil {
            throw ZooError.usage("--\(option) belongs to a table row (zoo eval \(name) without --task)")
        }
        if args.flag("no-speed") { throw ZooError.usage("--no-speed belongs to a table row (zoo eval \(name) without --task)") }
        let variant = try registry.variant(name)
        let task = try GLUETask.named(try args.required("task"))
        guard let split = Split(rawValue: args["split"] ?? "dev"), split != .train else {
            throw ZooError.usage("--split takes dev or test, got '\(args["split"]!)'")
        }
        if split == .test && args["predictions-out"] == nil { throw ZooError.usage("--split test needs --predictions-out DIR (test labels are not public)") }
        let batchSize = try args.int("batch", default: 32)!
        Runtime.setThreads(try args.int("threads"))
        let examples = try task.load(split, from: glueDirectory(args["data"]))
        let (model, dir) = try loadModel(variant, weights: args["weights"])
        let maxLen = try maxLength(args, model)
        let tok = try WordPieceTokenizer(vocabURL: dir!.appendingPathComponent("vocab.txt"))
        let start = Date()
        let progress = Progress("eval \(variant.name) \(task.glueName)")
        let predictions: [Double]
        let mode: String
        if args.flag("zero-shot") {
            guard task.name == "stsb" else { throw ZooError.usage("--zero-shot is defined for STS-B (sentence similarity); got \(task.glueName)") }
            let encodings = examples.flatMap { [tok.encode($0.textA, maxLength: maxLen), tok.encode($0.textB ?? "", maxLength: maxLen)] }
            let emb = try model.embeddings(encodings, pooling: .mean, batchSize: batchSize, progress: progress.update)
            predictions = examples.indices.map { cosine(emb[2 * $0], emb[2 * $0 + 1]) }
            mode = "zero-shot"
        } else {
            guard model.numLabels > 0 else {
                throw ZooError.badFile(path: dir!.path, problem: "no classifier head; fine-tune a model first with `zoo finetune`, or use --zero-shot")
            }
            guard model.numLabels == task.numLabels else {
                throw ZooError.badFile(path: dir!.path, problem: "classifier has \(model.numLabels) outputs, \(task.glueName) needs \(task.numLabels)")
            }
            let encodings = examples.map { tok.encode($0.textA, $0.textB, maxLength: maxLen) }
            predictions = try ZooCore.predictions(model, encodings, regression: task.isRegression, batchSize: batchSize, progress: progress.update)
            mode = "fine-tuned"
        }
        let seconds = Date().timeIntervalSince(start)
        if let dir = args["predictions-out"] {
            let url = try Leaderboard.write(task, predictions: examples.map { ($0.index, predictions[$0.index]) }, to: URL(fileURLWithPath: dir))
            log("wrote \(url.path)")
        }
        guard split == .dev else { return }
        let result = TaskResult(task: task, predictions: predictions, labels: examples.map(\.labelValue))
        print("\(variant.name) \(task.glueName) dev \(mode) (\(examples.count) examples, \(String(format: "%.1f", seconds)) s)")
        for (k, v) in result.metrics.sorted(by: { $0.key < $1.key }) { print(String(format: "  %-9@ %.2f", k, v)) }
        if task.metrics.count > 1 { print(String(format: "  score     %.2f", result.score)) }
        if let path = args["json"] {
            let obj: [String: Any] = ["variant": variant.name, "task": task.name, "split": "dev", "mode": mode,
                                      "metrics": result.metrics, "score": result.score, "examples": examples.count, "seconds": seconds]
            try writeAtomically(Data((try jsonString(obj) + "\n").utf8), to: URL(fileURLWithPath: path))
        }
    }
}

func cosine(_ a: [Float], _ b: [Float]) -> Double {
    var ab = 0.0, aa = 0.0, bb = 0.0
    for i in a.indices { ab += Double(a[i] * b[i]); aa += Double(a[i] * a[i]); bb += Double(b[i] * b[i]) }
    return ab / max((aa * bb).squareRoot(), 1e-12)
}

extension Sequence where Element: Hashable {
    /// The first element that appears a second time, if any (a list option naming a value twice).
    var firstRepeated: Element? {
        var seen = Set<Element>()
        return first { !seen.insert($0).inserted }
    }
}

/// --max-len (default 128, or the model's positions when fewer), refused beyond the model's
/// position table rather than quietly cut to it.
func maxLength(_ args: Arguments, _ model: Model) throws -> Int {
    guard let n = try args.int("max-len", range: 3...Int.max) else { return min(128, model.maxLength) }
    guard n <= model.maxLength else { throw ZooError.usage("--max-len \(n) exceeds the model's \(model.maxLength) positions") }
    return n
}
