"""Differential test of zoo's WordPiece tokenizer against HF transformers' BertTokenizer (slow, the
reference) and BertTokenizerFast.

    python tools/tokenizer_diff.py --zoo .build/release/zoo --vocab weights/minilm-l6/vocab.txt \
        --glue ../shared/glue --hostile 100000 --seed 1         # the long run (README "Tokenizer")
    python tools/hf_reference.py tokenizer-diff                 # the seeded set `make test` checks:
                                                                # .cache/ref/tokenizer_diff.jsonl

Inputs: every text of every GLUE file here (train, dev, test; single texts and the task's pairs),
plus a seeded generator of hostile text: the tokenizer's own markup ([CLS], ##, [unused0], …) alone
and glued to words, code points of every Unicode general category, combining-mark pile-ups,
controls and invisible formats, words of 99–101 and thousands of characters, lines of ~10 000
characters, empty and whitespace-only halves of pairs, and truncation at and around the length
(max_length = n-3 … n+2 of the untruncated count) under longest_first, only_first and only_second.

One JSON object per line, HF's argument names: {"text", "text_pair", "max_length", "truncation"}
plus, in a dump, HF's "input_ids" / "token_type_ids" (slow). The compare mode feeds the inputs to
`zoo tokenize --json` and counts the inputs on which zoo, slow and fast disagree.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(__file__))
import glue_tasks  # noqa: E402

SPECIAL = ["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"]
MARKUP = SPECIAL + ["[cls]", "[Sep]", "[ CLS ]", "[CLS", "CLS]", "[[CLS]]", "##", "##ing", "#", "[unused0]",
                    "[unused99]", "<s>", "</s>", "<pad>", "<unk>", "<mask>", "[MASK][MASK]", "[CLS][SEP]",
                    "\\[CLS\\]", "[SEP]\t[SEP]", "[ＣＬＳ]", "［CLS］"]
WORDS = ["the", "cat", "sat", "running", "unaffable", "naïve", "café", "Straße", "ΟΔΟΣ", "İstanbul",
         "東京", "한국어", "مرحبا", "שלום", "हिन्दी", "ﬁne", "Ⅻ", "x²", "½", "™", "don't", "U.S.A.", "e-mail",
         "3.14", "1,000", "@user", "#tag", "http://a.b/c?d=e", "😀", "👩‍👩‍👧", "🇩🇪", "ǅ", "ß", "Å", "Ω"]


def all_chars():
    """Code points by general category (Python's Unicode data); surrogates excluded (not representable
    in UTF-8, so no zoo input can hold them)."""
    cats = {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        cats.setdefault(unicodedata.category(chr(cp)), []).append(chr(cp))
    return cats


def hostile(rng, cats):
    cat_names = sorted(cats)
    def rand_char():
        return rng.choice(cats[rng.choice(cat_names)])
    def word():
        r = rng.random()
        if r < 0.35:
            return rng.choice(WORDS)
        if r < 0.55:
            return rng.choice(MARKUP)
        if r < 0.75:
            return "".join(rand_char() for _ in range(rng.randint(1, 6)))
        if r < 0.85:  # base letter + pile of combining marks
            return rng.choice("aeiouAEIOUnN") + "".join(rng.choice(cats["Mn"]) for _ in range(rng.randint(1, 8)))
        if r < 0.93:  # controls, formats, odd spaces
            return "".join(rng.choice(cats["Cc"] + cats["Cf"] + cats["Zs"] + cats["Zl"] + cats["Zp"]) for _ in range(rng.randint(1, 3)))
        if r < 0.97:  # words around the WordPiece length limit (100)
            return rng.choice(["a", "ab", "é"]) * rng.choice([33, 49, 50, 51, 99, 100, 101])
        return rng.choice(WORDS) * rng.randint(30, 300)  # very long word
    def text():
        r = rng.random()
        if r < 0.05:
            return ""
        if r < 0.1:
            return "".join(rng.choice([" ", "\t", "\n", "\u3000", "\u00a0", "\u2028", "\r\n"]) for _ in range(rng.randint(1, 4)))
        n = rng.choice([1, 2, 3, 5, 8, 13, 40]) if r < 0.995 else rng.randint(1500, 2500)  # ~10k-char lines
        seps = [" ", " ", " ", "", "\t", "  ", "\n", "\u00a0"]
        return "".join(word() + rng.choice(seps) for _ in range(n))
    return text


def glue_inputs(glue):
    """Every text of every GLUE file: single texts, and each pair task's pairs."""
    seen = set()
    out = []
    for task, t in glue_tasks.TASKS.items():
        for split in ["train", "dev", "test"]:
            path = glue_tasks.path(glue, task, split)
            if not os.path.exists(path) or path in seen:
                continue
            seen.add(path)
            with open(path, encoding="utf-8-sig") as f:
                rows = [l.rstrip("\r").split("\t") for l in f.read().split("\n") if l]
            names = rows[0] if t.header else None
            rows = rows[1:] if t.header else rows
            cols = [c if isinstance(c, int) else names.index(c) for c in t.texts]
            for r in rows:
                if max(cols) >= len(r):
                    continue
                texts = [r[c] for c in cols]
                out.append({"text": texts[0]})
                if len(texts) == 2:
                    out.append({"text": texts[0], "text_pair": texts[1]})
    return out


def with_truncation(cases, rng, slow):
    """Gives each case a max_length at or around its untruncated length, and a strategy."""
    out = []
    for c in cases:
        n = len(slow(c["text"], c.get("text_pair"), truncation=False)["input_ids"])
        pair = c.get("text_pair") is not None
        strategy = rng.choice(["longest_first", "only_first", "only_second"] if pair else ["longest_first", "only_first"])
        m = min(max(n + rng.randint(-3, 2), 3 if pair else 2), 100000)
        if rng.random() < 0.3:
            m = rng.choice([3, 4, 5, 8, 16, 128, 512])
            m = max(m, 3 if pair else 2)
        out.append(dict(c, max_length=m, truncation=strategy))
    return out


def hf(tok, c):
    """(input_ids, token_type_ids); the fast tokenizer raises where the slow one logs an error and
    returns the sequence untruncated: that is ("error", message)."""
    try:
        e = tok(c["text"], c.get("text_pair"), truncation=c["truncation"], max_length=c["max_length"])
    except Exception as x:
        return "error", str(x)
    return e["input_ids"], e["token_type_ids"]


def make_cases(a, slow):
    """The seeded inputs: GLUE's (all, or a.glue_sample of them) and a.hostile generated ones."""
    rng = random.Random(a.seed)
    cases = []
    if a.glue:
        g = glue_inputs(a.glue)
        if a.glue_sample and a.glue_sample < len(g):
            g = rng.sample(g, a.glue_sample)
        cases += g
    text = hostile(rng, all_chars())
    for _ in range(a.hostile):
        c = {"text": text()}
        if rng.random() < 0.5:
            c["text_pair"] = text()
        cases.append(c)
    return with_truncation(cases, rng, slow)


def tokenizers(vocab):
    from transformers import BertTokenizer, BertTokenizerFast
    from transformers.utils import logging
    logging.set_verbosity(logging.CRITICAL)  # the slow tokenizer logs every truncation it cannot do
    return BertTokenizer(vocab, do_lower_case=True), BertTokenizerFast(vocab, do_lower_case=True)


def dump(cases, slow, out):
    """The inputs with the slow tokenizer's output, one JSON object per line (written atomically)."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        for c in cases:
            ids, types = hf(slow, c)
            f.write(json.dumps(dict(c, input_ids=ids, token_type_ids=types), ensure_ascii=False) + "\n")
    os.replace(out + ".tmp", out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="compare", choices=["compare", "dump"])
    ap.add_argument("--vocab", default="weights/minilm-l6/vocab.txt")
    ap.add_argument("--glue", default=os.environ.get("ZOO_GLUE_DIR"))
    ap.add_argument("--glue-sample", type=int, default=0, help="a seeded sample of this many GLUE inputs (0 = all)")
    ap.add_argument("--hostile", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--zoo", action="append", help="a zoo binary to compare (repeatable; default .build/release/zoo)")
    ap.add_argument("--out", help="dump: the JSONL file to write")
    ap.add_argument("--show", type=int, default=10, help="compare: differences to print")
    ap.add_argument("--save", help="compare: write the inputs on which the first --zoo differs from slow (JSONL)")
    a = ap.parse_args()
    slow, fast = tokenizers(a.vocab)
    cases = make_cases(a, slow)
    print(f"{len(cases)} inputs ({sum('text_pair' in c for c in cases)} pairs)", file=sys.stderr)
    if a.mode == "dump":
        return dump(cases, slow, a.out)

    counts = {"slow != fast": 0}
    shown = 0
    saved = open(a.save, "w", encoding="utf-8") if a.save else None
    chunk = 10000   # zoo runs on 10 000 inputs at a time, so memory stays flat
    for start in range(0, len(cases), chunk):
        part = cases[start:start + chunk]
        inp = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in part)
        zoos = {}
        for z in a.zoo or [".build/release/zoo"]:
            run = subprocess.run([z, "tokenize", "--vocab", a.vocab, "--json"], input=inp.encode(), capture_output=True)
            if run.returncode != 0:
                sys.exit(f"{z} tokenize failed ({run.returncode}): {run.stderr.decode()[-2000:]}")
            zoos[z] = [json.loads(l) for l in run.stdout.decode().splitlines()]
            assert len(zoos[z]) == len(part), (z, len(zoos[z]), len(part))
        for i, c in enumerate(part):
            s, f = hf(slow, c), hf(fast, c)
            counts["slow != fast"] += s != f
            for z, outs in zoos.items():
                zt = (outs[i]["input_ids"], outs[i]["token_type_ids"])
                for name, ref in [("slow", s), ("fast", f)]:
                    key = f"{z} != {name}"
                    counts[key] = counts.get(key, 0) + (zt != ref)
                if zt != s and saved and z == (a.zoo or [".build/release/zoo"])[0]:
                    saved.write(json.dumps(dict(c, zoo=zt[0], slow=s[0], fast=f[0]), ensure_ascii=False) + "\n")
                if zt != s and shown < a.show:
                    shown += 1
                    print(z, json.dumps(c, ensure_ascii=True)[:400], "\n  zoo ", zt[0][:40], "\n  slow", s[0][:40], "\n  fast", f[0][:40])
        print(f"{start + len(part)} of {len(cases)}: {counts}", file=sys.stderr, flush=True)
    print(f"transformers {__import__('transformers').__version__}, tokenizers {__import__('tokenizers').__version__}, "
          f"Python {sys.version.split()[0]} (Unicode {unicodedata.unidata_version})")
    print(f"inputs: {len(cases)} (GLUE {len(cases) - a.hostile}, hostile {a.hostile}, seed {a.seed}); "
          f"truncation: " + ", ".join(f"{t} {sum(c['truncation'] == t for c in cases)}" for t in ["longest_first", "only_first", "only_second"]))
    for k, v in counts.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
