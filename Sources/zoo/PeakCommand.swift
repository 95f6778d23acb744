import CKernels
import Foundation
import ZooCore

struct PeakCommand: Command {
    static let name = "peak"
    static let summary = "measure this CPU's fp32 FMA peak and the GEMM rate at the encoder's shapes"
    static let help = """
    zoo peak [--threads N] [--geometry bert-base|bert-large|minilm-l6|tinybert-4l] [--tokens T] [--json]
      Runs a register-only FMA loop (the machine's fp32 peak), then times the encoder's four Linear
      shapes (QKV, attention output, FFN up, FFN down) for T tokens (default 4096 = 32×128) with zoo's
      packed-weight kernel and with OpenBLAS, and prints GFLOPS and the fraction of peak for each;
      then the int8 Linear (quantize activations + int8 GEMM + dequantize, as qbert-int8 runs it)
      in GOPS and as a ratio to zoo's fp32 kernel. The int8 peak is a register-only loop of the int8
      kernel's own instructions (vpdpbusd with VNNI; sign, maddubs, madd, add with AVX2): its ratio
      to the fp32 peak bounds what int8 can gain over fp32 on this CPU.
    """
    static let options: Set<String> = ["threads", "geometry", "tokens"]
    static let flags: Set<String> = ["json"]

    static func run(_ args: Arguments) throws {
        Runtime.setThreads(try args.int("threads"))
        guard let g = Geometry(rawValue: args["geometry"] ?? "bert-base") else { throw ZooError.usage("unknown geometry '\(args["geometry"]!)'") }
        let T = try args.int("tokens", default: 4096)!
        let peak = zk_fma_peak_gflops(100_000_000)
        let int8Peak = zk_int8_peak_gops(100_000_000)
        let (H, F) = (g.spec.hidden, g.spec.layers[0].ffn)
        let shapes = [("qkv", 3 * H, H), ("attn-out", H, H), ("ffn-up", F, H), ("ffn-down", H, F)]
        var rows: [[String: Any]] = []
        var rng = SplitMix64(seed: 3)
        for (name, N, K) in shapes {
            let a = Tensor(shape: [T, K]), w = Tensor(shape: [N, K]), out = Tensor(shape: [T, N])
            for i in 0..<a.count { a[i] = rng.symmetric() }
            for i in 0..<w.count { w[i] = rng.symmetric() }
            let packed = Tensor(shape: [zk_packed_weight_floats(Int32(N), Int32(K))])
            zk_pack_weight(packed.data, w.data, Int32(N), Int32(K))
            let flops = 2.0 * Double(T) * Double(N) * Double(K)
            let zoo = time { zk_linear_packed_forward(out.data, a.data, packed.data, nil, Int32(T), Int32(N), Int32(K), 0) }
            let blas = time { zk_sgemm_nt(Int32(T), Int32(N), Int32(K), a.data, Int32(K), w.data, Int32(K), 0, out.data, Int32(N)) }
            let q = QuantizedLinearBench(weight: w, tokens: T)
            let int8 = time { q.run(a, out) }
            rows.append(["shape": name, "M": T, "N": N, "K": K, "zoo_gflops": flops / zoo / 1e9, "openblas_gflops": flops / blas / 1e9,
                         "int8_gops": flops / int8 / 1e9])
        }
        if args.flag("json") {
            print(try jsonString(["cpu": Runtime.cpuName, "simd": Runtime.simdName(zk_simd_level()), "threads": Runtime.threads, "fma_peak_gflops": peak, "int8_peak_gops": int8Peak, "openblas_core": Runtime.blasCoreType, "gemm": rows] as [String: Any]))
            return
        }
        print("CPU: \(Runtime.cpuName)")
        print(peak > 0 ? String(format: "fp32 FMA peak: %.1f GFLOPS (%d threads, %@ FMA loop)", peak, Runtime.threads, Runtime.simdName(zk_simd_level()))
                       : "fp32 FMA peak: not measured at the generic level")
        let int8Name = String(cString: zk_int8_name(zk_int8_kernel()))
        if int8Peak > 0 {
            print(String(format: "int8 peak: %.1f GOPS (%@ kernel's instruction loop) = %.2fx the fp32 peak", int8Peak, int8Name, peak > 0 ? int8Peak / peak : 0))
        }
        print("GEMM \(g.rawValue), \(T) tokens        zoo packed         OpenBLAS \(Runtime.blasCoreType)     int8 (\(int8Name))")
        for r in rows {
            let z = r["zoo_gflops"] as! Double, o = r["openblas_gflops"] as! Double, i = r["int8_gops"] as! Double
            let pct = { (g: Double) in peak > 0 ? String(format: "%3.0f%%", 100 * g / peak) : "  —" }
            print(String(format: "  %-9@ %5d x %4d   %6.1f GFLOPS %@   %6.1f GFLOPS %@   %6.1f GOPS %4.2fx fp32", r["shape"] as! String, r["N"] as! Int, r["K"] as! Int,
                         z, pct(z), o, pct(o), i, i / z))
        }
    }

    /// Median seconds of a few runs after a warm-up.
    static func time(_ body: () -> Void) -> Double {
        body()
        var t: [Double] = []
        let start = Date()
        while t.count < 3 || (t.count < 50 && Date().timeIntervalSince(start) < 1) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            t.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        return t.sorted()[t.count / 2]
    }
}

/// One int8 Linear of random weights, run the way qbert-int8 runs it (quantize the fp32 input per
/// row, VNNI GEMM, dequantizing epilogue), for `zoo peak`.
final class QuantizedLinearBench {
    let N: Int, K: Int, T: Int
    let packed: UnsafeMutablePointer<Int8>, colsum: UnsafeMutablePointer<Int32>, scale: UnsafeMutablePointer<Float>
    let qbuf: UnsafeMutablePointer<UInt8>, qscale: UnsafeMutablePointer<Float>

    init(weight w: Tensor, tokens: Int) {
        (N, K, T) = (w.shape[0], w.shape[1], tokens)
        let q = UnsafeMutablePointer<Int8>.allocate(capacity: N * K)
        defer { q.deallocate() }
        scale = .allocate(capacity: N)
        zk_quantize_weight(q, scale, w.data, Int32(N), Int32(K), 8, 1)
        packed = .allocate(capacity: zk_qpacked_weight_bytes(Int32(N), Int32(K)))
        colsum = .allocate(capacity: N)
        zk_qpack_weight(packed, colsum, q, Int32(N), Int32(K))
        qbuf = .allocate(capacity: T * Int(zk_qpad_k(Int32(K))))
        qscale = .allocate(capacity: T)
    }
    deinit { packed.deallocate(); colsum.deallocate(); scale.deallocate(); qbuf.deallocate(); qscale.deallocate() }

    func run(_ a: Tensor, _ out: Tensor) {
        zk_qlinear_forward(out.data, a.data, qbuf, qscale, packed, colsum, scale, nil, Int32(T), Int32(N), Int32(K), 0)
    }
}
