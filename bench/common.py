"""Shared by the bench/ scripts: the CPU line every table starts with, one `zoo bench` run, and two
models timed against each other with their runs interleaved."""
import argparse, json, os, statistics, subprocess, sys


def cpu():
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            name = line.split(":", 1)[1].strip()
    flags = open("/proc/cpuinfo").read()
    simd = "AVX-512" + (" + VNNI" if "avx512_vnni" in flags else "") if "avx512f" in flags else ("AVX2" if "avx2" in flags else "SSE")
    return f"{name} ({simd}), {os.cpu_count()} cores"


def bench(zoo, variant, source, b, s, threads):
    """Median latency (ms) of `zoo bench <variant> <source…>` at batch b, sequence length s."""
    out = subprocess.run([zoo, "bench", variant, *source, "--batch", str(b), "--seq", str(s), "--threads", str(threads), "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["median_ms"]


def side_by_side(zoo, first, second, b, s, threads, rounds):
    """Medians (ms) of two models, each (variant, [source args]), timed in `rounds` pairs whose order
    alternates, so that whatever favours the first or second run of a pair falls on both alike."""
    t = ([], [])
    for i in range(rounds):
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):
            variant, source = (first, second)[k]
            t[k].append(bench(zoo, variant, source, b, s, threads))
    return statistics.median(t[0]), statistics.median(t[1])


def run_logged(cmd, log):
    """Runs a zoo command, its output to `log`; stops the script if it fails."""
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    with open(log, "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True)


def table_parser(doc):
    """The options every GLUE-table script takes: the zoo binary, tasks, the runs folder, speed rounds,
    threads, and whether to only make the runs or only time them."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", default=".build/release/zoo")
    ap.add_argument("--tasks", default="rte,mrpc,stsb,cola,sst2")
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prepare-only", action="store_true", help="make the missing runs, time nothing")
    ap.add_argument("--speed-only", action="store_true", help="skip making missing runs")
    return ap
