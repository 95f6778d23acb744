import CKernels
import Foundation
import XCTest
@testable import ZooCore

/// Paths the tests read. Set up by tools/test.sh (README): weights fetched, references dumped.
enum Paths {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = root.appendingPathComponent("Tests/ZooTests/Fixtures")
    static var env: [String: String] { ProcessInfo.processInfo.environment }

    static var weights: URL { URL(fileURLWithPath: env["ZOO_WEIGHTS"] ?? root.appendingPathComponent("weights/minilm-l6").path) }
    static var reference: URL { URL(fileURLWithPath: env["ZOO_REF_DIR"] ?? root.appendingPathComponent(".cache/ref").path) }
    static var glue: URL {
        if let g = env["ZOO_GLUE_DIR"], !g.isEmpty { return URL(fileURLWithPath: g) }
        let shared = root.deletingLastPathComponent().appendingPathComponent("shared/glue")
        return FileManager.default.fileExists(atPath: shared.path) ? shared : root.appendingPathComponent("data/glue")
    }
    static var zoo: URL {
        // The xctest bundle sits next to the built products.
        let dir = Bundle.main.bundleURL.hasDirectoryPath ? Bundle.main.bundleURL : Bundle.main.bundleURL.deletingLastPathComponent()
        for d in [dir, dir.deletingLastPathComponent()] where FileManager.default.isExecutableFile(atPath: d.appendingPathComponent("zoo").path) {
            return d.appendingPathComponent("zoo")
        }
        return root.appendingPathComponent(".build/debug/zoo")
    }
}

/// Fails the test (not skips) when a prerequisite the test command sets up is missing.
func require(_ url: URL, _ hint: String, file: StaticString = #filePath, line: UInt = #line) throws {
    if !FileManager.default.fileExists(atPath: url.path) {
        XCTFail("\(url.path) is missing: \(hint)", file: file, line: line)
        throw XCTSkip("prerequisite missing")
    }
}

struct RunResult {
    var code: Int32
    var stdout: Data
    var stderr: String
    var out: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs the built `zoo` binary like a user would; optionally with a file-size limit (RLIMIT_FSIZE,
/// through bash's `ulimit -f`: a full disk for files above it), sent a signal after a delay, or sent
/// a signal once its stderr contains a text (with ZOO_PAUSE_AT_STEP: at a known training step).
@discardableResult
func zoo(_ args: [String], stdin: Data = Data(), env extra: [String: String] = [:], cwd: URL? = nil,
         fileSizeLimitKB: Int? = nil, signal: (number: Int32, afterMs: Int)? = nil,
         signalWhen: (number: Int32, stderrContains: String)? = nil) throws -> RunResult {
    let p = Process()
    if let kb = fileSizeLimitKB {
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", "ulimit -f \(kb) && exec \"$0\" \"$@\"", Paths.zoo.path] + args
    } else {
        p.executableURL = Paths.zoo
        p.arguments = args
    }
    var env = ProcessInfo.processInfo.environment
    for (k, v) in extra { env[k] = v }
    p.environment = env
    if let cwd { p.currentDirectoryURL = cwd }
    let i = Pipe(), o = Pipe(), e = Pipe()
    p.standardInput = i; p.standardOutput = o; p.standardError = e
    try p.run()
    if let signal {
        let pid = p.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(signal.afterMs)) { kill(pid, signal.number) }
    }
    i.fileHandleForWriting.write(stdin)
    try i.fileHandleForWriting.close()
    final class Box: @unchecked Sendable { var data = Data() }
    let outBox = Box()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { outBox.data = o.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    var errData = Data()
    while case let chunk = e.fileHandleForReading.availableData, !chunk.isEmpty {   // what is there, as it comes
        let seen = errData.count
        errData.append(chunk)
        // Look from a little before the new bytes, so a text split across two reads is found (once).
        if let signalWhen, String(decoding: errData[max(0, seen - signalWhen.stderrContains.utf8.count + 1)...], as: UTF8.self).contains(signalWhen.stderrContains) {
            kill(p.processIdentifier, signalWhen.number)
        }
    }
    group.wait()
    p.waitUntilExit()
    return RunResult(code: p.terminationStatus, stdout: outBox.data, stderr: String(decoding: errData, as: UTF8.self))
}

extension SafeTensors {
    /// An I32 tensor of a reference dump (token ids, types, lengths) as an array.
    func int32s(_ name: String) throws -> [Int32] {
        Array(UnsafeBufferPointer(start: try rawPointer(name).assumingMemoryBound(to: Int32.self), count: try entry(name).count))
    }
}

/// The test process's temporary folder, holding every `tempDir()`; removed when the process exits
/// (a full run makes thousands of them, tens of GB with the tables' and studies' checkpoints).
let testRoot: URL = {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("zoo-test-\(getpid())-\(UUID().uuidString.prefix(8))")
    atexit { try? FileManager.default.removeItem(at: testRoot) }
    return d
}()

func tempDir() throws -> URL {
    let d = testRoot.appendingPathComponent(UUID().uuidString)
    try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
    return d
}

/// Largest |a - b| over `b.count` elements, a read from element `offset` on.
func maxAbsDiff(_ a: Tensor, _ b: Tensor, offset: Int = 0) -> Float {
    var m: Float = 0
    for i in 0..<b.count { m = max(m, abs(a[offset + i] - b[i])) }
    return m
}

/// What `tools/hf_reference.py args` prints (stdout), run by the tools venv's Python (or $ZOO_PYTHON).
func hfReference(_ args: [String], stdin: Data = Data()) throws -> Data {
    let python = ProcessInfo.processInfo.environment["ZOO_PYTHON"] ?? Fetch.cacheDir.appendingPathComponent("venv/bin/python").path
    try require(URL(fileURLWithPath: python), "the tools venv (make setup) or ZOO_PYTHON")
    let p = Process()
    p.executableURL = URL(fileURLWithPath: python)
    p.arguments = [Paths.root.appendingPathComponent("tools/hf_reference.py").path] + args
    let i = Pipe(), o = Pipe()
    p.standardInput = i; p.standardOutput = o; p.standardError = FileHandle.nullDevice
    try p.run()
    i.fileHandleForWriting.write(stdin); try i.fileHandleForWriting.close()
    let out = o.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    XCTAssertEqual(p.terminationStatus, 0, "tools/hf_reference.py \(args.joined(separator: " "))")
    return out
}

/// A zoo-written checkpoint loaded by HF transformers (`tools/hf_reference.py roundtrip`,
/// AutoModelForSequenceClassification) gives the same logits as the zoo, within 1e-4.
func assertSameLogitsAsHF(_ dir: URL, file: StaticString = #filePath, line: UInt = #line) throws {
    let inputs = "hello world\ta b\nb a .\thello\nworld world world\tas bs\n"
    let hf = try JSONSerialization.jsonObject(with: try hfReference(["roundtrip", "--model", dir.path], stdin: Data(inputs.utf8))) as! [[Double]]
    let ckpt = try Checkpoint(dir: dir)
    let model = try Network<Linear>(checkpoint: ckpt)
    let tok = try ckpt.tokenizer()
    for (n, l) in inputs.split(separator: "\n").enumerated() {
        let parts = l.split(separator: "\t").map(String.init)
        let logits = try model.logits(Batch([tok.encode(parts[0], parts[1])]))
        XCTAssertEqual(hf[n].count, ckpt.spec.numLabels, file: file, line: line)
        for c in 0..<ckpt.spec.numLabels { XCTAssertEqual(Double(logits[c]), hf[n][c], accuracy: 1e-4, "\(dir.lastPathComponent) line \(n)", file: file, line: line) }
    }
}

/// Runs `body` once per SIMD level of the row kernels this CPU can run (generic, avx2, avx512, as
/// far as it has them), named by level; then back to the default. Says which levels ran.
func forEachSIMD(_ body: (String) throws -> Void) rethrows {
    for level in simdLevels {
        zk_set_simd(level)
        try body(String(cString: zk_simd_name(level)))
    }
    zk_set_simd(-1)
}

/// The SIMD levels this CPU runs (printed once, so a test log shows which copies were checked).
let simdLevels: [Int32] = {
    let levels = Array(0...zk_simd_max())
    print("kernel tests at SIMD levels: \(levels.map { String(cString: zk_simd_name($0)) }.joined(separator: ", "))")
    return levels
}()

/// The int8 kernels this CPU runs (scalar, AVX2, VNNI as far as it has them).
let int8Kernels: [Int32] = {
    let kernels = Array(0...zk_int8_max())
    print("int8 kernel tests with: \(kernels.map { String(cString: zk_int8_name($0)) }.joined(separator: ", "))")
    return kernels
}()

/// Runs `zoo args` and kills it with SIGKILL `delays[i]` ms after `after` appears, trying the delays
/// in turn until a run dies before writing `finished` (end the list with short delays: how much work
/// is left after `after` depends on the machine). Returns whether one did.
func killedMidway(_ args: [String], after: URL, finished: URL, delays: [Int]) throws -> Bool {
    let out = URL(fileURLWithPath: args[args.firstIndex(of: "--out")! + 1])
    for delayMs in delays {
        try? FileManager.default.removeItem(at: out)
        let p = Process()
        p.executableURL = Paths.zoo
        p.arguments = args
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: after.path) && Date() < deadline { usleep(2000) }
        usleep(useconds_t(delayMs * 1000))
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        if !FileManager.default.fileExists(atPath: finished.path) { return true }
    }
    return false
}

/// A tiny BERT (1 layer, hidden 8, vocabulary of 12) for tests that need a checkpoint but not real weights.
enum Tiny {
    /// A 4-layer BERT (hidden 16, 2 heads, Tiny's vocabulary) fine-tuned for 2 epochs on the tiny RTE
    /// in `glue`: a teacher / a model to compress.
    static func fineTuned4Layers(_ glue: URL) throws -> URL {
        let dense = try tempDir().appendingPathComponent("dense"), tuned = try tempDir().appendingPathComponent("tuned")
        try randomStore(.bert(vocab: 12, hidden: 16, layers: 4, heads: 2, ffn: 32, positions: 16), seed: 9)
            .writeCheckpoint(to: dense, base: try Checkpoint(dir: try checkpoint()))
        let r = try zoo(["finetune", "--base", dense.path, "--task", "rte", "--data", glue.path, "--out", tuned.path, "--epochs", "2", "--batch", "8",
                         "--lr", "1e-3", "--threads", "2"])
        XCTAssertEqual(r.code, 0, r.stderr)
        return tuned
    }

    static let config: [String: Any] = [
        "model_type": "bert", "vocab_size": 12, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 16, "max_position_embeddings": 16, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
    ]
    static let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "a", "b", "##s", ".", ","]

    /// The tensors of a tiny BERT matching `config`.
    static func tensors() -> [(String, Tensor)] {
        var rng = SplitMix64(seed: 5)
        func t(_ shape: [Int]) -> Tensor {
            let x = Tensor(shape: shape)
            for i in 0..<x.count { x[i] = rng.symmetric() * 0.1 }
            return x
        }
        var out: [(String, Tensor)] = [
            ("embeddings.word_embeddings.weight", t([12, 8])), ("embeddings.position_embeddings.weight", t([16, 8])),
            ("embeddings.token_type_embeddings.weight", t([2, 8])), ("embeddings.LayerNorm.weight", t([8])), ("embeddings.LayerNorm.bias", t([8])),
        ]
        let p = "encoder.layer.0."
        for n in ["query", "key", "value"] { out += [(p + "attention.self.\(n).weight", t([8, 8])), (p + "attention.self.\(n).bias", t([8]))] }
        out += [(p + "attention.output.dense.weight", t([8, 8])), (p + "attention.output.dense.bias", t([8])),
                (p + "attention.output.LayerNorm.weight", t([8])), (p + "attention.output.LayerNorm.bias", t([8])),
                (p + "intermediate.dense.weight", t([16, 8])), (p + "intermediate.dense.bias", t([16])),
                (p + "output.dense.weight", t([8, 16])), (p + "output.dense.bias", t([8])),
                (p + "output.LayerNorm.weight", t([8])), (p + "output.LayerNorm.bias", t([8]))]
        return out
    }

    /// A valid tiny checkpoint directory (tests then break one part of it).
    static func checkpoint(config: [String: Any] = Tiny.config, vocab: [String] = Tiny.vocab,
                           tensors: [(String, Tensor)] = Tiny.tensors()) throws -> URL {
        let dir = try tempDir()
        try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("config.json"))
        try (vocab.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("vocab.txt"), atomically: true, encoding: .utf8)
        try SafeTensors.write(tensors, to: dir.appendingPathComponent("model.safetensors"))
        return dir
    }

}
