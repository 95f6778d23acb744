import Foundation
import XCTest
@testable import ZooCore

/// Logit distillation: the loss against a teacher's logits and its gradient.
final class DistillTests: XCTestCase {
    /// The gradient `LogitDistillation.loss` returns equals central finite differences of its loss
    /// (ε = 1e-2 in double-checked float: within 2e-3 absolute); the soft term is 0 when the student
    /// copies the teacher, and alpha = 0 leaves exactly the hard-label cross-entropy.
    func testLossGradientMatchesFiniteDifferences() throws {
        let teacher = try Network<Linear>(packing: randomStore(.bert(vocab: 12, hidden: 8, layers: 1, heads: 2, ffn: 8, positions: 8), seed: 1))   // not run here
        var rng = SplitMix64(seed: 4)
        for (C, targets) in [(3, Targets.classes([2, 0, 1, 1])), (1, Targets.scores([0.5, -1, 2, 0.1]))] {
            let B = 4
            var s = (0..<B * C).map { _ in 2 * rng.normal() }
            let t = (0..<B * C).map { _ in 2 * rng.normal() }
            let kd = LogitDistillation(teacher: teacher, alpha: 0.7, temperature: 2)
            func loss(_ x: [Float]) -> Float {
                var g = [Float](repeating: 0, count: B * C)
                return kd.loss(student: x, teacher: t, targets: targets, B: B, C: C, grad: &g).loss
            }
            var grad = [Float](repeating: 0, count: B * C)
            _ = kd.loss(student: s, teacher: t, targets: targets, B: B, C: C, grad: &grad)
            for i in 0..<B * C {
                let x = s[i]
                s[i] = x + 1e-2; let up = loss(s)
                s[i] = x - 1e-2; let down = loss(s)
                s[i] = x
                XCTAssertEqual(grad[i], (up - down) / 2e-2, accuracy: 2e-3, "C=\(C) logit \(i)")
            }
            var g = [Float](repeating: 0, count: B * C)
            XCTAssertEqual(kd.loss(student: t, teacher: t, targets: targets, B: B, C: C, grad: &g).terms["soft"]!, 0, accuracy: 1e-6)
            let plain = LogitDistillation(teacher: teacher, alpha: 0, temperature: 2)
            let r = plain.loss(student: s, teacher: t, targets: targets, B: B, C: C, grad: &g)
            XCTAssertEqual(r.loss, r.terms["hard"]!)
        }
    }
}
