import Foundation
import ZooCore

struct BenchCommand: Command {
    static let name = "bench"
    static let summary = "time forward passes of a variant"
    static let help = """
    zoo bench <variant> (--weights DIR | --geometry bert-base|minilm-l6|tinybert-4l) --batch B --seq S
              [--threads N] [--iters N] [--warmup N] [--json]
      Forward passes after warm-up on random token ids: min and median latency, sequences/s, GFLOPS
      achieved, and the OpenBLAS core type in use. --geometry builds random weights of that shape.
    """
    static let options: Set<String> = ["weights", "geometry", "batch", "seq", "threads", "iters", "warmup"]
    static let flags: Set<String> = ["json"]

    static func run(_ args: Arguments) throws {
        let variant = try registry.variant(try args.onlyPositional("variant name"))
        let batchSize = try args.int("batch", default: 1)!
        let seq = try args.int("seq", default: 128, range: 1...100_000)!
        Runtime.setThreads(try args.int("threads"))
        let (model, _) = try loadModel(variant, weights: args["weights"], geometry: args["geometry"])
        guard seq <= model.config.maxPositionEmbeddings else { throw ZooError.usage("--seq \(seq) exceeds max_position_embeddings \(model.config.maxPositionEmbeddings)") }
        let batch = Batch(randomWithSize: batchSize, seqLen: seq, vocabSize: model.config.vocabSize)
        let r = try Bench.run(model, batch: batch, warmup: try args.int("warmup", default: 2, range: 0...1000)!, iterations: try args.int("iters"))
        if args.flag("json") {
            var obj = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(r)) as! [String: Any]
            obj["variant"] = variant.name
            obj["model"] = args["geometry"] ?? args["weights"] ?? "default"
            obj["parameters"] = model.parameterCount
            print(try jsonString(obj))
        } else {
            print("\(variant.name) \(args["geometry"] ?? args["weights"] ?? "") b=\(r.batch) s=\(r.seq) threads=\(r.threads) OpenBLAS core: \(r.blasCore)")
            print(String(format: "  min %.2f ms  median %.2f ms  %.1f seq/s  %.1f GFLOPS  (%d runs, %d parameters)",
                         r.minMs, r.medianMs, r.sequencesPerSecond, r.gflops, r.iterations, model.parameterCount))
        }
    }
}
