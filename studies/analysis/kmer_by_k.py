"""What a k-mer regression reads on a medium-study task: one logistic regression per k (1-6) and one on
CpG / GC content alone, each with C chosen on dev MCC, fitted on the study's own training rows.

    python studies/analysis/kmer_by_k.py gue/tf/4

The rows are those of the task's k-mer cell in results/medium_study (same subsample, duplicates removed),
read with one strand (no augmentation), so the k = best row reproduces that cell's one-strand record.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from lingo_core.config import config_from_dict
from lingo_core.data import load_task
from lingo_core.evaluate import classification_metrics
from lingo_core.study.baselines import kmer_logistic_regression

CELLS = Path("results/medium_study/cells")
CS = (0.01, 0.1, 1.0, 10.0, 100.0)


def composition(sequences: list[str]) -> np.ndarray:
    """CpG dinucleotides and G+C per base."""
    return np.array([[s.count("CG") / max(len(s), 1), (s.count("G") + s.count("C")) / max(len(s), 1)] for s in sequences])


def composition_on_dev(task, columns: slice) -> dict:
    """A logistic regression on ``composition``'s ``columns``, C chosen on dev MCC: its C, dev and test metrics."""
    features = {s: composition(getattr(task, s).sequences)[:, columns] for s in ("train", "dev", "test")}
    best = None
    for c in CS:
        model = LogisticRegression(C=c, max_iter=3000).fit(features["train"], task.train.labels)
        dev = classification_metrics(task.dev.labels, model.predict_proba(features["dev"]), False)
        if best is None or dev["mcc"] > best["dev"]["mcc"]:
            best = {"C": c, "dev": dev, "model": model}
    best["test"] = classification_metrics(task.test.labels, best["model"].predict_proba(features["test"]), False)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", help="a medium-study task, e.g. gue/tf/4")
    task_name = parser.parse_args().task
    records = [json.loads(p.read_text()) for p in sorted(CELLS.glob("*-kmer_lr-*.json"))]
    records = [r for r in records if r["task"] == task_name and r["config"]["data"].get("augment", "none") in ("none", None)]
    if not records:
        raise SystemExit(f"no one-strand k-mer cell for {task_name} under {CELLS}; run the study's kmer_lr cell first")
    task = load_task(config_from_dict(records[0]["config"]).data)
    splits = ("train", "dev", "test")
    print(f"{task_name}: {', '.join(f'{s} {len(getattr(task, s))}' for s in splits)}; the study's cell: {records[0]['detail']}")
    rows = {"CpG only": composition_on_dev(task, slice(0, 1)), "CpG + GC": composition_on_dev(task, slice(0, 2))}
    # the study's own regression (its fit and dev choice of C), one k at a time
    rows.update({f"{k}-mers": kmer_logistic_regression(task, ks=[k], cs=CS) for k in range(1, 7)})
    print("| features | C | dev MCC | test MCC | test AUROC |\n|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['C']:g} | {r['dev']['mcc']:.3f} | {r['test']['mcc']:.3f} | {r['test']['auroc']:.3f} |")


if __name__ == "__main__":
    main()
