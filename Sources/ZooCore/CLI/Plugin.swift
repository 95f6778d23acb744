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

/// What a plugin folder exports: its variants and its own commands (e.g. `zoo quantize`).
public struct Plugin {
    public let variants: [Variant]
    public let commands: [Command.Type]

    public init(variants: [Variant], commands: [Command.Type] = []) {
        (self.variants, self.commands) = (variants, commands)
    }
}

/// Variants and plugin commands by name. The CLI builds one from every plugin (Sources/zoo/Registry.swift).
public struct Registry {
    public let variants: [Variant]
    public let commands: [Command.Type]

    public init(_ plugins: Plugin...) {
        variants = plugins.flatMap(\.variants)
        commands = plugins.flatMap(\.commands)
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
