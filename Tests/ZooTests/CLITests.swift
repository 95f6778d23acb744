import CKernels
import Foundation
import XCTest
@testable import ZooCore

final class CLITests: XCTestCase {
    func testListAndHelp() throws {
        let r = try zoo(["list", "--json"])
        XCTAssertEqual(r.code, 0)
        let arr = try JSONSerialization.jsonObject(with: r.stdout) as! [[String: String]]
        XCTAssertTrue(arr.contains { $0["name"] == "bert" && !($0["description"] ?? "").isEmpty })
        XCTAssertEqual(Set(arr.flatMap(\.keys)), ["name", "description"])
        let plain = try zoo(["list"])
        XCTAssertTrue(plain.out.hasPrefix("bert "))
        for cmd in ["list", "eval", "embed", "tokenize", "score", "bench", "weights", "data"] {
            let h = try zoo([cmd, "--help"])
            XCTAssertEqual(h.code, 0, cmd)
            XCTAssertTrue(h.out.hasPrefix("zoo \(cmd)"), cmd)
        }
        XCTAssertEqual(try zoo(["--help"]).code, 0)
    }

    /// `zoo embed` prints one JSON array per line, equal to the in-process encoder's pooling.
    func testEmbedMatchesReferencePooling() throws {
        try require(Paths.weights.appendingPathComponent("model.safetensors"), "run `zoo weights fetch minilm-l6`")
        let refURL = Paths.reference.appendingPathComponent("encoder.safetensors")
        try require(refURL, "run `python tools/hf_reference.py encoder`")
        let ref = try SafeTensors(url: refURL)
        let lines = try String(contentsOf: Paths.fixtures.appendingPathComponent("encoder_inputs.txt"), encoding: .utf8)
        for pool in ["mean", "cls"] {
            let r = try zoo(["embed", "bert", "--weights", Paths.weights.path, "--pool", pool, "--threads", "2"], stdin: Data(lines.utf8))
            XCTAssertEqual(r.code, 0, r.stderr)
            let rows = r.out.split(separator: "\n")
            XCTAssertEqual(rows.count, lines.split(separator: "\n").count)
            for (i, row) in rows.enumerated() {
                let v = (try JSONSerialization.jsonObject(with: Data(row.utf8)) as! [Double]).map(Float.init)
                let want = try ref.tensor("\(pool).\(i)")
                XCTAssertLessThan(maxAbsDiff(Tensor(shape: [v.count], values: v), want), 1e-4, "\(pool) line \(i)")
            }
        }
    }

    func testBenchReportsCoreTypeAndNumbers() throws {
        let r = try zoo(["bench", "bert", "--geometry", "tinybert-4l", "--batch", "2", "--seq", "16", "--iters", "3", "--threads", "1", "--json"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let obj = try JSONSerialization.jsonObject(with: r.stdout) as! [String: Any]
        XCTAssertEqual(obj["batch"] as? Int, 2)
        XCTAssertEqual(obj["seq"] as? Int, 16)
        XCTAssertEqual(obj["iterations"] as? Int, 3)
        XCTAssertEqual(obj["threads"] as? Int, 1)
        XCTAssertGreaterThan(obj["median_ms"] as! Double, 0)
        XCTAssertFalse((obj["openblas_core"] as! String).isEmpty)
        // tinybert-4l: 4 layers, hidden 312, FFN 1200, vocab 30522, 512 positions.
        let H = 312, I = 1200
        let perLayer = 4 * (H * H + H) + 2 * H + (I * H + I) + (H * I + H) + 2 * H
        XCTAssertEqual(obj["parameters"] as? Int, 30522 * H + 512 * H + 2 * H + 2 * H + 4 * perLayer)
    }

    /// `zoo peak`: both peaks and the four GEMM shapes of the geometry, at every SIMD level this CPU
    /// has (rates are only checked to be positive: no wall-clock values are asserted).
    func testPeakReportsBothPeaksAndTheEncoderShapes() throws {
        for level in ["generic", "avx2", "avx512"] where zk_simd_parse(level) <= zk_simd_max() {
            let r = try zoo(["peak", "--geometry", "tinybert-4l", "--tokens", "64", "--json"], env: ["ZOO_SIMD": level])
            XCTAssertEqual(r.code, 0, r.stderr)
            let obj = try JSONSerialization.jsonObject(with: r.stdout) as! [String: Any]
            XCTAssertEqual(obj["simd"] as? String, level)
            let fp32 = obj["fma_peak_gflops"] as! Double, int8 = obj["int8_peak_gops"] as! Double
            // The generic level has no FMA loop of known width and uses the scalar int8 kernel: no peaks.
            if level == "generic" { XCTAssertEqual(fp32, 0); XCTAssertEqual(int8, 0) } else { XCTAssertGreaterThan(fp32, 0); XCTAssertGreaterThan(int8, 0) }
            let gemm = obj["gemm"] as! [[String: Any]]
            XCTAssertEqual(gemm.map { $0["shape"] as! String }, ["qkv", "attn-out", "ffn-up", "ffn-down"])
            XCTAssertEqual(gemm.map { [$0["M"] as! Int, $0["N"] as! Int, $0["K"] as! Int] },
                           [[64, 936, 312], [64, 312, 312], [64, 1200, 312], [64, 312, 1200]])
            for row in gemm { for key in ["zoo_gflops", "openblas_gflops", "int8_gops"] { XCTAssertGreaterThan(row[key] as! Double, 0, key) } }
        }
    }

    /// The program re-executes itself with the fast OpenBLAS kernels when the user has not chosen.
    func testFastBLASIsArrangedByItself() throws {
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "OPENBLAS_CORETYPE")
        let want = Runtime.wantedEnvironment(env)["OPENBLAS_CORETYPE"]
        let p = Process()
        p.executableURL = Paths.zoo
        p.arguments = ["bench", "bert", "--geometry", "tinybert-4l", "--batch", "1", "--seq", "8", "--iters", "1", "--json"]
        env.removeValue(forKey: "ZOO_NO_REEXEC")
        p.environment = env
        let o = Pipe()
        p.standardOutput = o
        try p.run()
        let data = o.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let obj = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        if let want {
            XCTAssertEqual(obj["openblas_core"] as? String, want)
        }
        // A user's explicit choice is kept.
        let r = try zoo(["bench", "bert", "--geometry", "tinybert-4l", "--batch", "1", "--seq", "8", "--iters", "1", "--json"], env: ["OPENBLAS_CORETYPE": "Haswell"])
        XCTAssertEqual((try JSONSerialization.jsonObject(with: r.stdout) as! [String: Any])["openblas_core"] as? String, "Haswell")
    }

    /// ZOO_SIMD picks the kernels (and OpenBLAS's core type with them); a bad value is refused and a
    /// level above the CPU's is capped with a warning.
    func testSIMDLevelFromEnvironment() throws {
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "OPENBLAS_CORETYPE")
        env.removeValue(forKey: "ZOO_NO_REEXEC")
        let args = ["bench", "bert", "--geometry", "tinybert-4l", "--batch", "1", "--seq", "8", "--iters", "1", "--json"]
        let bad = try zoo(args, env: ["ZOO_SIMD": "avx9"])
        XCTAssertEqual(bad.code, 2)
        XCTAssertTrue(bad.stderr.contains("ZOO_SIMD=avx9: expected generic, avx2 or avx512"), bad.stderr)
        XCTAssertTrue(bad.stdout.isEmpty)
        let cores = ["avx2": "Haswell", "avx512": "SkylakeX"]
        for level in ["generic", "avx2", "avx512"] {
            env["ZOO_SIMD"] = level
            let p = Process(), o = Pipe(), e = Pipe()
            p.executableURL = Paths.zoo
            p.arguments = args
            p.environment = env
            (p.standardOutput, p.standardError) = (o, e)
            try p.run()
            let data = o.fileHandleForReading.readDataToEndOfFile(), err = String(decoding: e.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, err)
            let obj = try JSONSerialization.jsonObject(with: data) as! [String: Any]
            let runs = min(zk_simd_parse(level), zk_simd_max()), name = String(cString: zk_simd_name(runs))
            XCTAssertTrue((obj["cpu"] as! String).contains("kernels \(name) "), "\(level): \(obj["cpu"]!)")
            if let core = cores[name] { XCTAssertEqual(obj["openblas_core"] as? String, core, level) }
            XCTAssertEqual(err.contains("using that"), zk_simd_parse(level) > zk_simd_max(), err)
        }
    }
}
