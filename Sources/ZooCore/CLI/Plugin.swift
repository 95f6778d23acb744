import Foundation

/// Where a variant gets its weights: a checkpoint directory or a named random geometry.
public enum ModelSource {
    case checkpoint(Checkpoint)
    case geometry(Geometry, seed: UInt64)
}

/// A registered variant: a name users type, a description, and how to build it — from an HF
/// checkpoint or a geometry (`load`), or, for a model no HF family describes, from a directory
/// in its own format (`loadDirectory`: config.json, model.safetensors, vocab.txt of the zoo's own).
public struct Variant {
    public let name: String
    public let summary: String
    public let load: (ModelSource) throws -> Model
    public let loadDirectory: ((URL) throws -> Model)?

    public init(name: String, summary: String, load: @escaping (ModelSource) throws -> Model) {
        (self.name, self.summary, self.load, loadDirectory) = (name, summary, load, nil)
    }

    public init(name: String, summary: String, loadDirectory: @escaping (URL) throws -> Model) {
        (self.name, self.summary, self.loadDirectory) = (name, summary, loadDirectory)
        load = { _ in throw ZooError.usage("\(name) has no geometry; give --weights DIR") }
    }
}

/// A row maker of `zoo table`: how a plugin turns a fine-tuned model (or another method's result)
/// into its variant, as the zoo command that does it.
public struct Method {
    public struct Input {
        public let source: String          // the checkpoint to start from (absolute path)
        public let task: String
        public let seed: UInt64
        public let out: String             // where the result goes
        public let limit: Int?             // at most this many training examples (zoo table --limit)
        public let finetuneEpochs: Int?    // epochs of the base's fine-tuning, the bert row (zoo table --finetune-epochs)
        public let shared: String?         // the method's task-independent artefact (`prepare`)

        public init(source: String, task: String, seed: UInt64, out: String, limit: Int?, finetuneEpochs: Int? = nil, shared: String?) {
            (self.source, self.task, self.seed, self.out, self.limit, self.finetuneEpochs, self.shared) = (source, task, seed, out, limit, finetuneEpochs, shared)
        }
    }

    public let name: String
    /// The variant that runs the result (`zoo eval <variant>`).
    public let variant: String
    public let summary: String
    /// Arguments after `zoo` that write the result into `input.out`.
    public let make: (Input) -> [String]
    /// A task-independent step run once per seed, before any task (TinyBERT's general student):
    /// arguments after `zoo` given the base model, the seed, the output directory and the table's
    /// --limit (at most this many training examples or sentences).
    public let prepare: ((_ base: String, _ seed: UInt64, _ out: String, _ limit: Int?) -> [String])?
    /// The name the prepared artefact is kept under (methods with the same one share it).
    public let shared: String
    /// Whether `make` continues an interrupted run when given --resume.
    public let resumable: Bool
    /// The shape this method gives a model at another scale (`zoo table`'s speed at the bert-base
    /// geometry): from `result` (what it made here) and `source` (what it started from), the model
    /// it would make from `target` (the source's counterpart at that scale). nil: the method makes no
    /// such model (its result need not even be a transformer checkpoint).
    public typealias Rescale = (_ result: ModelSpec, _ source: ModelSpec, _ target: ModelSpec) -> ModelSpec
    public let geometry: Rescale?

    public init(name: String, variant: String, summary: String, resumable: Bool = false, shared: String? = nil,
                prepare: ((String, UInt64, String, Int?) -> [String])? = nil,
                geometry: Rescale?,
                make: @escaping (Input) -> [String]) {
        (self.name, self.variant, self.summary, self.resumable, self.prepare, self.geometry, self.make) = (name, variant, summary, resumable, prepare, geometry, make)
        self.shared = shared ?? name
    }
}

/// What a plugin folder exports: its variants, its own commands (e.g. `zoo quantize`) and its
/// `zoo table` rows.
public struct Plugin {
    public let variants: [Variant]
    public let commands: [Command.Type]
    public let methods: [Method]

    public init(variants: [Variant], commands: [Command.Type] = [], methods: [Method] = []) {
        (self.variants, self.commands, self.methods) = (variants, commands, methods)
    }
}

/// Variants and plugin commands by name. The CLI builds one from every plugin (Sources/zoo/Registry.swift).
public struct Registry {
    public let variants: [Variant]
    public let commands: [Command.Type]
    public let methods: [Method]

    public init(_ plugins: Plugin...) {
        variants = plugins.flatMap(\.variants)
        commands = plugins.flatMap(\.commands)
        methods = plugins.flatMap(\.methods)
        precondition(Set(methods.map(\.name)).count == methods.count, "two plugins register the same table method")
        precondition(Set(variants.map(\.name)).count == variants.count, "two plugins register the same variant name")
        precondition(Set(commands.map { $0.name }).count == commands.count, "two plugins register the same command name")
    }

    public func variant(_ name: String) throws -> Variant {
        guard let v = variants.first(where: { $0.name == name }) else {
            throw ZooError.usage("unknown variant '\(name)'; `zoo list` shows the registered ones: \(variants.map(\.name).joined(separator: ", "))")
        }
        return v
    }
}

/// Loads a variant from `--weights DIR` (or `--geometry NAME`, where the command allows it); the
/// directory, when there is one, holds the tokenizer's vocab.txt.
public func loadModel(_ variant: Variant, weights: String?, geometry: String? = nil) throws -> (Model, URL?) {
    if let geometry {
        guard weights == nil else { throw ZooError.usage("give --weights or --geometry, not both") }
        guard let g = Geometry(rawValue: geometry) else {
            throw ZooError.usage("unknown geometry '\(geometry)'; known: \(Geometry.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return (try variant.load(.geometry(g, seed: 1)), nil)
    }
    let dir = URL(fileURLWithPath: weights ?? ProcessInfo.processInfo.environment["ZOO_WEIGHTS"] ?? "weights/minilm-l6")
    if let own = variant.loadDirectory { return (try own(dir), dir) }
    return (try variant.load(.checkpoint(try Checkpoint(dir: dir))), dir)
}
