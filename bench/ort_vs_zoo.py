#!/usr/bin/env python3
"""Side-by-side speed: ONNX Runtime fp32 vs `zoo bench bert`, same weights, same shapes, same threads.

Exports the encoder to ONNX with torch + transformers (real MiniLM-L6 weights from weights/minilm-l6,
random weights for the bert-base / tinybert-4l geometries), then alternates ORT and zoo runs per shape
and prints median latencies, throughput and the zoo/ORT throughput ratio as a Markdown table.

    python bench/ort_vs_zoo.py [--zoo .build/release/zoo] [--threads 2] [--models minilm-l6,bert-base]
                               [--shapes 1x128,32x128] [--rounds 3] [--json FILE]
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

import numpy as np

GEOMETRY = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "minilm-l6": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
    "tinybert-4l": dict(hidden_size=312, num_hidden_layers=4, num_attention_heads=12, intermediate_size=1200),
}


def export(model_name, weights, out_dir):
    import torch
    from transformers import BertConfig, BertModel
    if model_name == "minilm-l6" and weights:
        model = BertModel.from_pretrained(weights, add_pooling_layer=False)
    else:
        torch.manual_seed(0)
        model = BertModel(BertConfig(vocab_size=30522, **GEOMETRY[model_name]), add_pooling_layer=False)
    model.eval()
    path = os.path.join(out_dir, f"{model_name}.onnx")
    ids = torch.ones(2, 16, dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), path,
                          input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
                          dynamic_axes={k: {0: "b", 1: "s"} for k in ["input_ids", "attention_mask", "token_type_ids"]},
                          opset_version=17, dynamo=False)
    return path


def ort_session(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def time_ort(sess, b, s, min_seconds=2.0):
    rng = np.random.default_rng(1)
    feed = {"input_ids": rng.integers(0, 30522, (b, s), dtype=np.int64),
            "attention_mask": np.ones((b, s), np.int64), "token_type_ids": np.zeros((b, s), np.int64)}
    for _ in range(2):
        sess.run(None, feed)
    times, start = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def time_zoo(zoo, model_name, weights, b, s, threads):
    src = ["--weights", weights] if model_name == "minilm-l6" and weights else ["--geometry", model_name]
    out = subprocess.run([zoo, "bench", "bert", *src, "--batch", str(b), "--seq", str(s), "--threads", str(threads), "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", default=".build/release/zoo")
    ap.add_argument("--weights", default="weights/minilm-l6")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="minilm-l6,bert-base")
    ap.add_argument("--shapes", default="1x128,32x128")
    ap.add_argument("--rounds", type=int, default=3, help="alternating ORT/zoo rounds per shape; medians reported")
    ap.add_argument("--json", help="also write the rows as JSON")
    a = ap.parse_args()
    shapes = [tuple(map(int, x.split("x"))) for x in a.shapes.split(",")]
    rows = []
    core = None
    with tempfile.TemporaryDirectory() as tmp:
        for m in a.models.split(","):
            sess = ort_session(export(m, a.weights, tmp), a.threads)
            for b, s in shapes:
                ort_ms, zoo_ms = [], []
                for _ in range(a.rounds):
                    ort_ms.append(time_ort(sess, b, s))
                    z = time_zoo(a.zoo, m, a.weights, b, s, a.threads)
                    zoo_ms.append(z["median_ms"])
                    core = z["openblas_core"]
                o, zz = statistics.median(ort_ms), statistics.median(zoo_ms)
                rows.append(dict(model=m, batch=b, seq=s, threads=a.threads, ort_ms=o, zoo_ms=zz,
                                 ort_seq_s=b / o * 1000, zoo_seq_s=b / zz * 1000, ratio=o / zz))
                print(f"# {m} b={b} s={s}: ORT {o:.1f} ms, zoo {zz:.1f} ms, zoo/ORT {o / zz:.2f}", file=sys.stderr)
    print(f"zoo vs ONNX Runtime {__import__('onnxruntime').__version__} fp32, {a.threads} threads, OpenBLAS core {core}\n")
    print("| model | batch | seq | ORT ms | zoo ms | ORT seq/s | zoo seq/s | zoo/ORT |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['seq']} | {r['ort_ms']:.1f} | {r['zoo_ms']:.1f} | {r['ort_seq_s']:.1f} | {r['zoo_seq_s']:.1f} | {r['ratio']:.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
