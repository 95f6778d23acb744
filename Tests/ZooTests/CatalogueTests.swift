import Foundation
import XCTest
@testable import ZooCore

/// The catalogue of bad inputs: one row per case — a command line (and stdin) a user might give, the
/// exit code (2: bad usage, 1: bad file or data) and what the single error line must name. Every
/// row also checks that stdout is empty, nothing crashed or trapped, and the run left no output
/// (its --out, a staging folder, a temp or lock file) behind. Faults (full disk, signals) are in
/// FaultTests; malformed checkpoints in detail in ErrorTests.
final class CatalogueTests: XCTestCase {
    struct Case {
        let name: String
        let args: [String]
        var stdin = ""
        let code: Int32
        let mentions: [String]
        var stdinBytes: Data? = nil
    }

    func testCatalogue() throws {
        let ck = try Tiny.checkpoint(), glue = try FinetuneTests.tinyGLUE(train: 40)
        let tuned = try Tiny.fineTuned4Layers(glue)
        let files = try tempDir()
        let outParent = try tempDir()
        let out = outParent.appendingPathComponent("out").path
        func file(_ name: String, _ data: Data) throws -> String {
            let u = files.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: u.deletingLastPathComponent(), withIntermediateDirectories: true)
            try data.write(to: u)
            return u.path
        }
        func text(_ name: String, _ s: String) throws -> String { try file(name, Data(s.utf8)) }
        /// A copy of the tiny checkpoint with one file replaced (or removed, for nil).
        func broken(_ name: String, _ replace: String, _ data: Data?) throws -> String {
            let dir = files.appendingPathComponent(name)
            try FileManager.default.copyItem(at: ck, to: dir)
            let u = dir.appendingPathComponent(replace)
            try FileManager.default.removeItem(at: u)
            if let data { try data.write(to: u) }
            return dir.path
        }
        /// A copy of the tiny GLUE folder with RTE's train.tsv replaced.
        func badGLUE(_ name: String, train: String) throws -> String {
            let dir = files.appendingPathComponent(name)
            try FileManager.default.copyItem(at: glue, to: dir)
            try Data(train.utf8).write(to: dir.appendingPathComponent("RTE/train.tsv"))
            return dir.path
        }
        let config = try Data(contentsOf: ck.appendingPathComponent("config.json"))
        var configObj = try JSONSerialization.jsonObject(with: config) as! [String: Any]
        configObj["num_attention_heads"] = 3
        let badHeads = try JSONSerialization.data(withJSONObject: configObj)
        let weights = try Data(contentsOf: ck.appendingPathComponent("model.safetensors"))
        var hugeHeader = weights
        hugeHeader.replaceSubrange(0..<8, with: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
        let header = "index\tsentence1\tsentence2\tlabel\n"
        let corpusBad = try file("corpus-bad.txt", Data([0x68, 0x69, 0x0a, 0xff, 0xfe, 0x0a]))
        let corpusEmpty = try text("corpus-empty.txt", "")
        let tunedMetrics = ["--teacher", ck.path, "--task", "rte", "--data", glue.path, "--out", out]

        let cases: [Case] = [
            // The command line (exit 2).
            Case(name: "unknown command", args: ["frobnicate"], code: 2, mentions: ["unknown command 'frobnicate'"]),
            Case(name: "unknown variant", args: ["embed", "nosuch", "--weights", ck.path], stdin: "a\n", code: 2, mentions: ["nosuch"]),
            Case(name: "unknown option", args: ["embed", "bert", "--weights", ck.path, "--frob"], stdin: "a\n", code: 2, mentions: ["unknown option --frob"]),
            Case(name: "option without value", args: ["embed", "bert", "--weights"], code: 2, mentions: ["--weights needs a value"]),
            Case(name: "bad pooling", args: ["embed", "bert", "--weights", ck.path, "--pool", "max"], stdin: "a\n", code: 2, mentions: ["--pool", "max"]),
            Case(name: "batch 0", args: ["embed", "bert", "--weights", ck.path, "--batch", "0"], stdin: "a\n", code: 2, mentions: ["--batch", "'0'"]),
            Case(name: "batch not a number", args: ["embed", "bert", "--weights", ck.path, "--batch", "two"], stdin: "a\n", code: 2, mentions: ["--batch", "'two'"]),
            Case(name: "threads 0", args: ["embed", "bert", "--weights", ck.path, "--threads", "0"], stdin: "a\n", code: 2, mentions: ["--threads"]),
            Case(name: "max-len below 3", args: ["embed", "bert", "--weights", ck.path, "--max-len", "2"], stdin: "a\n", code: 2, mentions: ["--max-len", "'2'"]),
            Case(name: "max-len beyond positions", args: ["embed", "bert", "--weights", ck.path, "--max-len", "100000"], stdin: "a\n", code: 2,
                 mentions: ["--max-len 100000 exceeds the model's 16 positions"]),
            Case(name: "eval: unknown task", args: ["eval", "bert", "--task", "nosuch", "--weights", ck.path, "--data", glue.path], code: 2, mentions: ["nosuch"]),
            Case(name: "eval: bad split", args: ["eval", "bert", "--task", "rte", "--weights", ck.path, "--data", glue.path, "--split", "train"], code: 2, mentions: ["--split"]),
            Case(name: "finetune: no --base", args: ["finetune", "--task", "rte", "--out", out], code: 2, mentions: ["--base"]),
            Case(name: "finetune: batch 0", args: ["finetune", "--base", ck.path, "--task", "rte", "--data", glue.path, "--out", out, "--batch", "0"], code: 2, mentions: ["--batch"]),
            Case(name: "finetune: epochs 0", args: ["finetune", "--base", ck.path, "--task", "rte", "--data", glue.path, "--out", out, "--epochs", "0"], code: 2, mentions: ["--epochs"]),
            Case(name: "finetune: negative lr", args: ["finetune", "--base", ck.path, "--task", "rte", "--data", glue.path, "--out", out, "--lr", "-1"], code: 2, mentions: ["--lr"]),
            Case(name: "finetune: warmup above 1", args: ["finetune", "--base", ck.path, "--task", "rte", "--data", glue.path, "--out", out, "--warmup", "1.5"], code: 2, mentions: ["--warmup"]),
            Case(name: "finetune: max-len beyond positions", args: ["finetune", "--base", ck.path, "--task", "rte", "--data", glue.path, "--out", out, "--max-len", "64"], code: 2,
                 mentions: ["--max-len 64", "16 positions"]),
            Case(name: "finetune: task without a train split", args: ["finetune", "--base", ck.path, "--task", "qnli", "--data", glue.path, "--out", out], code: 2,
                 mentions: ["QNLI/train.tsv: no such file"]),
            Case(name: "finetune: resume without a checkpoint", args: ["finetune", "--base", ck.path, "--task", "rte", "--data", glue.path, "--out", out, "--resume"], code: 2,
                 mentions: ["--resume", "checkpoint"]),
            Case(name: "tokenize: max-len 1", args: ["tokenize", "--vocab", ck.appendingPathComponent("vocab.txt").path, "--max-len", "1"], stdin: "a\n", code: 2, mentions: ["--max-len"]),
            Case(name: "tokenize: unknown truncation", args: ["tokenize", "--vocab", ck.appendingPathComponent("vocab.txt").path, "--truncation", "left"], stdin: "a\n", code: 2,
                 mentions: ["unknown truncation 'left'"]),
            Case(name: "quantize: unknown method", args: ["quantize", "--weights", ck.path, "--method", "int4", "--out", out], code: 2, mentions: ["--method", "int4"]),
            Case(name: "quantize: budget above 8 bits", args: ["quantize", "--weights", ck.path, "--method", "mixed", "--budget-bits", "9", "--out", out], code: 2, mentions: ["--budget-bits"]),
            Case(name: "quantize: no --out", args: ["quantize", "--weights", ck.path, "--method", "int8"], code: 2, mentions: ["--out"]),
            Case(name: "quantize: mixed without a task", args: ["quantize", "--weights", ck.path, "--method", "mixed", "--out", out], code: 2, mentions: ["--calib-task"]),
            Case(name: "distill: unknown recipe", args: ["distill", "--recipe", "nosuch"] + tunedMetrics, code: 2, mentions: ["nosuch"]),
            Case(name: "prune: --augment without --distill", args: ["prune", "--weights", tuned.path, "--task", "rte", "--keep-heads", "0.5", "--augment", "1", "--data", glue.path, "--out", out], code: 2, mentions: ["--augment needs --distill"]),
            Case(name: "prune: keep-heads above 1", args: ["prune", "--weights", tuned.path, "--task", "rte", "--keep-heads", "1.5", "--data", glue.path, "--out", out], code: 2, mentions: ["--keep-heads"]),
            Case(name: "albertize: zero groups", args: ["albertize", "--weights", tuned.path, "--task", "rte", "--share", "groups:0", "--data", glue.path, "--out", out], code: 2, mentions: ["--share"]),
            Case(name: "bench: batch 0", args: ["bench", "bert", "--geometry", "minilm-l6", "--batch", "0", "--seq", "8"], code: 2, mentions: ["--batch"]),
            Case(name: "bench: unknown geometry", args: ["bench", "bert", "--geometry", "gpt5", "--batch", "1", "--seq", "8"], code: 2, mentions: ["gpt5"]),
            Case(name: "table: unknown task", args: ["table", "--base", ck.path, "--tasks", "nosuch", "--out", out], code: 2, mentions: ["nosuch"]),
            Case(name: "table: unknown variant", args: ["table", "--base", ck.path, "--tasks", "rte", "--variants", "nosuch", "--out", out], code: 2, mentions: ["nosuch"]),
            Case(name: "study: unknown study", args: ["study", "nosuch"], code: 2, mentions: ["nosuch"]),
            Case(name: "search: negative latency", args: ["search", "--task", "rte", "--latency-ms", "-1", "--base", ck.path], code: 2, mentions: ["--latency-ms"]),
            Case(name: "weights: unknown name", args: ["weights", "fetch", "nosuch"], code: 2, mentions: ["nosuch"]),
            Case(name: "SIMD level", args: ["list"], code: 2, mentions: ["ZOO_SIMD"]),
            // Files and data (exit 1).
            Case(name: "weights folder missing", args: ["embed", "bert", "--weights", files.appendingPathComponent("nowhere").path], stdin: "a\n", code: 1, mentions: ["nowhere"]),
            Case(name: "config.json missing", args: ["embed", "bert", "--weights", try broken("noconfig", "config.json", nil)], stdin: "a\n", code: 1, mentions: ["noconfig", "config.json"]),
            Case(name: "config.json not JSON", args: ["embed", "bert", "--weights", try broken("badjson", "config.json", Data("{".utf8))], stdin: "a\n", code: 1, mentions: ["badjson/config.json"]),
            Case(name: "config: hidden not divisible by heads", args: ["embed", "bert", "--weights", try broken("heads", "config.json", badHeads)], stdin: "a\n", code: 1, mentions: ["heads/config.json", "num_attention_heads"]),
            Case(name: "weights missing", args: ["embed", "bert", "--weights", try broken("noweights", "model.safetensors", nil)], stdin: "a\n", code: 1, mentions: ["noweights"]),
            Case(name: "safetensors truncated", args: ["embed", "bert", "--weights", try broken("trunc", "model.safetensors", weights.prefix(weights.count / 2))], stdin: "a\n", code: 1,
                 mentions: ["trunc/model.safetensors"]),
            Case(name: "safetensors header length huge", args: ["embed", "bert", "--weights", try broken("huge", "model.safetensors", hugeHeader)], stdin: "a\n", code: 1,
                 mentions: ["huge/model.safetensors", "header"]),
            Case(name: "safetensors empty", args: ["embed", "bert", "--weights", try broken("empty", "model.safetensors", Data())], stdin: "a\n", code: 1, mentions: ["empty/model.safetensors"]),
            Case(name: "vocab missing", args: ["embed", "bert", "--weights", try broken("novocab", "vocab.txt", nil)], stdin: "a\n", code: 1, mentions: ["novocab/vocab.txt"]),
            Case(name: "vocab without [CLS]", args: ["embed", "bert", "--weights", try broken("nocls", "vocab.txt", Data("[PAD]\n[UNK]\n[SEP]\n".utf8))], stdin: "a\n", code: 1,
                 mentions: ["nocls/vocab.txt", "[CLS]"]),
            Case(name: "vocab not UTF-8", args: ["tokenize", "--vocab", try file("v-bad.txt", Data([0xff, 0x0a]))], stdin: "a\n", code: 1, mentions: ["v-bad.txt", "UTF-8"]),
            Case(name: "stdin not UTF-8", args: ["embed", "bert", "--weights", ck.path], code: 1, mentions: ["<stdin>", "line 2", "UTF-8"], stdinBytes: Data([0x61, 0x0a, 0xff, 0x0a])),
            Case(name: "stdin two TABs", args: ["embed", "bert", "--weights", ck.path], stdin: "a\tb\tc\n", code: 1, mentions: ["<stdin>", "line 1", "TAB"]),
            Case(name: "tokenize --json: not JSON", args: ["tokenize", "--vocab", ck.appendingPathComponent("vocab.txt").path, "--json"], stdin: "a\n", code: 1, mentions: ["line 1", "JSON"]),
            Case(name: "GLUE: task folder missing", args: ["eval", "bert", "--task", "mrpc", "--weights", ck.path, "--data", glue.path], code: 2, mentions: ["MRPC/dev.tsv: no such file"]),
            Case(name: "GLUE: wrong column count", args: ["finetune", "--base", ck.path, "--task", "rte", "--out", out,
                                                          "--data", try badGLUE("cols", train: header + "0\ta\tb\n")], code: 1, mentions: ["cols/RTE/train.tsv", "line 2"]),
            Case(name: "GLUE: unknown label", args: ["finetune", "--base", ck.path, "--task", "rte", "--out", out,
                                                     "--data", try badGLUE("label", train: header + "0\ta\tb\tmaybe\n")], code: 1, mentions: ["label/RTE/train.tsv", "maybe"]),
            Case(name: "GLUE: header only", args: ["finetune", "--base", ck.path, "--task", "rte", "--out", out,
                                                   "--data", try badGLUE("nohead", train: header)], code: 1, mentions: ["nohead/RTE/train.tsv", "no examples"]),
            Case(name: "predictions: missing file", args: ["score", "--task", "rte", "--predictions", files.appendingPathComponent("none.tsv").path, "--data", glue.path], code: 1,
                 mentions: ["none.tsv"]),
            Case(name: "predictions: wrong count", args: ["score", "--task", "rte", "--predictions", try text("short.tsv", "index\tprediction\n0\tentailment\n"), "--data", glue.path],
                 code: 1, mentions: ["short.tsv"]),
            Case(name: "predictions: unknown label", args: ["score", "--task", "rte", "--predictions",
                                                            try text("lab.tsv", "index\tprediction\n" + (0..<24).map { "\($0)\tperhaps\n" }.joined()), "--data", glue.path],
                 code: 1, mentions: ["lab.tsv", "perhaps"]),
            Case(name: "corpus not UTF-8", args: ["distill", "--recipe", "tinybert", "--general-only", "--corpus", corpusBad, "--teacher", ck.path, "--out", out], code: 1,
                 mentions: ["corpus-bad.txt", "line 2", "UTF-8"]),
            Case(name: "corpus empty", args: ["distill", "--recipe", "tinybert", "--general-only", "--corpus", corpusEmpty, "--teacher", ck.path, "--out", out], code: 1,
                 mentions: ["corpus-empty.txt"]),
            Case(name: "quantize: qbert model again", args: ["quantize", "--weights", try broken("q", "config.json",
                 try JSONSerialization.data(withJSONObject: (try JSONSerialization.jsonObject(with: config) as! [String: Any]).merging(["quantization": ["method": "int8"]]) { $1 })),
                 "--method", "int8", "--out", out], code: 1, mentions: ["q/config.json"]),
        ]
        XCTAssertGreaterThanOrEqual(cases.count, 50)
        var seen = Set<String>()
        for c in cases {
            XCTAssertTrue(seen.insert(c.name).inserted, "duplicate case \(c.name)")
            let env = c.name == "SIMD level" ? ["ZOO_SIMD": "avx9000"] : [:]
            let r = try zoo(c.args, stdin: c.stdinBytes ?? Data(c.stdin.utf8), env: env)
            XCTAssertEqual(r.code, c.code, "\(c.name): \(r.stderr)")
            XCTAssertTrue(r.stdout.isEmpty, "\(c.name): stdout \(r.out.prefix(200))")
            // The error line, then only a usage line or (unknown command) a blank line and the usage text.
            let lines = r.stderr.components(separatedBy: "\n\n")[0].split(separator: "\n").filter { !$0.hasPrefix("usage:") }
            XCTAssertEqual(lines.count, 1, "\(c.name): one error line expected: \(r.stderr)")
            for m in c.mentions { XCTAssertTrue(r.stderr.contains(m), "\(c.name): '\(m)' not in: \(r.stderr)") }
            XCTAssertFalse(r.stderr.contains("Fatal error"), c.name)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: outParent.path), [], "\(c.name) left output behind")
        }
    }
}
