import CKernels
import Foundation

/// Knowledge distillation on the logits (Hinton et al., 2015): a frozen teacher's logits on the same
/// batch as a soft target, mixed with the hard-label loss. A `FinetuneStep` with one set trains
/// against the teacher (ALBERT's and pruning's recovery against the dense model they came from).
public struct LogitDistillation {
    public let teacher: Model
    public var alpha: Float          // weight of the soft term; the hard-label loss gets 1 − alpha
    public var temperature: Float    // classification: softmax temperature T of both sides

    public init(teacher: Model, alpha: Float = 0.5, temperature: Float = 2) {
        (self.teacher, self.alpha, self.temperature) = (teacher, alpha, temperature)
    }

    /// The loss of student logits `s` (B×C) against the teacher's `t` and the labels, and its
    /// gradient with respect to `s` (written to `grad`). Classification: (1 − α)·CE(s, y) +
    /// α·T²·KL(softmax(t/T) ‖ softmax(s/T)), whose gradient in s is T·(softmax(s/T) − softmax(t/T));
    /// regression (C = 1): (1 − α)·(s − y)² + α·(s − t)². Means over the batch.
    public func loss(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, targets: Targets, B: Int, C: Int,
                     grad: UnsafeMutablePointer<Float>) -> (loss: Float, terms: [String: Float]) {
        let soft = UnsafeMutablePointer<Float>.allocate(capacity: B * C)
        defer { soft.deallocate() }
        let hard: Float, kd: Float
        switch targets {
        case .classes(let y):
            hard = zk_cross_entropy_forward_backward(grad, s, y, Int32(B), Int32(C))
            let T = temperature
            var sum: Double = 0
            for b in 0..<B {
                let ps = softmax((0..<C).map { s[b * C + $0] / T }), pt = softmax((0..<C).map { t[b * C + $0] / T })
                for c in 0..<C {
                    soft[b * C + c] = T * (ps[c] - pt[c]) / Float(B)
                    if pt[c] > 0 { sum += Double(pt[c]) * (log(Double(pt[c])) - log(Double(max(ps[c], 1e-30)))) }
                }
            }
            kd = Float(Double(T * T) * sum / Double(B))
        case .scores(let y):
            hard = zk_mse_forward_backward(grad, s, y, Int32(B))
            kd = zk_mse_forward_backward(soft, s, t, Int32(B))
        }
        for i in 0..<B * C { grad[i] = (1 - alpha) * grad[i] + alpha * soft[i] }
        return ((1 - alpha) * hard + alpha * kd, ["hard": hard, "soft": kd])
    }

    private func softmax(_ x: [Float]) -> [Float] {
        let m = x.max()!, e = x.map { exp($0 - m) }, z = e.reduce(0, +)
        return e.map { $0 / z }
    }
}

/// The intermediate distillation losses (TinyBERT, DistilBERT, BERT-PKD) over tap buffers, each a
/// forward/backward pair: the loss value, and its gradient added into the `d…` buffers given (student
/// side and, for a learned projection, its weight and bias). Means as stated per function.
public enum DistillLoss {
    /// Hidden-state (or embedding-output) MSE through a learned projection when the widths differ
    /// (TinyBERT): mean over T·Ht of (s·Wᵀ + b − t)², s [T, Hs], t [T, Ht], W [Ht, Hs] (nil: Hs = Ht,
    /// no projection).
    public static func hiddenMSE(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, T: Int, Hs: Int, Ht: Int,
                                 weight W: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
                                 ds: UnsafeMutablePointer<Float>, dW: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?) -> Float {
        precondition(W != nil || Hs == Ht, "widths differ: a projection is needed")
        let r = UnsafeMutablePointer<Float>.allocate(capacity: T * Ht)
        defer { r.deallocate() }
        if let W {
            zk_linear_forward(r, s, W, bias, Int32(T), Int32(Ht), Int32(Hs))
        } else {
            r.update(from: s, count: T * Ht)
        }
        var sum: Double = 0
        let scale = 2 / Float(T * Ht)
        for i in 0..<T * Ht {
            let e = r[i] - t[i]
            sum += Double(e * e)
            r[i] = scale * e
        }
        if let W {
            zk_sgemm_nn(Int32(T), Int32(Hs), Int32(Ht), r, Int32(Ht), W, Int32(Hs), 1, ds, Int32(Hs))   // ds += r·W
            if let dW { zk_sgemm_tn(Int32(Ht), Int32(Hs), Int32(T), r, Int32(Ht), s, Int32(Hs), 1, dW, Int32(Hs)) }   // dW += rᵀ·s
            if let db { for i in 0..<T { for j in 0..<Ht { db[j] += r[i * Ht + j] } } }
        } else {
            for i in 0..<T * Ht { ds[i] += r[i] }
        }
        return Float(sum / Double(T * Ht))
    }

    /// Attention-score MSE (TinyBERT): mean over the n scores of (s − t)², both laid out as
    /// `Activations.scores` (per sequence and head over its own tokens, so padding never enters).
    public static func scoreMSE(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, count n: Int, ds: UnsafeMutablePointer<Float>) -> Float {
        var sum: Double = 0
        for i in 0..<n {
            let e = s[i] - t[i]
            sum += Double(e * e)
            ds[i] += 2 * e / Float(n)
        }
        return Float(sum / Double(n))
    }

    /// Cosine loss on hidden states (DistilBERT): mean over the T rows of 1 − cos(s_i, t_i), [T, H].
    public static func cosine(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, T: Int, H: Int, ds: UnsafeMutablePointer<Float>) -> Float {
        var sum: Double = 0
        for i in 0..<T {
            let (a, b) = (s + i * H, t + i * H)
            var ab: Float = 0, aa: Float = 0, bb: Float = 0
            for j in 0..<H { ab += a[j] * b[j]; aa += a[j] * a[j]; bb += b[j] * b[j] }
            let na = max(aa.squareRoot(), 1e-12), nb = max(bb.squareRoot(), 1e-12), c = ab / (na * nb)
            sum += Double(1 - c)
            // d(1 − cos)/da = −(b / (|a||b|) − cos · a / |a|²), averaged over rows
            for j in 0..<H { ds[i * H + j] += -(b[j] / (na * nb) - c * a[j] / (na * na)) / Float(T) }
        }
        return Float(sum / Double(T))
    }

    /// BERT-PKD's patient loss on [CLS] states: mean over the B rows of ‖s/‖s‖ − t/‖t‖‖², [B, H].
    public static func normalisedMSE(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, B: Int, H: Int, ds: UnsafeMutablePointer<Float>) -> Float {
        var sum: Double = 0
        for i in 0..<B {
            let (a, b) = (s + i * H, t + i * H)
            var aa: Float = 0, bb: Float = 0
            for j in 0..<H { aa += a[j] * a[j]; bb += b[j] * b[j] }
            let na = max(aa.squareRoot(), 1e-12), nb = max(bb.squareRoot(), 1e-12)
            var dot: Float = 0   // uᵀ(u − v)
            for j in 0..<H { let u = a[j] / na, e = u - b[j] / nb; sum += Double(e * e); dot += u * e }
            // dL/da = (2(u − v) − 2u·uᵀ(u − v)) / ‖a‖, averaged over rows
            for j in 0..<H { let u = a[j] / na; ds[i * H + j] += 2 * ((u - b[j] / nb) - u * dot) / (na * Float(B)) }
        }
        return Float(sum / Double(B))
    }
}

/// Which teacher layer each student layer learns from (hidden state l = output of layer l, 0 = the
/// embedding output). For M student and N teacher layers, student layer m = 1…M maps to:
public enum LayerMap: Equatable {
    case uniform              // TinyBERT: m → m·N/M for m = 1…M (the embeddings, 0 → 0, separately)
    case skip                 // BERT-PKD-skip: m → m·N/M for m = 1…M−1 (the last layer learns through the prediction)
    case last                 // BERT-PKD-last: m → N−M+m for m = 1…M−1
    case explicit([Int])      // given: teacher layer of each student layer 1…M

    /// Pairs (student hidden index, teacher hidden index).
    public func pairs(student M: Int, teacher N: Int) throws -> [(Int, Int)] {
        guard M <= N else { throw ZooError.usage("the student has more layers (\(M)) than the teacher (\(N))") }
        switch self {
        case .uniform, .skip:
            guard N % M == 0 else { throw ZooError.usage("a uniform or skip layer map needs the teacher's \(N) layers to be a multiple of the student's \(M)") }
            return (1...(self == .uniform ? M : M - 1)).filter { $0 >= 1 }.map { ($0, $0 * N / M) }
        case .last:
            return (1..<M).map { ($0, N - M + $0) }
        case .explicit(let list):
            guard list.count == M, list.allSatisfy({ (1...N).contains($0) }) else {
                throw ZooError.usage("a layer map lists one teacher layer (1…\(N)) per student layer (\(M)), got \(list)")
            }
            return zip(1...M, list).map { ($0, $1) }
        }
    }
}
