import Foundation
import ZooCore

public struct QuantizeCommand: Command {
    public static let name = "quantize"
    public static let summary = "post-training quantization for the Q-BERT variants (int8, or Hessian-guided mixed precision)"
    public static let help = """
    zoo quantize --weights DIR --method int8|mixed --out DIR [--budget-bits B] [--group G]
                 [--calib-task T] [--calib-examples N] [--iterations N] [--data DIR] [--threads N]
      Quantizes the fp32 checkpoint in --weights and writes a checkpoint the qbert-<method> variant
      loads (config.json with a "quantization" entry, model.safetensors with int8 / bit-packed weights
      and float32 scales, vocab.txt). Biases, LayerNorm and the classification head stay float32.
      int8:  8-bit weights in every encoder Linear and embedding table.
      mixed: Q-BERT's method: the top Hessian eigenvalue of the task loss for each encoder layer and
             for the embeddings (power iteration on Hessian-vector products over --calib-examples
             training examples of --calib-task, default 64 and the task the checkpoint was fine-tuned
             on), then bit widths 3-8 per unit, lowest predicted loss first, until the mean bits per
             weight (scales included) is at most --budget-bits (default 5.0, ~1/6 of fp32 bytes).
      --group G: rows sharing one weight scale (default 1 = per output channel; 64 = per head for Q/K/V).
      Prints the parameter count, bytes on disk and bits per weight of the result.
    """
    public static let options: Set<String> = ["weights", "method", "out", "budget-bits", "group", "calib-task", "calib-examples", "iterations", "data", "threads"]
    public static let flags: Set<String> = []

    public static func run(_ args: Arguments) throws {
        guard args.positional.isEmpty else { throw ZooError.usage("unexpected argument '\(args.positional[0])'") }
        Runtime.setThreads(try args.int("threads"))
        var o = Quantizer.Options()
        let m = try args.required("method")
        guard let method = Quantizer.Method(rawValue: m) else { throw ZooError.usage("--method takes int8 or mixed, got '\(m)'") }
        o.method = method
        o.group = try args.int("group", default: o.group)!
        o.calibExamples = try args.int("calib-examples", default: o.calibExamples)!
        o.iterations = try args.int("iterations", default: o.iterations)!
        o.budgetBits = Double(try args.float("budget-bits", default: Float(o.budgetBits), range: 2...8))
        let out = URL(fileURLWithPath: try args.required("out"))
        try lockOutput(out)
        let ckpt = try Checkpoint(dir: URL(fileURLWithPath: try args.required("weights")))
        var q = try Quantizer(checkpoint: ckpt, options: o)
        if method == .mixed {
            guard let taskName = args["calib-task"] ?? ckpt.fineTunedTask() else {
                throw ZooError.usage("--calib-task is needed (no metrics.json from zoo finetune in \(ckpt.dir.path))")
            }
            let task = try GLUETask.named(taskName)
            let examples = Array(try task.load(.train, from: glueDirectory(args["data"])).prefix(o.calibExamples))
            log("calibration: \(examples.count) \(task.glueName) training examples, \(o.iterations) power iterations per unit")
            try q.estimateSensitivity(calibration: try task.batches(examples, tokenizer: ckpt.tokenizer(), maxLength: min(128, ckpt.spec.positions)), log: log)
            try q.allocateBits(log: log)
        }
        try q.write(to: out)
        let fp32 = try size(ckpt.dir.appendingPathComponent("model.safetensors"))
        let bytes = try size(out.appendingPathComponent("model.safetensors"))
        let params = ckpt.tensors.entries.values.map(\.count).reduce(0, +)
        print(String(format: "%@: %d parameters, %d bytes on disk (%.3f× the fp32 file's %d), %.2f bits per parameter",
                     out.path, params, bytes, Double(bytes) / Double(fp32), fp32, Double(bytes) * 8 / Double(params)))
    }

    static func size(_ url: URL) throws -> Int { (try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0 }
}
