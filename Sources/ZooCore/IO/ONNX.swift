import Foundation

/// The part of an ONNX model the zoo reads to import an exported encoder: the float initializers
/// and the graph's nodes (operator, inputs, outputs, float attributes). A minimal reader of the
/// protobuf wire format of onnx.proto's ModelProto; anything malformed is an error naming the file.
public struct ONNXModel {
    public struct Node {
        public var op = "", inputs: [String] = [], outputs: [String] = [], floats: [String: Float] = [:]
    }
    public private(set) var initializers: [String: Tensor] = [:]
    public private(set) var nodes: [Node] = []
    public let path: String

    public init(url: URL) throws {
        path = url.path
        guard let data = readFile(url) else { throw ZooError.badFile(path: path, problem: "cannot read file (missing or unreadable)") }
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            var model = Wire(raw, path: path)
            var graphs = 0
            while let (field, value) = try model.next() {
                guard field == 7 else { continue }      // ModelProto.graph
                graphs += 1
                var graph = try value.message()
                while let (f, v) = try graph.next() {
                    if f == 1 { nodes.append(try Self.node(v.message())) }                 // GraphProto.node
                    if f == 5, let (name, t) = try Self.tensor(v.message()) { initializers[name] = t }   // .initializer
                }
            }
            guard graphs == 1 else { throw ZooError.badFile(path: path, problem: "not an ONNX model (\(graphs) graphs; expected 1)") }
        }
    }

    /// NodeProto: input 1, output 2, op_type 4, attribute 5 (AttributeProto: name 1, f 2).
    static func node(_ m: Wire) throws -> Node {
        var m = m, n = Node()
        while let (f, v) = try m.next() {
            switch f {
            case 1: n.inputs.append(try v.string())
            case 2: n.outputs.append(try v.string())
            case 4: n.op = try v.string()
            case 5:
                var a = try v.message(), name = "", value: Float?
                while let (af, av) = try a.next() {
                    if af == 1 { name = try av.string() }
                    if af == 2 { value = try av.float() }
                }
                if let value { n.floats[name] = value }
            default: break
            }
        }
        return n
    }

    /// TensorProto: dims 1, data_type 2 (1 = FLOAT), float_data 4, name 8, raw_data 9,
    /// data_location 14 (1 = EXTERNAL). Tensors of other types are skipped (nil).
    static func tensor(_ m: Wire) throws -> (String, Tensor)? {
        var m = m, dims: [Int] = [], type = 0, name = "", raw: UnsafeRawBufferPointer?, floats: [Float] = [], external = false
        while let (f, v) = try m.next() {
            switch f {
            case 1: dims += try v.varints()
            case 2: type = try v.int()
            case 4: floats += try v.floats()
            case 8: name = try v.string()
            case 9: raw = try v.bytes()
            case 14: external = try v.int() == 1
            default: break
            }
        }
        guard type == 1 else { return nil }
        guard !external else { throw m.bad("tensor '\(name)' keeps its data in an external file (not supported)") }
        guard dims.allSatisfy({ $0 >= 0 && $0 <= ConfigReader.maxSize }), dims.count <= 8 else { throw m.bad("tensor '\(name)' has dims \(dims)") }
        // The data must be there before anything is allocated for it (so a file cannot ask for more memory than its size).
        let count = dims.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow || $0 * $1 > Int.max / 4 ? Int.max / 4 : $0 * $1 }
        let have = raw.map { $0.count } ?? 4 * floats.count
        guard have == 4 * count else {
            throw m.bad("tensor '\(name)': \(raw == nil ? "\(floats.count) values" : "\(have) bytes") of data for dims \(dims)")
        }
        let t = Tensor(shape: dims.isEmpty ? [1] : dims)
        if let raw, count > 0 {
            UnsafeMutableRawPointer(t.data).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
        } else {
            t.data.update(from: floats, count: count)
        }
        return (name, t)
    }

    /// The node that takes `name` as an input, with `op`.
    public func consumer(of name: String, op: String) -> Node? { nodes.first { $0.op == op && $0.inputs.contains(name) } }
    public func producer(of name: String) -> Node? { nodes.first { $0.outputs.contains(name) } }
}

extension ParameterStore {
    /// A BERT encoder exported to ONNX from HF's BertModel (torch.onnx.export, as the
    /// sentence-transformers ONNX packages are): every tensor named `prefix` + its base-model name
    /// (`embeddings.word_embeddings.weight`, …), except the Linear weights, which the exporter
    /// stores transposed under anonymous names (`onnx::MatMul_470`, [in, out]); each is found as
    /// the MatMul whose output the Add of its named bias takes. The geometry comes from the tensors'
    /// shapes, the LayerNorm epsilon from the graph; the head count is not in an ONNX file and is
    /// given. The result has no pooler (the exports drop the unused one) and no task head.
    public static func importBERT(_ onnx: ONNXModel, prefix: String, heads: Int) throws -> ParameterStore {
        func bad(_ m: String) -> ZooError { .badFile(path: onnx.path, problem: m) }
        let names = HFFamily.bert.names
        func named(_ hf: String) -> String { prefix + String(hf.dropFirst(names.prefix.count)) }
        guard let word = onnx.initializers[named(names.word)], word.shape.count == 2,
              let position = onnx.initializers[named(names.position)], position.shape.count == 2 else {
            throw bad("no BERT embeddings named '\(named(names.word))' (is the tensor prefix right?)")
        }
        let H = word.shape[1]
        var layers = 0
        while layers <= ConfigReader.maxLayers, onnx.initializers[named(names.layer(layers).query + ".bias")] != nil { layers += 1 }
        guard layers > 0, let up = onnx.initializers[named(names.layer(0).up + ".bias")] else { throw bad("no encoder layers under '\(prefix)'") }
        guard layers <= ConfigReader.maxLayers, H <= ConfigReader.maxSize, up.shape.count == 1, up.count <= ConfigReader.maxSize else {
            throw bad("\(layers) layers of width \(H), FFN bias of shape \(up.shape): not a BERT the zoo runs")
        }
        guard heads > 0, H % heads == 0 else { throw bad("hidden size \(H) is not divisible by \(heads) heads") }
        guard onnx.nodes.contains(where: { $0.op == "Erf" }) else { throw bad("no Erf node: only BERT's erf GELU is imported") }
        guard let eps = onnx.nodes.first(where: { $0.op == "LayerNormalization" })?.floats["epsilon"] else {
            throw bad("no LayerNormalization node with an epsilon")
        }
        var spec = ModelSpec.bert(vocab: word.shape[0], hidden: H, layers: layers, heads: heads, ffn: up.count, positions: position.shape[0])
        guard let types = onnx.initializers[named(names.tokenType!)] else {
            throw bad("no '\(named(names.tokenType!))' (an export that folded the token-type row into another tensor is not supported)")
        }
        spec.types = types.shape.first ?? 0
        spec.layerNormEps = eps
        try spec.validate(path: onnx.path)
        // Every parameter comes from a tensor in the file: no more than it holds (before allocating).
        guard spec.parameterCount <= onnx.initializers.values.map(\.count).reduce(0, +) else {
            throw bad("the geometry its shapes give (\(spec.parameterCount) parameters) is more than the file's tensors hold")
        }
        let store = ParameterStore(spec: spec, trainable: false)
        for s in store.slots {
            var t = onnx.initializers[named(s.name)]
            if t == nil, s.shape.count == 2, s.name.hasSuffix(".weight") {
                // Add(MatMul(x, W), bias) or Add(bias, MatMul(x, W)): W is [in, out].
                let bias = named(String(s.name.dropLast(".weight".count)) + ".bias")
                if let add = onnx.consumer(of: bias, op: "Add"),
                   let matmul = add.inputs.lazy.compactMap({ onnx.producer(of: $0) }).first(where: { $0.op == "MatMul" }),
                   matmul.inputs.count == 2, let w = onnx.initializers[matmul.inputs[1]], w.shape == [s.shape[1], s.shape[0]] {
                    let (rows, cols) = (s.shape[1], s.shape[0])
                    t = Tensor(shape: s.shape)
                    for i in 0..<rows { for j in 0..<cols { t![j * rows + i] = w[i * cols + j] } }
                }
            }
            guard let t, t.shape == s.shape else {
                throw bad("no tensor for '\(s.name)' of shape \(s.shape)" + (t.map { " (found \($0.shape))" } ?? ""))
            }
            store.view(s.name).value.update(from: t.data, count: s.count)
        }
        return store
    }
}

/// Protobuf wire format over a byte range: (field number, value) pairs in order.
struct Wire {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var at = 0

    init(_ bytes: UnsafeRawBufferPointer, path: String) { (self.bytes, self.path) = (bytes, path) }

    func bad(_ problem: String) -> ZooError { .badFile(path: path, problem: "malformed ONNX: \(problem)") }

    enum Value {
        case varint(UInt64), fixed64(UInt64), fixed32(UInt32), bytes(Wire)
    }

    mutating func varint() throws -> UInt64 {
        var v: UInt64 = 0
        for shift in stride(from: 0, to: 64, by: 7) {
            guard at < bytes.count else { throw bad("a number runs past the end of its message (truncated file?)") }
            let b = bytes[at]
            at += 1
            v |= UInt64(b & 0x7F) << UInt64(shift)
            if b < 0x80 { return v }
        }
        throw bad("a number longer than 10 bytes")
    }

    mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - at else { throw bad("a field of \(n) bytes runs past the end of its message (truncated file?)") }
        defer { at += n }
        return UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)])
    }

    /// The next field, nil at the end.
    mutating func next() throws -> (Int, Field)? {
        guard at < bytes.count else { return nil }
        let key = try varint()
        let field = Int(truncatingIfNeeded: key >> 3)
        guard field > 0 else { throw bad("field number 0") }
        switch key & 7 {
        case 0: return (field, Field(value: .varint(try varint()), path: path))
        case 1: return (field, Field(value: .fixed64(try take(8).loadUnaligned(as: UInt64.self)), path: path))
        case 5: return (field, Field(value: .fixed32(try take(4).loadUnaligned(as: UInt32.self)), path: path))
        case 2:
            let n = try varint()
            return (field, Field(value: .bytes(Wire(try take(Int(min(n, UInt64(Int.max)))), path: path)), path: path))
        default: throw bad("wire type \(key & 7) (groups are not used by ONNX)")
        }
    }

    /// One field's value, read as what onnx.proto says it is.
    struct Field {
        let value: Value
        let path: String

        func bad(_ problem: String) -> ZooError { .badFile(path: path, problem: "malformed ONNX: \(problem)") }

        func message() throws -> Wire {
            guard case .bytes(let w) = value else { throw bad("a message field holds a number") }
            return w
        }
        func bytes() throws -> UnsafeRawBufferPointer { try message().bytes }
        func string() throws -> String {
            guard let s = String(validatingUTF8Data: Data(try bytes())) else { throw bad("a name is not UTF-8") }
            return s
        }
        func int() throws -> Int {
            guard case .varint(let v) = value else { throw bad("an integer field holds another wire type") }
            return Int(truncatingIfNeeded: v)
        }
        func float() throws -> Float {
            guard case .fixed32(let v) = value else { throw bad("a float field holds another wire type") }
            return Float(bitPattern: v)
        }
        /// repeated int64: packed (one length-delimited run) or one varint per field.
        func varints() throws -> [Int] {
            if case .varint(let v) = value { return [Int(truncatingIfNeeded: v)] }
            var w = try message(), out: [Int] = []
            while w.at < w.bytes.count { out.append(Int(truncatingIfNeeded: try w.varint())) }
            return out
        }
        /// repeated float: packed or one fixed32 per field.
        func floats() throws -> [Float] {
            if case .fixed32(let v) = value { return [Float(bitPattern: v)] }
            let b = try bytes()
            guard b.count % 4 == 0 else { throw bad("packed floats of \(b.count) bytes") }
            return (0..<(b.count / 4)).map { Float(bitPattern: b.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
        }
    }
}
