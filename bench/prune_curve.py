#!/usr/bin/env python3
"""Accuracy and speed against the share of attention heads removed, from `zoo prune --curve`.

    zoo prune --weights runs/mrpc --curve --out runs/mrpc-curve      # dev score of each step
    python bench/prune_curve.py runs/mrpc-curve [--rounds 3] [--zoo .build/release/zoo]

Times every step's model against step 0 (the unpruned model) with `zoo bench` at s=128, b=1 and
b=32 (the two interleaved, alternating which runs first, medians), prints a Markdown table and the
CPU, and writes <dir>/curve.md and <dir>/curve.svg (dev score and speed-up against % of heads removed).
"""
import argparse, json, os, sys

sys.path.insert(0, os.path.dirname(__file__))
from common import cpu, side_by_side  # noqa: E402


def svg(points, task, title):
    """A small two-axis line plot: dev score (left axis) and speed-up at b=1 / b=32 (right axis)."""
    W, H, L, R, T, B = 640, 400, 60, 60, 40, 50
    xs = [p["removed"] for p in points]
    score = [p["dev"] for p in points]
    lo, hi = min(score) - 2, max(score) + 2
    smax = max(max(p["speed1"], p["speed32"]) for p in points) * 1.1
    X = lambda v: L + (W - L - R) * v / 100
    Y1 = lambda v: H - B - (H - T - B) * (v - lo) / (hi - lo)
    Y2 = lambda v: H - B - (H - T - B) * v / smax
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{W - R}" y1="{T}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">% of attention heads removed</text>',
           f'<text x="15" y="{H / 2}" text-anchor="middle" transform="rotate(-90 15 {H / 2})">{task} dev score</text>',
           f'<text x="{W - 15}" y="{H / 2}" text-anchor="middle" transform="rotate(90 {W - 15} {H / 2})">speed vs unpruned (×)</text>']
    for v in range(0, 101, 10):
        out.append(f'<text x="{X(v)}" y="{H - B + 16}" text-anchor="middle">{v}</text>')
    for i in range(6):
        v = lo + (hi - lo) * i / 5
        out.append(f'<text x="{L - 6}" y="{Y1(v) + 4}" text-anchor="end">{v:.0f}</text>')
        s = smax * i / 5
        out.append(f'<text x="{W - R + 6}" y="{Y2(s) + 4}">{s:.1f}</text>')
        out.append(f'<line x1="{L}" y1="{Y2(s)}" x2="{W - R}" y2="{Y2(s)}" stroke="#ddd"/>')
    for key, colour, y in [("dev", "#1f77b4", Y1), ("speed1", "#d62728", Y2), ("speed32", "#ff7f0e", Y2)]:
        pts = " ".join(f"{X(p['removed']):.1f},{y(p[key]):.1f}" for p in points)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{X(p["removed"]):.1f}' + f'" cy="{y(p[key]):.1f}" r="3" fill="{colour}"/>' for p in points]
    for i, (colour, label) in enumerate([("#1f77b4", "dev score"), ("#d62728", "speed b=1"), ("#ff7f0e", "speed b=32")]):
        out.append(f'<line x1="{L + 10}" y1="{T + 12 + 16 * i}" x2="{L + 30}" y2="{T + 12 + 16 * i}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{L + 36}" y="{T + 16 + 16 * i}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="output directory of zoo prune --curve")
    ap.add_argument("--zoo", default=".build/release/zoo")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    curve = json.load(open(os.path.join(a.dir, "curve.json")))
    task, heads0 = curve["task"], sum(curve["points"][0]["heads"])
    dense = ("bert", ["--weights", curve["points"][0]["dir"]])
    points = []
    lines = [f"CPU: {cpu()}; {a.threads} threads; s=128; {a.rounds} rounds per speed, unpruned and pruned interleaved, medians\n",
             f"| heads removed | heads per layer | parameters | {task} dev | b=1 ms | speed | b=32 ms | speed |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    for p in curve["points"]:
        model = dense if p["step"] == 0 else ("pruned", ["--weights", p["dir"]])
        cells, point = [], {"removed": 100 * p["removed_heads"] / heads0, "dev": p["dev"]}
        for b in (1, 32):
            md, mm = side_by_side(a.zoo, dense, model, b, 128, a.threads, a.rounds)
            point[f"speed{b}"] = md / mm
            cells.append(f"{mm:.1f} | {md / mm:.3f}")
        points.append(point)
        line = (f"| {p['removed_heads']} of {heads0} ({point['removed']:.0f} %) | {p['heads']} | {p['parameters']} | {p['dev']:.2f} | "
                + " | ".join(cells) + " |")
        lines.append(line)
        print(line, flush=True)
    with open(os.path.join(a.dir, "curve.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(a.dir, "curve.svg"), "w") as f:
        f.write(svg(points, task.upper(), f"Head pruning of all-MiniLM-L6-v2 fine-tuned on {task.upper()} (zoo prune --curve)"))


if __name__ == "__main__":
    main()
