import CKernels
import Foundation
import XCTest
@testable import ZooCore

/// The LSTM kernels (the distilled BiLSTM's) against PyTorch nn.LSTM, bidirectional, float64
/// reference (`tools/hf_reference.py lstm`): outputs within 1e-5, every gradient within 1e-4 (2e-4 for
/// the doubled parameter gradients below), with each SIMD copy of the kernels.
final class LSTMTests: XCTestCase {
    /// The reference sequence twice in one packed batch with its first 3 steps between them
    /// (lengths 6, 3, 6, stepped together): both copies match PyTorch; the short one, with no
    /// gradient of its own, leaves the parameter gradients at twice PyTorch's.
    func testBidirectionalLSTMMatchesPyTorch() throws {
        let url = Paths.reference.appendingPathComponent("lstm.safetensors")
        try require(url, "make reference")
        let ref = try SafeTensors(url: url)
        let (T, D, Hd) = (6, 5, 7)
        let lengths: [Int32] = [6, 3, 6], starts = [0, 6, 9], N = 15
        func t(_ name: String, _ shape: [Int]) throws -> Tensor { try ref.tensor(name, shape: shape) }
        let x1 = try t("x", [T, D]), h = try t("h", [T, 2 * Hd]), dh = try t("dh", [T, 2 * Hd]), dxWant = try t("dx", [T, D])
        let x = Tensor(shape: [N, D])
        for (s, n) in zip(starts, lengths) { (x.data + s * D).update(from: x1.data, count: Int(n) * D) }
        try forEachSIMD { simd in   // the input projection runs on the GEMM and bias kernels of each copy
        let dx = Tensor(shape: [N, D])
        for (d, reverse) in [("fwd", Int32(0)), ("rev", Int32(1))] {
            let wih = try t("\(d).weight_ih", [4 * Hd, D]), whh = try t("\(d).weight_hh", [4 * Hd, Hd])
            let bih = try t("\(d).bias_ih", [4 * Hd]), bhh = try t("\(d).bias_hh", [4 * Hd])
            let out = Tensor(shape: [N, Hd]), c = Tensor(shape: [N, Hd]), gates = Tensor(shape: [N, 4 * Hd])
            zk_lstm_forward(out.data, c.data, gates.data, x.data, wih.data, whh.data, bih.data, bhh.data, lengths, 3, Int32(D), Int32(Hd), reverse)
            let offset = reverse == 0 ? 0 : Hd
            for start in [0, 9] {
                for s in 0..<T { for j in 0..<Hd { XCTAssertEqual(out[(start + s) * Hd + j], h[s * 2 * Hd + offset + j], accuracy: 1e-5, "\(simd) \(d) h[\(start + s), \(j)]") } }
            }
            let g = Tensor(shape: [N, Hd])
            for start in [0, 9] { for s in 0..<T { for j in 0..<Hd { g[(start + s) * Hd + j] = dh[s * 2 * Hd + offset + j] } } }
            let dxd = Tensor(shape: [N, D]), dwih = Tensor(shape: [4 * Hd, D]), dwhh = Tensor(shape: [4 * Hd, Hd])
            let dbih = Tensor(shape: [4 * Hd]), dbhh = Tensor(shape: [4 * Hd]), scratch = Tensor(shape: [N, 4 * Hd])
            zk_lstm_backward(dxd.data, dwih.data, dwhh.data, dbih.data, dbhh.data, scratch.data, g.data, x.data, out.data, c.data, gates.data,
                             wih.data, whh.data, lengths, 3, Int32(D), Int32(Hd), reverse)
            for (name, mine, shape) in [("weight_ih", dwih, [4 * Hd, D]), ("weight_hh", dwhh, [4 * Hd, Hd]), ("bias_ih", dbih, [4 * Hd]), ("bias_hh", dbhh, [4 * Hd])] {
                let want = try t("\(d).grad.\(name)", shape)
                for i in 0..<want.count { want[i] *= 2 }
                XCTAssertLessThan(maxAbsDiff(mine, want), 2e-4, "\(simd) \(d) d\(name)")
            }
            for i in 0..<N * D { dx[i] += dxd[i] }
        }
        for start in [0, 9] {
            let part = Tensor(shape: [T, D])
            part.data.update(from: dx.data + start * D, count: T * D)
            XCTAssertLessThan(maxAbsDiff(part, dxWant), 1e-4, "\(simd) dx (both directions), sequence at row \(start)")
        }
        for i in 6 * D..<9 * D { XCTAssertEqual(dx[i], 0, "\(simd) the short sequence has no gradient") }
        }
    }
}
