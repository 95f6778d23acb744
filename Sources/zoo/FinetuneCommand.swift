import Foundation
import ZooCore

struct FinetuneCommand: Command {
    static let name = "finetune"
    static let summary = "fine-tune a BERT, DistilBERT or ALBERT checkpoint on a GLUE task (resumable)"
    static let help = """
    zoo finetune --base DIR --task T [--epochs N] [--lr X] [--batch B] [--max-len L] [--warmup F]
                 [--weight-decay W] [--seed S] [--out DIR] [--resume] [--save-every N] [--limit N]
                 [--data DIR] [--threads N]
      Trains the checkpoint in --base (BERT, DistilBERT or ALBERT, as *ForSequenceClassification) on
      the task's train split (AdamW, linear warm-up over fraction F of the steps then linear decay,
      gradient clipping at 1.0, dropout from config.json, seeded shuffling and dropout). Evaluates on
      dev after every epoch.
      --out (default runs/<task>) receives an HF-compatible checkpoint (config.json, model.safetensors,
      vocab.txt) and metrics.json. Checkpoints at each epoch end and every --save-every steps
      (default 500) are written atomically; --resume continues the last one with the same recipe.
      Defaults: 3 epochs, lr 5e-5, batch 32, max length 128, warm-up 0.1, weight decay 0.01, seed 42.
    """
    static let options: Set<String> = ["base", "task", "epochs", "lr", "batch", "max-len", "warmup", "weight-decay", "seed", "out",
                                       "save-every", "limit", "data", "threads"]
    static let flags: Set<String> = ["resume"]

    static func run(_ args: Arguments) throws {
        guard args.positional.isEmpty else { throw ZooError.usage("unexpected argument '\(args.positional[0])'") }
        let task = try GLUETask.named(try args.required("task"))
        var o = FinetuneOptions()
        o.epochs = try args.int("epochs", default: o.epochs)!
        o.batch = try args.int("batch", default: o.batch)!
        o.maxLen = try args.int("max-len", default: o.maxLen, range: 3...512)!
        o.saveEvery = try args.int("save-every", default: o.saveEvery, range: 0...Int.max)!
        o.limit = try args.int("limit")
        if let s = args["seed"] { guard let v = UInt64(s) else { throw ZooError.usage("--seed takes a non-negative integer, got '\(s)'") }; o.seed = v }
        o.lr = try args.float("lr", default: o.lr, range: 0...1)
        o.warmup = try args.float("warmup", default: o.warmup, range: 0...1)
        o.weightDecay = try args.float("weight-decay", default: o.weightDecay, range: 0...10)
        Runtime.setThreads(try args.int("threads"))
        let out = URL(fileURLWithPath: args["out"] ?? "runs/\(task.name)")
        try lockOutput(out)
        let base = try Checkpoint(dir: URL(fileURLWithPath: try args.required("base")))
        if args["max-len"] != nil && o.maxLen > base.spec.positions {
            throw ZooError.usage("--max-len \(o.maxLen) exceeds the model's \(base.spec.positions) positions")
        }
        let tuner = try Finetuner(base: base, task: task, glue: glueDirectory(args["data"]), options: o, out: out)
        if args.flag("resume") {
            guard FileManager.default.fileExists(atPath: tuner.checkpointURL.path) else {
                throw ZooError.usage("--resume: nothing to resume (no \(tuner.checkpointURL.path))")
            }
            try tuner.resume()
            log("resumed from \(tuner.checkpointURL.path) at step \(tuner.trainer.step)")
        }
        if !tuner.work.initialised.isEmpty { log("initialised (not in the base checkpoint, or for another label count): \(tuner.work.initialised.joined(separator: ", "))") }
        log("fine-tuning \(base.dir.lastPathComponent) on \(task.glueName): \(tuner.batchesPerEpoch) steps/epoch × \(o.epochs) epochs, \(Runtime.threads) threads")
        var progress = Progress("train")
        var lastPosition = Int.max
        try tuner.run(log: log) { done, total in
            if done < lastPosition { progress = Progress("train") }
            lastPosition = done
            progress.update(done, total)
        }
        log("wrote \(out.path) (config.json, model.safetensors, vocab.txt, metrics.json)")
    }
}
