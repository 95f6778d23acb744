import CKernels
import Foundation

/// AdamW over a `ParameterStore`'s flat parameter buffer (torch.optim.AdamW semantics), with weight
/// decay only on the slots that take it (not biases, not LayerNorm).
public final class AdamW {
    public var lr: Float
    public let beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    public private(set) var step = 0
    public let m: Tensor, v: Tensor

    public init(parameterCount: Int, lr: Float, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0.01) {
        (self.lr, self.beta1, self.beta2, self.eps, self.weightDecay) = (lr, beta1, beta2, eps, weightDecay)
        m = Tensor(shape: [parameterCount])
        v = Tensor(shape: [parameterCount])
    }

    /// Continues a run whose optimizer had taken `step` steps (moments restored by the caller).
    public func restore(step: Int) { self.step = step }

    public func update(_ store: ParameterStore) {
        step += 1
        for s in store.slots {
            zk_adamw_update(store.values.data + s.offset, store.grads!.data + s.offset, m.data + s.offset, v.data + s.offset, s.count,
                            lr, beta1, beta2, eps, s.decay ? weightDecay : 0, Int32(step))
        }
    }
}
