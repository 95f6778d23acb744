import Foundation

/// Where a variant gets its weights: a checkpoint directory or a named random geometry.
public enum ModelSource {
    case checkpoint(Checkpoint)
    case geometry(Geometry, seed: UInt64)
}

/// A registered variant: a name users type, a description, and how to build it.
public struct Variant {
    public let name: String
    public let summary: String
    public let load: (ModelSource) throws -> Model

    public init(name: String, summary: String, load: @escaping (ModelSource) throws -> Model) {
        self.name = name
        self.summary = summary
        self.load = load
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

/// Loads a variant from `--weights DIR` (or `--geometry NAME`, where the command allows it).
public func loadModel(_ variant: Variant, weights: String?, geometry: String? = nil) throws -> (Model, Checkpoint?) {
    if let geometry {
        guard weights == nil else { throw ZooError.usage("give --weights or --geometry, not both") }
        guard let g = Geometry(rawValue: geometry) else {
            throw ZooError.usage("unknown geometry '\(geometry)'; known: \(Geometry.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return (try variant.load(.geometry(g, seed: 1)), nil)
    }
    let dir = weights ?? ProcessInfo.processInfo.environment["ZOO_WEIGHTS"] ?? "weights/minilm-l6"
    let ckpt = try Checkpoint(dir: URL(fileURLWithPath: dir))
    return (try variant.load(.checkpoint(ckpt)), ckpt)
}
