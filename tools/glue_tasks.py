"""The GLUE task table the Python tools share (tools/hf_reference.py, tools/hf_finetune.py): where each
task's files are, which columns hold the texts and the label, the label names, and the official
metrics computed with sklearn / scipy."""
import os
from collections import namedtuple

# texts / label: column names (files with a header) or positions (CoLA has none; -1 = last column).
# labels: class names in index order, None for regression. dev: the dev file name.
Task = namedtuple("Task", "folder texts label labels metrics header dev")
NLI3 = ["entailment", "neutral", "contradiction"]
TASKS = {
    "cola": Task("CoLA", [3], 1, ["0", "1"], ["matthews"], False, "dev.tsv"),
    "sst2": Task("SST-2", ["sentence"], "label", ["0", "1"], ["accuracy"], True, "dev.tsv"),
    "mrpc": Task("MRPC", ["#1 String", "#2 String"], "Quality", ["0", "1"], ["f1", "accuracy"], True, "dev.tsv"),
    "stsb": Task("STS-B", ["sentence1", "sentence2"], -1, None, ["pearson", "spearman"], True, "dev.tsv"),
    "mnli-m": Task("MNLI", ["sentence1", "sentence2"], -1, NLI3, ["accuracy"], True, "dev_matched.tsv"),
    "mnli-mm": Task("MNLI", ["sentence1", "sentence2"], -1, NLI3, ["accuracy"], True, "dev_mismatched.tsv"),
    "qnli": Task("QNLI", ["question", "sentence"], "label", ["entailment", "not_entailment"], ["accuracy"], True, "dev.tsv"),
    "rte": Task("RTE", ["sentence1", "sentence2"], "label", ["entailment", "not_entailment"], ["accuracy"], True, "dev.tsv"),
    "wnli": Task("WNLI", ["sentence1", "sentence2"], "label", ["0", "1"], ["accuracy"], True, "dev.tsv"),
}


def path(glue, task, split):
    t = TASKS[task]
    return os.path.join(glue, t.folder, t.dev if split == "dev" else f"{split}.tsv")


def read(glue, task, split):
    """(texts, labels) of a split: a list of text-column values per example, and class indices (or
    floats for regression)."""
    t = TASKS[task]
    with open(path(glue, task, split), encoding="utf-8-sig") as f:
        rows = [l.rstrip("\r").split("\t") for l in f.read().split("\n") if l]
    names = rows[0] if t.header else None
    rows = rows[1:] if t.header else rows
    col = lambda c: c if isinstance(c, int) else names.index(c)
    xs = [[r[col(c)] for c in t.texts] for r in rows]
    ys = [float(r[col(t.label)]) if t.labels is None else t.labels.index(r[col(t.label)]) for r in rows]
    return xs, ys


def metrics(task, preds, gold):
    """The task's official metrics ×100."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
    fns = {"accuracy": lambda: accuracy_score(gold, preds), "f1": lambda: f1_score(gold, preds, pos_label=1),
           "matthews": lambda: matthews_corrcoef(gold, preds), "pearson": lambda: pearsonr(preds, gold)[0],
           "spearman": lambda: spearmanr(preds, gold)[0]}
    return {m: 100 * float(fns[m]()) for m in TASKS[task].metrics}
