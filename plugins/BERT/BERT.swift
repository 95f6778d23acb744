import CKernels
import Foundation
import ZooCore

/// `bert`: the dense fp32 network of any BERT-family checkpoint (HF BERT with or without pruned
/// heads, DistilBERT, ALBERT), the uncompressed baseline every compressed variant is measured against.
public let plugin = Plugin(variants: [
    Variant(name: "bert", summary: "dense fp32 BERT-family network (HF BERT incl. pruned_heads, DistilBERT, ALBERT checkpoints), the uncompressed baseline") { source in
        switch source {
        case .checkpoint(let ckpt): return try BertNetwork(checkpoint: ckpt)
        case .geometry(let g, let seed): return try BertNetwork(packing: randomStore(g.spec, seed: seed))
        }
    },
], methods: [
    Method(name: "bert", variant: "bert", summary: "the base model fine-tuned on the task (zoo finetune, its defaults), the dense baseline", resumable: true,
           geometry: { _, _, target in target }) { i in
        ["finetune", "--base", i.source, "--task", i.task, "--seed", "\(i.seed)", "--out", i.out] + (i.limit.map { ["--limit", "\($0)"] } ?? [])
            + (i.finetuneEpochs.map { ["--epochs", "\($0)"] } ?? [])
    },
])

public typealias BertNetwork = Network<Linear>
