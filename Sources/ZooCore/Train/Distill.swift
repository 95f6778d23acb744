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
    /// α·T²·KL(softmax(t/T) ‖ softmax(s/T)); regression (C = 1): (1 − α)·(s − y)² + α·(s − t)².
    /// Means over the batch.
    public func loss(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, targets: Targets, B: Int, C: Int,
                     grad: UnsafeMutablePointer<Float>) -> (loss: Float, terms: [String: Float]) {
        grad.update(repeating: 0, count: B * C)
        let hard = DistillLoss.hard(student: s, targets: targets, B: B, C: C, weight: 1 - alpha, ds: grad)
        let soft = targets.isRegression
            ? DistillLoss.mse(student: s, teacher: t, count: B, weight: alpha, ds: grad)
            : DistillLoss.softCrossEntropy(student: s, teacher: t, B: B, C: C, temperature: temperature, weight: alpha, ds: grad)
        return ((1 - alpha) * hard + alpha * soft, ["hard": hard, "soft": soft])
    }
}

extension Targets {
    var isRegression: Bool { if case .scores = self { return true } else { return false } }
}

/// The distillation losses over tap buffers, each a forward/backward pair: returns the loss value and
/// adds `weight` × its gradient into the `d…` buffers given (student side and, for a learned
/// projection, its weight and bias). Means as stated per function.
public enum DistillLoss {
    /// The hard-label loss of logits s [B, C]: cross-entropy, or MSE for regression.
    public static func hard(student s: UnsafePointer<Float>, targets: Targets, B: Int, C: Int, weight: Float, ds: UnsafeMutablePointer<Float>) -> Float {
        let g = UnsafeMutablePointer<Float>.allocate(capacity: B * C)
        defer { g.deallocate() }
        let l: Float
        switch targets {
        case .classes(let y): l = zk_cross_entropy_forward_backward(g, s, y, Int32(B), Int32(C))
        case .scores(let y): l = zk_mse_forward_backward(g, s, y, Int32(B))
        }
        for i in 0..<B * C { ds[i] += weight * g[i] }
        return l
    }

    /// Soft cross-entropy on logits (Hinton et al.): mean over the B rows of T²·KL(softmax(t/T) ‖
    /// softmax(s/T)), whose gradient in s is T·(softmax(s/T) − softmax(t/T)); s, t [B, C].
    public static func softCrossEntropy(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, B: Int, C: Int, temperature T: Float,
                                        weight: Float, ds: UnsafeMutablePointer<Float>) -> Float {
        func softmax(_ x: UnsafePointer<Float>) -> [Float] {
            let z = (0..<C).map { x[$0] / T }, m = z.max()!, e = z.map { exp($0 - m) }, sum = e.reduce(0, +)
            return e.map { $0 / sum }
        }
        var kl: Double = 0
        for b in 0..<B {
            let ps = softmax(s + b * C), pt = softmax(t + b * C)
            for c in 0..<C {
                ds[b * C + c] += weight * (T * (ps[c] - pt[c]) / Float(B))
                if pt[c] > 0 { kl += Double(pt[c]) * (log(Double(pt[c])) - log(Double(max(ps[c], 1e-30)))) }
            }
        }
        return Float(Double(T * T) * kl / Double(B))
    }

    /// Hidden-state (or embedding-output) MSE through a learned projection when the widths differ
    /// (TinyBERT): mean over T·Ht of (s·Wᵀ + b − t)², s [T, Hs], t [T, Ht], W [Ht, Hs] (nil: Hs = Ht,
    /// no projection).
    public static func hiddenMSE(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, T: Int, Hs: Int, Ht: Int,
                                 weight W: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
                                 weight: Float = 1, ds: UnsafeMutablePointer<Float>, dW: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?) -> Float {
        precondition(W != nil || Hs == Ht, "widths differ: a projection is needed")
        let r = UnsafeMutablePointer<Float>.allocate(capacity: T * Ht)
        defer { r.deallocate() }
        if let W {
            zk_linear_forward(r, s, W, bias, Int32(T), Int32(Ht), Int32(Hs))
        } else {
            r.update(from: s, count: T * Ht)
        }
        var sum: Double = 0
        let scale = 2 * weight / Float(T * Ht)
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

    /// MSE: mean over n values of (s − t)². Attention scores (TinyBERT; laid out as
    /// `Activations.scores`, per sequence and head over its own tokens, so padding never enters) and
    /// logits (the distilled BiLSTM).
    public static func mse(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, count n: Int, weight: Float = 1,
                           ds: UnsafeMutablePointer<Float>) -> Float {
        let g = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { g.deallocate() }
        let l = zk_mse_forward_backward(g, s, t, Int32(n))
        for i in 0..<n { ds[i] += weight * g[i] }
        return l
    }

    /// Cosine loss on hidden states (DistilBERT): mean over the T rows of 1 − cos(s_i, t_i), [T, H].
    public static func cosine(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, T: Int, H: Int, weight: Float = 1,
                              ds: UnsafeMutablePointer<Float>) -> Float {
        var sum: Double = 0
        for i in 0..<T {
            let (a, b) = (s + i * H, t + i * H)
            var ab: Float = 0, aa: Float = 0, bb: Float = 0
            for j in 0..<H { ab += a[j] * b[j]; aa += a[j] * a[j]; bb += b[j] * b[j] }
            let na = max(aa.squareRoot(), 1e-12), nb = max(bb.squareRoot(), 1e-12), c = ab / (na * nb)
            sum += Double(1 - c)
            // d(1 − cos)/da = −(b / (|a||b|) − cos · a / |a|²), averaged over rows
            for j in 0..<H { ds[i * H + j] += -weight * (b[j] / (na * nb) - c * a[j] / (na * na)) / Float(T) }
        }
        return Float(sum / Double(T))
    }

    /// BERT-PKD's patient loss on [CLS] states: mean over the B rows of ‖s/‖s‖ − t/‖t‖‖², [B, H].
    public static func normalisedMSE(student s: UnsafePointer<Float>, teacher t: UnsafePointer<Float>, B: Int, H: Int, weight: Float = 1,
                                     ds: UnsafeMutablePointer<Float>) -> Float {
        var sum: Double = 0
        for i in 0..<B {
            let (a, b) = (s + i * H, t + i * H)
            var aa: Float = 0, bb: Float = 0
            for j in 0..<H { aa += a[j] * a[j]; bb += b[j] * b[j] }
            let na = max(aa.squareRoot(), 1e-12), nb = max(bb.squareRoot(), 1e-12)
            var dot: Float = 0   // uᵀ(u − v)
            for j in 0..<H { let u = a[j] / na, e = u - b[j] / nb; sum += Double(e * e); dot += u * e }
            // dL/da = (2(u − v) − 2u·uᵀ(u − v)) / ‖a‖, averaged over rows
            for j in 0..<H { let u = a[j] / na; ds[i * H + j] += weight * 2 * ((u - b[j] / nb) - u * dot) / (na * Float(B)) }
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
