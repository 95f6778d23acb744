#!/usr/bin/env python3
"""Side-by-side speed of Q-BERT int8: `zoo bench qbert-int8` vs the zoo's own fp32 `bert` and vs ONNX
Runtime dynamic int8 quantization of the same model, same shapes, same threads.

The fp32 checkpoint (--weights, e.g. a `zoo finetune` output) is quantized once with
`zoo quantize --method int8`; the same encoder is exported to ONNX (torch + transformers) and quantized
with onnxruntime.quantization.quantize_dynamic (int8 weights, dynamic uint8 activations: ORT's
MatMulInteger / DynamicQuantizeMatMul path, VNNI kernels on this CPU). Runs alternate per shape; the
table has median latencies and the ratios qbert-int8 / bert and qbert-int8 / ORT-int8 (throughput),
then the on-disk sizes.

    python bench/qbert_vs_ort.py [--weights weights/minilm-l6] [--zoo .build/release/zoo] [--threads 2]
                                 [--shapes 1x128,32x128] [--rounds 3] [--json FILE]
"""
import argparse, json, os, statistics, subprocess, sys, tempfile

from ort_vs_zoo import cpu, export, ort_session, run_zoo, time_ort


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", default=".build/release/zoo")
    ap.add_argument("--weights", default="weights/minilm-l6", help="fp32 BERT checkpoint directory")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", default="1x128,32x128")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="also write the rows as JSON")
    a = ap.parse_args()
    from onnxruntime.quantization import QuantType, quantize_dynamic
    import onnxruntime

    shapes = [tuple(map(int, x.split("x"))) for x in a.shapes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        qdir = os.path.join(tmp, "qbert-int8")
        subprocess.run([a.zoo, "quantize", "--weights", a.weights, "--method", "int8", "--out", qdir], check=True, stdout=subprocess.DEVNULL)
        fp32_onnx = export("minilm-l6", a.weights, tmp)
        int8_onnx = os.path.join(tmp, "model-int8.onnx")
        quantize_dynamic(fp32_onnx, int8_onnx, weight_type=QuantType.QInt8)
        sess = ort_session(int8_onnx, a.threads)

        def zoo(variant, weights, b, s):
            return run_zoo(a.zoo, "bench", variant, "--weights", weights, "--batch", str(b), "--seq", str(s),
                           "--threads", str(a.threads), "--json")["median_ms"]

        for b, s in shapes:
            t = {"ort_int8": [], "bert": [], "qbert": []}
            for _ in range(a.rounds):
                t["ort_int8"].append(time_ort(sess, b, s))
                t["bert"].append(zoo("bert", a.weights, b, s))
                t["qbert"].append(zoo("qbert-int8", qdir, b, s))
            m = {k: statistics.median(v) for k, v in t.items()}
            rows.append(dict(batch=b, seq=s, threads=a.threads, ort_int8_ms=m["ort_int8"], bert_ms=m["bert"], qbert_ms=m["qbert"],
                             vs_bert=m["bert"] / m["qbert"], vs_ort_int8=m["ort_int8"] / m["qbert"]))
            print(f"# b={b} s={s}: ORT-int8 {m['ort_int8']:.1f} ms, bert {m['bert']:.1f} ms, qbert-int8 {m['qbert']:.1f} ms", file=sys.stderr)
        sizes = dict(fp32_safetensors=os.path.getsize(os.path.join(a.weights, "model.safetensors")),
                     qbert_int8_safetensors=os.path.getsize(os.path.join(qdir, "model.safetensors")),
                     ort_int8_onnx=os.path.getsize(int8_onnx))

    print(f"qbert-int8 vs zoo bert (fp32) vs ONNX Runtime {onnxruntime.__version__} dynamic int8, {a.threads} threads, weights {a.weights}")
    print(f"CPU: {cpu(a.zoo)}\n")
    print("| batch | seq | bert fp32 ms | ORT int8 ms | qbert-int8 ms | qbert-int8 / bert | qbert-int8 / ORT int8 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['batch']} | {r['seq']} | {r['bert_ms']:.1f} | {r['ort_int8_ms']:.1f} | {r['qbert_ms']:.1f} | {r['vs_bert']:.2f} | {r['vs_ort_int8']:.2f} |")
    f = sizes["fp32_safetensors"]
    print(f"\nsize on disk: fp32 {f / 2**20:.1f} MiB; qbert-int8 {sizes['qbert_int8_safetensors'] / 2**20:.1f} MiB "
          f"({sizes['qbert_int8_safetensors'] / f:.3f}x); ORT int8 ONNX {sizes['ort_int8_onnx'] / 2**20:.1f} MiB ({sizes['ort_int8_onnx'] / f:.3f}x)")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(dict(rows=rows, sizes=sizes), fh, indent=1)


if __name__ == "__main__":
    main()
