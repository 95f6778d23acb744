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
