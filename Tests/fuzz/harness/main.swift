// libFuzzer harness for every parser of files that come from outside (README "Fuzzing").
// ZOO_FUZZ_TARGET picks the parser; an input either parses or makes it throw a ZooError that names
// the file. Anything else — a trap, a crash, another error type, a leak, a hang — is a finding.
// ZOO_FUZZ_SEEDS=DIR instead writes the generated seed files (safetensors, quantized checkpoints).
import Foundation
import QBERT
import ZooCore

enum Target: String, CaseIterable {
    case safetensors, config, vocab, tokenizer, glue, predictions, qcheckpoint, corpus, onnx
}

var target = Target.safetensors
var scratch = URL(fileURLWithPath: "/dev/shm")
var fixedTokenizer: WordPieceTokenizer?

/// A small vocabulary with continuation pieces, accents and a CJK character (the tokenizer target's).
let tinyVocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "cafe", "un", "##aff", "##able", "##s", "play", "##ing",
                 "hello", "world", "!", ".", ",", "'", "中", "é", "##é", "x", "##x"]

/// libFuzzer's entry point when the program has its own main (SwiftPM links executables with one).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// Runs `body`; a thrown error must be a ZooError whose message names `path`.
func expectZooError(_ path: String, _ body: () throws -> Void) {
    do {
        try body()
    } catch let e as ZooError {
        if !e.description.contains(path) { fatalError("ZooError does not name \(path): \(e)") }
    } catch {
        fatalError("not a ZooError: \(type(of: error)): \(error)")
    }
}

func file(_ name: String, _ data: Data) -> URL {
    let url = scratch.appendingPathComponent(name)
    try! data.write(to: url)
    return url
}

func safetensors(_ data: Data) {
    let url = file("model.safetensors", data)
    var st: SafeTensors?
    expectZooError(url.path) { st = try SafeTensors(url: url) }
    guard let st else { return }
    for name in st.names {
        let e = st.entries[name]!
        expectZooError(url.path) { _ = try st.tensor(name, shape: e.shape) }
        expectZooError(url.path) { _ = try st.raw(name, dtype: e.dtype, shape: e.shape) }
        if e.shape.count == 2 {
            expectZooError(url.path) {
                let rows = try st.rows(name, shape: e.shape)
                let ids = e.shape[0] > 0 ? [0, Int32(clamping: e.shape[0] - 1)] : []
                let dst = UnsafeMutablePointer<Float>.allocate(capacity: max(ids.count * e.shape[1], 1))
                defer { dst.deallocate() }
                try ids.withUnsafeBufferPointer { try rows.gather($0, into: dst) }
            }
        }
    }
}

func config(_ data: Data) {
    let url = file("config.json", data)
    expectZooError(url.path) {
        let spec = try HFFamily.spec(configAt: url)
        _ = spec.parameterCount
        _ = spec.flops(batch: 1, seq: 8)
        _ = try JSONSerialization.data(withJSONObject: spec.family.config(spec.withHead(numLabels: 2)))
    }
}

func vocab(_ data: Data) {
    let url = file("vocab.txt", data)
    expectZooError(url.path) {
        let tok = try WordPieceTokenizer(vocabURL: url)
        check(tok, tok.encode("Hello, unaffable world! 中文 café", maxLength: 16), maxLength: 16)
        check(tok, tok.encode("the a", "x ##x [UNK]", maxLength: 8), maxLength: 8)
    }
}

/// Text (a TAB splits a pair) through the tokenizer at several maximum lengths.
func tokenize(_ data: Data) {
    let tok = fixedTokenizer!
    let text = String(decoding: data, as: UTF8.self)
    let parts = text.split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
    for maxLength in [0, 16, 100_000] { check(tok, tok.encode(text, maxLength: maxLength), maxLength: maxLength) }
    if parts.count == 2 {
        for maxLength in [5, 100_000] { check(tok, tok.encode(parts[0], parts[1], maxLength: maxLength), maxLength: maxLength) }
    }
}

/// What every encoding must satisfy: ids from the vocabulary, one type per id, [CLS] first, the length
/// limit from 3 on (below it HF, and so the zoo, returns the sequence untruncated: longest_first
/// cannot cut a side to less than nothing).
func check(_ tok: WordPieceTokenizer, _ e: WordPieceTokenizer.Encoding, maxLength: Int) {
    let ids = e.inputIds
    precondition(ids.count == e.tokenTypeIds.count && ids.first == tok.cls && ids.last == tok.sep)
    precondition(maxLength < 3 || ids.count <= maxLength, "\(ids.count) ids for maxLength \(maxLength)")
    let top = tok.vocab.values.max() ?? 0
    precondition(ids.allSatisfy { $0 >= 0 && $0 <= top }, "id outside the vocabulary")
}

/// The text as every split of every task (`GLUETask.load` is readText + parse).
func glue(_ data: Data) {
    guard let text = String(validatingUTF8Data: data) else { return }
    let path = scratch.appendingPathComponent("task.tsv").path
    for task in GLUETask.all {
        for split in task.name == "ax" ? [Split.test] : Split.allCases {
            expectZooError(path) {
                for e in try task.parse(text, split: split, path: path) {
                    precondition(task.isPair == (e.textB != nil))
                    if let k = e.label?.classIndex { precondition(task.labels.indices.contains(k)) }
                }
            }
        }
    }
}

func predictions(_ data: Data) {
    let url = file("predictions.tsv", data)
    for task in GLUETask.all {
        expectZooError(url.path) {
            let values = try Leaderboard.read(task, url: url, count: 6)
            precondition(values.count == 6)
        }
    }
}

/// config.json, a NUL byte, model.safetensors: a checkpoint directory, opened and loaded as both Q-BERT variants.
func qcheckpoint(_ data: Data) {
    let dir = scratch.appendingPathComponent("ckpt")
    let cut = data.firstIndex(of: 0) ?? data.endIndex
    _ = file("ckpt/config.json", data[..<cut])
    _ = file("ckpt/model.safetensors", cut < data.endIndex ? data[(cut + 1)...] : Data())
    expectZooError(dir.path) {
        let ckpt = try Checkpoint(dir: dir)
        _ = try QuantSpec.load(ckpt)
        for v in QBERT.plugin.variants {
            expectZooError(dir.path) { _ = try v.load(.checkpoint(ckpt)) }
        }
    }
}

func corpus(_ data: Data) {
    let url = file("corpus.txt", data)
    expectZooError(url.path) {
        let lines = try Corpus.load(url)
        precondition(!lines.isEmpty)
    }
}

/// An ONNX file read and, when it parses, imported as a BERT encoder (the seed, tiny-bert, is the
/// 2-layer BertModel `tools/hf_reference.py onnx` exports with torch.onnx.export).
func onnx(_ data: Data) {
    let url = file("model.onnx", data)
    expectZooError(url.path) {
        let m = try ONNXModel(url: url)
        expectZooError(url.path) { _ = try ParameterStore.importBERT(m, prefix: "", heads: 2) }
    }
}

// MARK: seeds

/// The seeds no one writes by hand: tiny safetensors files and checkpoint directories packed as the
/// qcheckpoint target reads them (fp32, and int8 from `Quantizer` with group sizes 1 and 2).
func writeSeeds(_ root: URL) throws {
    let tmp = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("zoo-fuzz-seeds-\(getpid())")
    defer { try? FileManager.default.removeItem(at: tmp) }
    func put(_ target: Target, _ name: String, _ data: Data) throws {
        let dir = root.appendingPathComponent(target.rawValue)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try data.write(to: dir.appendingPathComponent(name))
    }
    // Safetensors: a few dtypes and shapes, one of each kind of entry.
    let st = tmp.appendingPathComponent("t.safetensors")
    try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    let f32 = Tensor(shape: [2, 3])
    for i in 0..<6 { f32[i] = Float(i) - 2.5 }
    try SafeTensors.write([("a.weight", RawTensor(f32)), ("b", RawTensor(dtype: .I8, shape: [4], bytes: Data([1, 255, 3, 128]))),
                           ("c", RawTensor(dtype: .F16, shape: [1, 2], bytes: Data([0, 60, 0, 188]))),
                           ("d", RawTensor(dtype: .BF16, shape: [2], bytes: Data([128, 63, 0, 64]))),
                           ("e", RawTensor(dtype: .U8, shape: [0, 5], bytes: Data()))],
                          metadata: ["format": "pt"], to: st)
    try put(.safetensors, "mixed-dtypes", try Data(contentsOf: st))
    try SafeTensors.write([("x", RawTensor(dtype: .F64, shape: [], bytes: Data(count: 8)))], to: st)
    try put(.safetensors, "scalar-f64", try Data(contentsOf: st))

    // Checkpoints: a 1-layer BERT with a 2-label head, a DistilBERT and an ALBERT, fp32 and int8.
    let specs: [(String, ModelSpec)] = [
        ("bert", ModelSpec.bert(vocab: 6, hidden: 4, layers: 1, heads: 2, ffn: 4, positions: 4).withHead(numLabels: 2)),
        ("distilbert", { var s = ModelSpec.bert(vocab: 6, hidden: 4, layers: 1, heads: 2, ffn: 4, positions: 4); s.family = .distilbert; s.types = 0; return s }()),
        ("albert", { var s = ModelSpec.bert(vocab: 6, hidden: 4, layers: 2, heads: 2, ffn: 4, positions: 4); s.family = .albert; s.embedding = 2
                     s.layers = s.layers.map { var l = $0; l.group = 0; return l }; return s }()),
    ]
    for (name, spec) in specs {
        let dir = tmp.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: spec.family.config(spec), options: [.sortedKeys]).write(to: dir.appendingPathComponent("config.json"))
        try randomStore(spec, seed: 1).safetensors().write(to: dir.appendingPathComponent("model.safetensors"))
        try Data("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\n".utf8).write(to: dir.appendingPathComponent("vocab.txt"))
        func packed(_ d: URL) throws -> Data {
            try Data(contentsOf: d.appendingPathComponent("config.json")) + Data([0]) + Data(contentsOf: d.appendingPathComponent("model.safetensors"))
        }
        try put(.qcheckpoint, "\(name)-fp32", try packed(dir))
        for group in name == "bert" ? [1, 2] : [1] {
            var options = Quantizer.Options()
            options.group = group
            let out = tmp.appendingPathComponent("\(name)-int8-g\(group)")
            try Quantizer(checkpoint: try Checkpoint(dir: dir), options: options).write(to: out)
            try put(.qcheckpoint, "\(name)-int8-g\(group)", try packed(out))
        }
    }
}

// MARK: main

let env = ProcessInfo.processInfo.environment
if let dir = env["ZOO_FUZZ_SEEDS"] {
    do { try writeSeeds(URL(fileURLWithPath: dir)) } catch { fatalError("writing seeds: \(error)") }
    exit(0)
}
guard let name = env["ZOO_FUZZ_TARGET"], let t = Target(rawValue: name) else {
    FileHandle.standardError.write(Data("zoo-fuzz: set ZOO_FUZZ_TARGET to one of: \(Target.allCases.map(\.rawValue).joined(separator: " "))\n".utf8))
    exit(2)
}
target = t
scratch = URL(fileURLWithPath: FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory())
    .appendingPathComponent("zoo-fuzz-\(t.rawValue)-\(getpid())")
try! FileManager.default.createDirectory(at: scratch.appendingPathComponent("ckpt"), withIntermediateDirectories: true)
atexit { try? FileManager.default.removeItem(at: scratch) }
if t == .tokenizer {
    let url = scratch.appendingPathComponent("tiny-vocab.txt")
    try! Data((tinyVocab.joined(separator: "\n") + "\n").utf8).write(to: url)
    fixedTokenizer = try! WordPieceTokenizer(vocabURL: url)
}
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { bytes, size in
    let data = size > 0 ? Data(bytes: bytes!, count: size) : Data()
    switch target {
    case .safetensors: safetensors(data)
    case .config: config(data)
    case .vocab: vocab(data)
    case .tokenizer: tokenize(data)
    case .glue: glue(data)
    case .predictions: predictions(data)
    case .qcheckpoint: qcheckpoint(data)
    case .corpus: corpus(data)
    case .onnx: onnx(data)
    }
    return 0
})
