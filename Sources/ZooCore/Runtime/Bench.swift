import Foundation

/// Times forward passes after warm-up. Used by `zoo bench` and the `bench/` scripts.
public struct BenchResult: Codable {
    public var batch: Int, seq: Int, threads: Int, iterations: Int
    public var minMs: Double, medianMs: Double
    public var sequencesPerSecond: Double
    public var gflops: Double      // achieved, from the encoder's multiply-add count at the median
    public var blasCore: String

    enum CodingKeys: String, CodingKey {
        case batch, seq, threads, iterations, minMs = "min_ms", medianMs = "median_ms"
        case sequencesPerSecond = "sequences_per_s", gflops, blasCore = "openblas_core"
    }
}

public enum Bench {
    /// Whole passes over `batches` (e.g. a dev set in length-sorted, dynamically padded batches).
    /// Returns the median seconds of a pass.
    public static func passes(_ model: Model, batches: [Batch], runs: Int = 3) throws -> (median: Double, min: Double) {
        for b in batches.prefix(2) { _ = try model.forward(b) }
        var t: [Double] = []
        for _ in 0..<runs {
            let t0 = DispatchTime.now().uptimeNanoseconds
            for b in batches { _ = try model.forward(b) }
            t.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        t.sort()
        return (t[t.count / 2], t[0])
    }

    public static func run(_ model: Model, batch: Batch, warmup: Int = 2, iterations: Int? = nil, minSeconds: Double = 2) throws -> BenchResult {
        for _ in 0..<warmup { _ = try model.forward(batch) }
        var times: [Double] = []
        let start = Date()
        while times.count < (iterations ?? 1_000_000) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try model.forward(batch)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            if iterations == nil && times.count >= 3 && Date().timeIntervalSince(start) > minSeconds { break }
        }
        times.sort()
        let median = times[times.count / 2]
        return BenchResult(batch: batch.size, seq: batch.seqLen, threads: Runtime.threads, iterations: times.count,
                           minMs: times[0], medianMs: median,
                           sequencesPerSecond: Double(batch.size) / (median / 1000),
                           gflops: model.flops(batch: batch.size, seq: batch.seqLen) / (median / 1000) / 1e9,
                           blasCore: Runtime.blasCoreType)
    }
}
