"""Non-neural baselines: k-mer logistic regression, (k, C) chosen on dev.

A method label of a study is a baseline when its entry has ``baseline: <name>`` with a name of
:data:`BASELINES`; a baseline is deterministic, so one fit serves every seed's row.
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np

from .. import runs
from ..config import config_from_dict
from ..sequence_input import reverse_complement

if TYPE_CHECKING:
    from .cells import Cell

DEFAULT_KS = (3, 4, 5, 6)
DEFAULT_CS = (0.1, 1.0, 10.0)


def kmer_matrix(sequences: Sequence[str], k: int):
    """Overlapping k-mer frequencies over ACGT (k-mers with N are skipped), rows L2-normalised (sparse)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.preprocessing import normalize

    vocabulary = ["".join(p) for p in itertools.product("ACGT", repeat=k)]
    vectorizer = CountVectorizer(analyzer="char", ngram_range=(k, k), lowercase=False, vocabulary=vocabulary, dtype=np.float64)
    return normalize(vectorizer.transform(sequences), norm="l2")


def kmer_logistic_regression(task, ks: Sequence[int] = DEFAULT_KS, cs: Sequence[float] = DEFAULT_CS, seed: int = 0,
                             augment: str = "none", eval_strands: str = "given") -> dict[str, Any]:
    """k-mer logistic regression on a :class:`TaskData`: (k, C) chosen on dev MCC, reported on test.

    ``augment="reverse_complement"`` (``data.augment``) fits on every training sequence and its reverse
    complement, the regression's counterpart of a network reading each on a random strand.
    ``eval_strands="both"`` (``data.eval_strands``) scores dev and test as the mean of each sequence's and
    its reverse complement's probabilities, as a network run with that setting is scored.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from ..evaluate import classification_metrics, metric_value

    best: Optional[dict[str, Any]] = None
    tried = []
    train_sequences, train_labels = list(task.train.sequences), task.train.labels
    if augment == "reverse_complement":
        train_sequences += [reverse_complement(s) for s in task.train.sequences]
        train_labels = np.concatenate([train_labels, train_labels])
    strands = [lambda s: s] + ([reverse_complement] if eval_strands == "both" else [])

    def strand_matrices(sequences: Sequence[str], k: int) -> list:
        return [kmer_matrix([read(s) for s in sequences], k) for read in strands]

    def probabilities(clf, matrices: list) -> np.ndarray:
        return sum(clf.predict_proba(x) for x in matrices) / len(matrices)

    for k in ks:
        x_train = kmer_matrix(train_sequences, int(k))
        x_dev = strand_matrices(task.dev.sequences, int(k))
        for c in cs:
            clf = LogisticRegression(C=float(c), max_iter=3000, random_state=seed)
            if task.multi_label:
                clf = OneVsRestClassifier(clf)
            clf.fit(x_train, train_labels)
            dev = classification_metrics(task.dev.labels, probabilities(clf, x_dev), task.multi_label)
            tried.append({"k": int(k), "C": float(c), "dev_mcc": dev["mcc"]})
            if best is None or metric_value(dev, "mcc") > metric_value(best["dev"], "mcc"):
                best = {"k": int(k), "C": float(c), "clf": clf, "dev": dev}
    assert best is not None
    test = classification_metrics(task.test.labels, probabilities(best["clf"], strand_matrices(task.test.sequences, best["k"])), task.multi_label)
    estimators = best["clf"].estimators_ if task.multi_label else [best["clf"]]
    n_params = int(sum(e.coef_.size + e.intercept_.size for e in estimators))
    return {"k": best["k"], "C": best["C"], "dev": best["dev"], "test": test, "parameters": n_params, "tried": tried}


def run_kmer_cell(cell: "Cell") -> dict[str, Any]:
    """Fit the k-mer baseline of ``cell`` on its task and return the cell's record."""
    from ..data import load_task
    from .records import clean_metrics

    started = time.time()
    data = config_from_dict(cell.config).data
    task = load_task(data)
    spec = cell.baseline or {}
    result = kmer_logistic_regression(task, spec.get("k", DEFAULT_KS), spec.get("C", DEFAULT_CS), seed=0, augment=data.augment,
                                      eval_strands=data.eval_strands)
    wall = time.time() - started
    return {
        **cell.base_record(),
        "status": "done",
        "test": clean_metrics(result["test"]),
        "dev": clean_metrics(result["dev"]),
        "parameters": {"trainable": result["parameters"], "total": result["parameters"], "percent": None},
        "exported_params": result["parameters"],
        "wall_time_s": round(wall, 2),
        "train_time_s": round(wall, 2),
        "n": {s: len(getattr(task, s)) for s in ("train", "dev", "test")},
        "duplicates": task.report.get("duplicates", {}),
        "subsampling": task.report.get("subsampling", {}).get("description"),
        "detail": f"k={result['k']}, C={result['C']:g} (chosen on dev)" + (
            ", trained on both strands" if data.augment == "reverse_complement" else "") + (
            ", dev and test scored on both strands" if data.eval_strands == "both" else ""),
        "tried": result["tried"],
        "finished": runs.now(),
    }


_RUNNERS: dict[str, Callable[["Cell"], dict[str, Any]]] = {"kmer_lr": run_kmer_cell}
BASELINES = tuple(_RUNNERS)


def run_baseline(cell: "Cell") -> dict[str, Any]:
    """Fit the baseline of ``cell`` (``cell.kind`` names it) and return the cell's record."""
    return _RUNNERS[cell.kind](cell)
