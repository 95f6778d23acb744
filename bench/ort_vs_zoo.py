#!/usr/bin/env python3
"""Side-by-side speed: ONNX Runtime fp32 vs `zoo bench bert`, same weights, same shapes, same threads.

Exports the encoder to ONNX with torch + transformers (real MiniLM-L6 weights from weights/minilm-l6,
random weights for the bert-base / tinybert-4l geometries), then alternates ORT and zoo runs per shape
and prints median latencies, throughput and the zoo/ORT throughput ratio as a Markdown table. Then:
a whole SST-2 dev pass (length-sorted batches of 32, each padded to its longest sequence) in both;
the machine's fp32 FMA peak and the GEMM rate zoo reaches (`zoo peak`); zoo's peak RSS while
benchmarking MiniLM-L6 against the size of its weight file.

    python bench/ort_vs_zoo.py [--zoo .build/release/zoo] [--threads 2] [--models minilm-l6,bert-base]
                               [--shapes 1x128,32x128] [--rounds 3] [--glue DIR] [--json FILE]
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


def run_zoo(zoo, *args):
    """Runs zoo, returning its JSON output and its peak RSS in bytes."""
    p = subprocess.Popen([zoo, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"zoo {' '.join(args)} failed: {err}")
    return json.loads(out)


def cpu(zoo):
    """The CPU and the kernels zoo runs on it (honours ZOO_SIMD), as every benchmark note names them."""
    return run_zoo(zoo, "bench", "bert", "--geometry", "tinybert-4l", "--batch", "1", "--seq", "8", "--iters", "1", "--json")["cpu"]


def time_zoo(zoo, model_name, weights, b, s, threads):
    src = ["--weights", weights] if model_name == "minilm-l6" and weights else ["--geometry", model_name]
    return run_zoo(zoo, "bench", "bert", *src, "--batch", str(b), "--seq", str(s), "--threads", str(threads), "--json")


def peak_rss(zoo, weights, threads):
    """zoo's own peak RSS (VmHWM, bytes) while benchmarking MiniLM-L6 at b=32, s=128. (Measured inside
    the process: a parent's rusage would also count the forked Python image before exec.)"""
    return time_zoo(zoo, "minilm-l6", weights, 32, 128, threads)["peak_rss_bytes"]


def dev_pass_ort(sess, weights, glue, batch=32, runs=3):
    """SST-2 dev in length-sorted batches, each padded to its longest sequence, as `zoo bench --task` does."""
    from transformers import BertTokenizer
    tok = BertTokenizer(os.path.join(weights, "vocab.txt"), do_lower_case=True)
    with open(os.path.join(glue, "SST-2", "dev.tsv"), encoding="utf-8") as f:
        texts = [l.rstrip("\n").split("\t")[0] for l in f.readlines()[1:]]
    enc = [tok(t, truncation=True, max_length=128)["input_ids"] for t in texts]
    enc.sort(key=len)
    feeds = []
    for i in range(0, len(enc), batch):
        chunk = enc[i:i + batch]
        L = max(map(len, chunk))
        ids = np.array([e + [0] * (L - len(e)) for e in chunk], np.int64)
        mask = np.array([[1] * len(e) + [0] * (L - len(e)) for e in chunk], np.int64)
        feeds.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    for fd in feeds[:2]:
        sess.run(None, fd)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for fd in feeds:
            sess.run(None, fd)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(texts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", default=".build/release/zoo")
    ap.add_argument("--weights", default="weights/minilm-l6")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="minilm-l6,bert-base")
    ap.add_argument("--shapes", default="1x128,32x128")
    ap.add_argument("--rounds", type=int, default=3, help="alternating ORT/zoo rounds per shape; medians reported")
    ap.add_argument("--glue", default=os.environ.get("ZOO_GLUE_DIR", "data/glue"), help="GLUE directory (for the SST-2 dev pass)")
    ap.add_argument("--json", help="also write the rows as JSON")
    a = ap.parse_args()
    shapes = [tuple(map(int, x.split("x"))) for x in a.shapes.split(",")]
    rows = []
    core = None
    dev = None
    with tempfile.TemporaryDirectory() as tmp:
        for m in a.models.split(","):
            sess = ort_session(export(m, a.weights, tmp), a.threads)
            if m == "minilm-l6" and os.path.exists(os.path.join(a.glue, "SST-2", "dev.tsv")):
                ort_s, n = [], 0
                zoo_s = []
                for _ in range(a.rounds):
                    t, n = dev_pass_ort(sess, a.weights, a.glue)
                    ort_s.append(t)
                    zoo_s.append(run_zoo(a.zoo, "bench", "bert", "--weights", a.weights, "--task", "sst2", "--data", a.glue,
                                         "--batch", "32", "--threads", str(a.threads), "--json")["median_s"])
                dev = dict(examples=n, ort_s=statistics.median(ort_s), zoo_s=statistics.median(zoo_s))
                print(f"# SST-2 dev pass: ORT {dev['ort_s']:.3f} s, zoo {dev['zoo_s']:.3f} s", file=sys.stderr)
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
    peak = run_zoo(a.zoo, "peak", "--threads", str(a.threads), "--json")
    rss = peak_rss(a.zoo, a.weights, a.threads) if "minilm-l6" in a.models else None
    print(f"zoo vs ONNX Runtime {__import__('onnxruntime').__version__} fp32, {a.threads} threads, OpenBLAS core {core}")
    print(f"CPU: {cpu(a.zoo)}\n")
    print("| model | batch | seq | ORT ms | zoo ms | ORT seq/s | zoo seq/s | zoo/ORT |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['seq']} | {r['ort_ms']:.1f} | {r['zoo_ms']:.1f} | {r['ort_seq_s']:.1f} | {r['zoo_seq_s']:.1f} | {r['ratio']:.2f} |")
    if dev:
        print(f"\nSST-2 dev pass ({dev['examples']} sentences, length-sorted batches of 32, dynamic padding): "
              f"ORT {dev['ort_s']:.3f} s, zoo {dev['zoo_s']:.3f} s, zoo/ORT {dev['ort_s'] / dev['zoo_s']:.2f}")
    print(f"\nfp32 FMA peak (zoo peak): {peak['fma_peak_gflops']:.1f} GFLOPS; encoder GEMMs (bert-base, 4096 tokens), zoo kernel:")
    for g in peak["gemm"]:
        share = f" = {100 * g['zoo_gflops'] / peak['fma_peak_gflops']:.0f}% of peak" if peak["fma_peak_gflops"] > 0 else ""   # none at ZOO_SIMD=generic
        print(f"  {g['shape']:9s} {g['N']:5d} x {g['K']:4d}: {g['zoo_gflops']:6.1f} GFLOPS{share} (OpenBLAS {g['openblas_gflops']:.1f})")
    if rss:
        size = os.path.getsize(os.path.join(a.weights, "model.safetensors"))
        print(f"\npeak RSS of `zoo bench` on MiniLM-L6 (b=32, s=128): {rss / 2**20:.1f} MiB = {rss / size:.2f}x the weight file ({size / 2**20:.1f} MiB)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(rows=rows, dev_pass=dev, peak=peak, rss_bytes=rss), f, indent=1)


if __name__ == "__main__":
    main()
