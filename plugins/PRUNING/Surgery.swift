import Foundation
import ZooCore

/// Physically removes attention heads and FFN neurons: a smaller `ModelSpec` (fewer heads per layer,
/// recorded in `prunedHeads` by their original indices as HF's `pruned_heads`; narrower FFNs) and a
/// store holding only the kept rows of Q/K/V and the FFN up-projection and the kept columns of the
/// attention output and FFN down-projection.
enum Surgery {
    /// `keepHeads[l]` / `keepNeurons[l]`: indices (into layer l's current heads / neurons) to keep.
    static func prune(_ store: ParameterStore, keepHeads: [[Int]], keepNeurons: [[Int]]) throws -> ParameterStore {
        let old: ModelSpec = store.spec
        guard old.groups.count == old.layers.count else {
            throw ZooError.usage("pruning a model with shared layers (ALBERT) is not supported: a head removed from a shared layer is removed from every use")
        }
        var spec = old
        for (l, layer) in old.layers.enumerated() {
            guard !keepHeads[l].isEmpty, !keepNeurons[l].isEmpty else { throw ZooError.usage("layer \(l) would keep no heads or no FFN neurons") }
            let original = (0..<(layer.heads + layer.prunedHeads.count)).filter { !layer.prunedHeads.contains($0) }
            let kept = Set(keepHeads[l].map { original[$0] })
            spec.layers[l].heads = keepHeads[l].count
            spec.layers[l].prunedHeads = (0..<original.count + layer.prunedHeads.count).filter { !kept.contains($0) }
            spec.layers[l].ffn = keepNeurons[l].count
            spec.layers[l].prunedNeurons += layer.ffn - keepNeurons[l].count
        }
        let out = ParameterStore(spec: spec)
        let names = old.family.names
        // Per layer: which tensors keep which rows (of `block` consecutive rows each) or columns.
        var rows: [String: (keep: [Int], block: Int)] = [:], columns: [String: (keep: [Int], block: Int)] = [:]
        for (l, layer) in old.layers.enumerated() {
            let n = names.layer(l)
            for p in [n.query, n.key, n.value] {
                rows[p + ".weight"] = (keepHeads[l], layer.headDim)
                rows[p + ".bias"] = (keepHeads[l], layer.headDim)
            }
            columns[n.attentionOut + ".weight"] = (keepHeads[l], layer.headDim)
            rows[n.up + ".weight"] = (keepNeurons[l], 1)
            rows[n.up + ".bias"] = (keepNeurons[l], 1)
            columns[n.down + ".weight"] = (keepNeurons[l], 1)
        }
        for s in out.slots {
            let from = store.view(s.name), to = out.view(s.name), shape = store.slot(s.name)!.shape
            let width = shape.count == 2 ? shape[1] : 1
            if let r = rows[s.name] {
                var o = 0
                for k in r.keep {
                    let n = r.block * width
                    (to.value + o).update(from: from.value + k * n, count: n)
                    o += n
                }
            } else if let c = columns[s.name] {
                let newWidth = s.shape[1]
                for i in 0..<shape[0] {
                    var o = 0
                    for k in c.keep {
                        (to.value + i * newWidth + o).update(from: from.value + i * width + k * c.block, count: c.block)
                        o += c.block
                    }
                }
            } else {
                to.value.update(from: from.value, count: s.count)
            }
        }
        return out
    }
}
