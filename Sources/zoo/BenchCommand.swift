import Foundation
import ZooCore

struct BenchCommand: Command {
    static let name = "bench"
    static let summary = "time forward passes of a variant"
    static let help = """
    zoo bench <variant> (--weights DIR | --geometry bert-base|bert-large|minilm-l6|tinybert-4l) --batch B --seq S
              [--threads N] [--iters N] [--warmup N] [--chunk-tokens N] [--json]
    zoo bench <variant> --weights DIR --task T [--data DIR] [--batch B] [--max-len N] [--threads N] [--json]
      Forward passes after warm-up on random token ids: min and median latency, sequences/s, GFLOPS
      achieved, and the OpenBLAS core type in use. --geometry builds random weights of that shape.
      --chunk-tokens overrides how many tokens the encoder runs through its layers at a time.
      With --task: whole passes over the task's dev split (tokenized beforehand, length-sorted
      batches of B, each padded to its longest sequence), median seconds and sentences/s.
    """
    static let options: Set<String> = ["weights", "geometry", "batch", "seq", "threads", "iters", "warmup", "task", "data", "max-len", "chunk-tokens"]
    static let flags: Set<String> = ["json"]

    static func run(_ args: Arguments) throws {
        let variant = try registry.variant(try args.onlyPositional("variant name"))
        let batchSize = try args.int("batch", default: 1)!
        let seq = try args.int("seq", default: 128, range: 1...100_000)!
        Runtime.setThreads(try args.int("threads"))
        let (model, dir) = try loadModel(variant, weights: args["weights"], geometry: args["geometry"])
        if let n = try args.int("chunk-tokens") {
            guard let chunked = model as? ChunkedModel else { throw ZooError.usage("\(variant.name) does not encode in chunks; --chunk-tokens does not apply") }
            chunked.chunkTokens = n
        }
        if let taskName = args["task"] {
            guard let dir else { throw ZooError.usage("--task needs --weights (a tokenizer)") }
            try devPass(variant, model, dir, task: try GLUETask.named(taskName), batchSize: batchSize, args: args)
            return
        }
        guard seq <= model.maxLength else { throw ZooError.usage("--seq \(seq) exceeds max_position_embeddings \(model.maxLength)") }
        let batch = Batch(randomWithSize: batchSize, seqLen: seq, vocabSize: model.vocab)
        let r = try Bench.run(model, batch: batch, warmup: try args.int("warmup", default: 2, range: 0...1000)!, iterations: try args.int("iters"))
        if args.flag("json") {
            var obj = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(r)) as! [String: Any]
            obj["variant"] = variant.name
            obj["model"] = args["geometry"] ?? args["weights"] ?? "default"
            obj["parameters"] = model.parameterCount
            obj["peak_rss_bytes"] = Runtime.peakRSS
            obj["cpu"] = Runtime.cpuName
            print(try jsonString(obj))
        } else {
            print("\(variant.name) \(args["geometry"] ?? args["weights"] ?? "") b=\(r.batch) s=\(r.seq) threads=\(r.threads) OpenBLAS core: \(r.blasCore)")
            print("  CPU: \(Runtime.cpuName)")
            print(String(format: "  min %.2f ms  median %.2f ms  %.1f seq/s  %.1f GFLOPS  (%d runs, %d parameters, peak RSS %.1f MiB)",
                         r.minMs, r.medianMs, r.sequencesPerSecond, r.gflops, r.iterations, model.parameterCount, Double(Runtime.peakRSS) / 1048576))
        }
    }

    static func devPass(_ variant: Variant, _ model: Model, _ dir: URL, task: GLUETask, batchSize: Int, args: Arguments) throws {
        let examples = try task.load(.dev, from: glueDirectory(args["data"]))
        let tok = try WordPieceTokenizer(vocabURL: dir.appendingPathComponent("vocab.txt"))
        let maxLen = try args.int("max-len", default: 128, range: 3...512)!
        let enc = examples.map { tok.encode($0.textA, $0.textB, maxLength: maxLen) }
        let order = enc.indices.sorted { enc[$0].inputIds.count < enc[$1].inputIds.count }
        let batches = stride(from: 0, to: order.count, by: batchSize).map { s in Batch(order[s..<min(s + batchSize, order.count)].map { enc[$0] }) }
        let (median, best) = try Bench.passes(model, batches: batches)
        let tokens = enc.map(\.inputIds.count).reduce(0, +)
        if args.flag("json") {
            print(try jsonString(["variant": variant.name, "task": task.name, "examples": examples.count, "batch": batchSize, "tokens": tokens,
                                  "median_s": median, "min_s": best, "sentences_per_s": Double(examples.count) / median,
                                  "threads": Runtime.threads, "openblas_core": Runtime.blasCoreType, "cpu": Runtime.cpuName] as [String: Any]))
        } else {
            print("\(variant.name) \(task.glueName) dev pass: \(examples.count) examples, \(tokens) tokens, batches of \(batchSize), threads=\(Runtime.threads)")
            print("  CPU: \(Runtime.cpuName)")
            print(String(format: "  median %.3f s  min %.3f s  %.1f sentences/s", median, best, Double(examples.count) / median))
        }
    }
}
