import CKernels
import Foundation
import XCTest
@testable import ZooCore

/// The LSTM kernels (the distilled BiLSTM's) against PyTorch nn.LSTM, bidirectional, float64
/// reference (`tools/hf_reference.py lstm`): outputs and every gradient within 1e-4, with each SIMD
/// copy of the kernels.
final class LSTMTests: XCTestCase {
    func testBidirectionalLSTMMatchesPyTorch() throws {
        let url = Paths.reference.appendingPathComponent("lstm.safetensors")
        try require(url, "make reference")
        let ref = try SafeTensors(url: url)
        let (T, D, Hd) = (6, 5, 7)
        func t(_ name: String, _ shape: [Int]) throws -> Tensor { try ref.tensor(name, shape: shape) }
        let x = try t("x", [T, D]), h = try t("h", [T, 2 * Hd]), dh = try t("dh", [T, 2 * Hd])
        try forEachSIMD { simd in   // the input projection runs on the GEMM and bias kernels of each copy
        let dx = Tensor(shape: [T, D])
        for (d, reverse) in [("fwd", Int32(0)), ("rev", Int32(1))] {
            let wih = try t("\(d).weight_ih", [4 * Hd, D]), whh = try t("\(d).weight_hh", [4 * Hd, Hd])
            let bih = try t("\(d).bias_ih", [4 * Hd]), bhh = try t("\(d).bias_hh", [4 * Hd])
            let out = Tensor(shape: [T, Hd]), c = Tensor(shape: [T, Hd]), gates = Tensor(shape: [T, 4 * Hd])
            zk_lstm_forward(out.data, c.data, gates.data, x.data, wih.data, whh.data, bih.data, bhh.data, Int32(T), Int32(D), Int32(Hd), reverse)
            let offset = reverse == 0 ? 0 : Hd
            for s in 0..<T { for j in 0..<Hd { XCTAssertEqual(out[s * Hd + j], h[s * 2 * Hd + offset + j], accuracy: 1e-5, "\(simd) \(d) h[\(s), \(j)]") } }
            let g = Tensor(shape: [T, Hd])
            for s in 0..<T { for j in 0..<Hd { g[s * Hd + j] = dh[s * 2 * Hd + offset + j] } }
            let dxd = Tensor(shape: [T, D]), dwih = Tensor(shape: [4 * Hd, D]), dwhh = Tensor(shape: [4 * Hd, Hd])
            let dbih = Tensor(shape: [4 * Hd]), dbhh = Tensor(shape: [4 * Hd]), scratch = Tensor(shape: [T, 4 * Hd])
            zk_lstm_backward(dxd.data, dwih.data, dwhh.data, dbih.data, dbhh.data, scratch.data, g.data, x.data, out.data, c.data, gates.data,
                             wih.data, whh.data, Int32(T), Int32(D), Int32(Hd), reverse)
            for (name, mine, shape) in [("weight_ih", dwih, [4 * Hd, D]), ("weight_hh", dwhh, [4 * Hd, Hd]), ("bias_ih", dbih, [4 * Hd]), ("bias_hh", dbhh, [4 * Hd])] {
                let want = try t("\(d).grad.\(name)", shape)
                XCTAssertLessThan(maxAbsDiff(mine, want), 1e-4, "\(simd) \(d) d\(name)")
            }
            for i in 0..<T * D { dx[i] += dxd[i] }
        }
        XCTAssertLessThan(maxAbsDiff(dx, try t("dx", [T, D])), 1e-4, "\(simd) dx (both directions)")
        }
    }
}
