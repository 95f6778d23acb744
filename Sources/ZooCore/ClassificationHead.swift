import CKernels
import Foundation

/// The head of HF `BertForSequenceClassification` on top of any variant's hidden states:
/// logits = classifier(tanh(pooler([CLS]))).
public struct ClassificationHead {
    let poolW: Tensor, poolB: Tensor, clsW: Tensor, clsB: Tensor
    public let numLabels: Int
    public let hidden: Int

    public init(_ ckpt: Checkpoint) throws {
        let st = ckpt.tensors, H = ckpt.config.hiddenSize
        guard let cls = st.entries["classifier.weight"] else {
            throw ZooError.badFile(path: st.path, problem: "no classifier head (classifier.weight); fine-tune a model first with `zoo finetune`, or use --zero-shot")
        }
        numLabels = cls.shape.first ?? 0
        hidden = H
        let p = st.entries["bert.pooler.dense.weight"] != nil ? "bert." : ""
        poolW = try st.tensor(p + "pooler.dense.weight", shape: [H, H])
        poolB = try st.tensor(p + "pooler.dense.bias", shape: [H])
        clsW = try st.tensor("classifier.weight", shape: [numLabels, H])
        clsB = try st.tensor("classifier.bias", shape: [numLabels])
    }

    /// Logits [batch.size][numLabels] from last hidden states [batch.size·seqLen, H].
    public func logits(_ hiddenStates: Tensor, _ batch: Batch) -> [[Float]] {
        let (B, H) = (batch.size, hidden)
        let cls = Tensor(shape: [B, H]), pooled = Tensor(shape: [B, H]), out = Tensor(shape: [B, numLabels])
        for b in 0..<B { (cls.data + b * H).update(from: hiddenStates.data + b * batch.seqLen * H, count: H) }
        zk_linear_forward(pooled.data, cls.data, poolW.data, poolB.data, Int32(B), Int32(H), Int32(H))
        for i in 0..<B * H { pooled[i] = tanhf(pooled[i]) }
        zk_linear_forward(out.data, pooled.data, clsW.data, clsB.data, Int32(B), Int32(numLabels), Int32(H))
        return (0..<B).map { out.row($0) }
    }

    /// The task prediction of a row of logits: the class index, or the score for regression.
    public static func prediction(_ row: [Float], regression: Bool) -> Double {
        regression ? Double(row[0]) : Double(row.indices.max { row[$0] < row[$1] }!)
    }
}
