"""Statistics for the report: paired t-tests by seed, test-set bootstrap intervals, prediction
disagreement between paired runs, and hyper-parameter choice on dev."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

POOLED = "all tasks (pooled pairs)"


def paired_t(diffs: np.ndarray) -> tuple[float, float, float, float]:
    """Paired t-test of mean(diffs) = 0 with n - 1 degrees of freedom: (se, p, ci95 low, ci95 high).

    NaN where fewer than 2 pairs or no spread (a t interval needs both).
    """
    n = len(diffs)
    if n < 2:
        return float("nan"), float("nan"), float("nan"), float("nan")
    from scipy import stats

    mean, se = float(diffs.mean()), float(diffs.std(ddof=1) / math.sqrt(n))
    if se == 0:
        return 0.0, (1.0 if mean == 0 else 0.0), mean, mean
    t = stats.t.ppf(0.975, n - 1)
    p = float(2 * stats.t.sf(abs(mean / se), n - 1))
    return se, p, mean - t * se, mean + t * se


def _paired_row(task: str, other: str, diffs: np.ndarray) -> dict[str, Any]:
    """Mean paired difference, its paired t-test and the verdict (see :func:`compare_methods`)."""
    diff = float(diffs.mean())
    se, p, low, high = paired_t(diffs)
    if np.all(diffs == 0):
        verdict = "same"
    elif not math.isnan(p) and p < 0.05:
        verdict = "better" if diff > 0 else "worse"
    else:
        verdict = "tie"
    return {"task": task, "vs": other, "seeds": len(diffs), "diff": round(diff, 4),
            "se": None if math.isnan(se) else round(se, 4),
            "ci95": "" if math.isnan(low) else f"[{low:+.3f}, {high:+.3f}]",
            "p": "" if math.isnan(p) else f"{p:.2g}", "verdict": verdict, "higher_mean": diff > 0, "_diffs": diffs}


def compare_methods(
    table: pd.DataFrame, method: str, others: Sequence[str], metric: str = "test_mcc", group: Optional[str] = None, pooled: bool = True
) -> pd.DataFrame:
    """Per task, paired by seed: mean difference of ``method`` minus each other method on the seeds both
    finished, its standard error, a paired t-test (n - 1 degrees of freedom: with 3 seeds the 95 %
    interval is the mean ± 4.30 se) and a verdict. With ``pooled`` and several tasks, a last row per
    other method (task ``POOLED``) pools every (task, seed) pair.

    ``verdict``: "better"/"worse" when the paired t-test rejects no difference at p < 0.05, "same" when
    every paired difference is exactly 0, "tie" otherwise (always "tie" with fewer than 2 paired seeds).
    """
    data = table if group is None else table[table["group"] == group]
    data = data[(data["status"] == "done") & data[metric].notna()]
    rows = []
    for task in dict.fromkeys(data["task"]):
        here = data[data["task"] == task]
        a = here[here["method"] == method].drop_duplicates("seed").set_index("seed")[metric]
        if a.empty:
            continue
        for other in others:
            b = here[here["method"] == other].drop_duplicates("seed").set_index("seed")[metric]
            seeds = sorted(set(a.index) & set(b.index))
            if seeds:
                rows.append(_paired_row(task, other, np.array([a[s] - b[s] for s in seeds], dtype=float)))
    columns = ["task", "vs", "seeds", "diff", "se", "ci95", "p", "verdict", "higher_mean", "_diffs"]
    frame = pd.DataFrame(rows, columns=columns)
    if pooled and frame["task"].nunique() > 1:
        # every (task, seed) pair of every task: more power than any single task, same paired logic
        extra = [_paired_row(POOLED, other, np.concatenate(list(frame[frame["vs"] == other]["_diffs"])))
                 for other in dict.fromkeys(frame["vs"])]
        frame = pd.concat([frame, pd.DataFrame(extra, columns=columns)], ignore_index=True)
    return frame.drop(columns="_diffs")


def _compared_rows(table: pd.DataFrame, method: str, others: Sequence[str], metric: str) -> list[dict[str, Any]]:
    """:func:`compare_methods` (not pooled) with :func:`add_prediction_statistics`, as row dicts."""
    comp = add_prediction_statistics(compare_methods(table, method, others, metric=metric, pooled=False), table, method, metric)
    return comp.drop(columns="higher_mean").to_dict("records")


def compare_per_setting(table: pd.DataFrame, method: str, others: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """:func:`compare_methods` (not pooled) at each ``setting`` of ``table``, one row per setting x
    metric x task x other method."""
    rows = []
    for setting in dict.fromkeys(table["setting"]):
        here = table[table["setting"] == setting]
        for metric in metrics:
            rows.extend({"setting": setting, "metric": metric, **r} for r in _compared_rows(here, method, others, metric))
    return pd.DataFrame(rows)


def compare_variants(table: pd.DataFrame, x: str, metrics: Sequence[str]) -> pd.DataFrame:
    """Within a grid that varies a setting (prefix, encoding, dtype, pooling, ...): each variant of a
    method minus the method's first variant (the grid's first value), per task and metric, paired by
    seed as in :func:`compare_methods`, with prediction disagreement and the test-set bootstrap.

    ``x`` names the column that labels variants (:class:`~lingo_core.study.report.GroupView`).
    """
    data = table[(table["kind"] == "train")] if "kind" in table.columns else table
    relabelled = data.assign(method=data[x])
    rows = []
    for method in dict.fromkeys(data["method"]):
        variants = list(dict.fromkeys(data[data["method"] == method][x]))
        reference = variants[0]
        for variant in variants[1:]:
            for metric in metrics:
                rows.extend({"variant": variant, "metric": metric, **r} for r in _compared_rows(relabelled, variant, [reference], metric))
    return pd.DataFrame(rows)


def choose_on_dev(table: pd.DataFrame, metric: str = "dev_mcc") -> pd.DataFrame:
    """Per task and method of a group that varies a setting: the setting with the highest mean dev metric.

    This is how a grid such as ``vary: {train.lr: [...]}`` selects a hyper-parameter honestly (on dev,
    never on test); the test metric of the chosen setting is shown next to it for reference.
    """
    done = table[(table["status"] == "done") & table[metric].notna() & (table["setting"].fillna("") != "")]
    rows = []
    for (task, method), here in done.groupby(["task", "method"], sort=False):
        stats = here.groupby("setting", sort=False).agg(dev=(metric, "mean"), test=("test_mcc", "mean"), n=("seed", "nunique"))
        best = stats["dev"].idxmax()
        rows.append({"task": task, "method": method, "chosen": best, f"mean {metric}": round(float(stats.loc[best, "dev"]), 4),
                     "mean test_mcc": round(float(stats.loc[best, "test"]), 4), "seeds": int(stats.loc[best, "n"]),
                     "settings tried": len(stats)})
    return pd.DataFrame(rows, columns=["task", "method", "chosen", f"mean {metric}", "mean test_mcc", "seeds", "settings tried"])


def _paired_predictions(table: pd.DataFrame, task: str, method: str, other: str) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Test predictions of ``method`` and ``other`` on ``task``, paired by seed (runs that saved them)."""
    from .. import runs

    here = table[(table["task"] == task) & (table["status"] == "done")]
    by_seed = {m: here[here["method"] == m].drop_duplicates("seed").set_index("seed") for m in (method, other)}

    def predictions(row: pd.Series) -> Optional[pd.DataFrame]:
        kept = row.get("test_predictions")
        if isinstance(kept, str) and kept:  # the copy kept beside the cell's record
            try:
                return pd.read_csv(kept)
            except (OSError, ValueError):
                pass
        run_dir = row.get("run_dir")
        return runs.Run(Path(run_dir)).predictions("test") if isinstance(run_dir, str) and run_dir else None

    pairs = []
    for seed in sorted(set(by_seed[method].index) & set(by_seed[other].index)):
        a, b = (predictions(by_seed[m].loc[seed]) for m in (method, other))
        if a is not None and b is not None and len(a) == len(b) and list(a.columns) == list(b.columns):
            pairs.append((a, b))
    return pairs


def _labels_and_scores(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    probs = frame[[c for c in frame.columns if c.startswith("p_")]].to_numpy()
    return frame["label"].to_numpy(), probs


def disagreement(pairs: Sequence[tuple[pd.DataFrame, pd.DataFrame]]) -> Optional[float]:
    """Mean share of test sequences whose predicted class differs between the paired runs."""
    shares = [float((_labels_and_scores(a)[1].argmax(1) != _labels_and_scores(b)[1].argmax(1)).mean())
              for a, b in pairs if "label" in a.columns]
    return float(np.mean(shares)) if shares else None


def resampled_mcc(labels: np.ndarray, predicted: np.ndarray, num_classes: int, indices: np.ndarray) -> np.ndarray:
    """Matthews correlation of ``predicted`` against ``labels`` for each row of ``indices`` (one resample of
    the rows per row, repeats allowed; a 1-D ``indices`` is one resample).

    The multi-class formula from the confusion matrix (as scikit-learn computes it; 0 where undefined),
    for all resamples at once: one bincount builds every resample's confusion matrix.
    """
    indices = np.atleast_2d(indices)
    cells = num_classes * num_classes
    offsets = np.arange(len(indices))[:, None] * cells
    flat = (labels[indices] * num_classes + predicted[indices] + offsets).ravel()
    confusion = np.bincount(flat, minlength=len(indices) * cells).reshape(-1, num_classes, num_classes).astype(np.float64)
    true_counts, predicted_counts = confusion.sum(2), confusion.sum(1)
    total, correct = confusion.sum((1, 2)), np.trace(confusion, axis1=1, axis2=2)
    numerator = correct * total - (predicted_counts * true_counts).sum(1)
    denominator = np.sqrt((total**2 - (predicted_counts**2).sum(1)) * (total**2 - (true_counts**2).sum(1)))
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


class RankedScores:
    """Binary scores sorted once, so the AUROC of any resample is two bincounts and a cumulative sum."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray) -> None:
        self.positive = np.asarray(labels) == 1
        _, self.group = np.unique(scores, return_inverse=True)  # equal scores share a group (ties count half)
        self.groups = int(self.group.max()) + 1 if len(self.group) else 0

    def auroc(self, indices: np.ndarray) -> np.ndarray:
        """Area under the ROC curve for each row of ``indices`` (one resample per row, repeats allowed; a 1-D
        ``indices`` is one resample): the Mann-Whitney statistic with ties counted half, which is what
        scikit-learn's ``roc_auc_score`` computes; nan for a resample with one class."""
        indices = np.atleast_2d(indices)
        resamples, rows = len(indices), len(self.positive)
        offsets = np.arange(resamples)[:, None]
        weight = np.bincount((indices + offsets * rows).ravel(), minlength=resamples * rows).reshape(resamples, rows)
        group = (self.group[None, :] + offsets * self.groups).ravel()
        size = resamples * self.groups
        positives = np.bincount(group, weights=(weight * self.positive).ravel(), minlength=size).reshape(resamples, -1)
        negatives = np.bincount(group, weights=(weight * ~self.positive).ravel(), minlength=size).reshape(resamples, -1)
        pairs = positives.sum(1) * negatives.sum(1)
        negatives_below = np.cumsum(negatives, axis=1) - negatives
        wins = (positives * (negatives_below + 0.5 * negatives)).sum(1)
        return np.divide(wins, pairs, out=np.full(resamples, np.nan), where=pairs > 0)


def bootstrap_interval(pairs: Sequence[tuple[pd.DataFrame, pd.DataFrame]], metric: str = "test_mcc",
                       resamples: int = 1000, seed: int = 0, block: int = 100) -> Optional[tuple[float, float]]:
    """95 % interval of the mean paired difference when the test set is resampled (same resample for
    both runs of a pair; one per seed), so test-set size enters the uncertainty, not only seeds.

    Resamples are scored ``block`` at a time (memory: block x test rows per pair)."""
    name = metric.removeprefix("test_")
    if name not in ("mcc", "auroc") or not pairs or "label" not in pairs[0][0].columns:
        return None
    data = [(*_labels_and_scores(a), _labels_and_scores(b)[1]) for a, b in pairs]
    if name == "auroc" and data[0][1].shape[1] != 2:
        return None

    scorers = []
    for labels, a, b in data:
        labels = labels.astype(np.int64)
        if name == "mcc":
            classes = a.shape[1]
            scorers.append([lambda indices, l=labels, p=probs.argmax(1), k=classes: resampled_mcc(l, p, k, indices)
                            for probs in (a, b)])
        else:
            scorers.append([RankedScores(labels, probs[:, 1]).auroc for probs in (a, b)])

    generator = np.random.default_rng(seed)
    sizes = [len(labels) for labels, _, _ in data]
    means = []
    for first in range(0, resamples, block):
        count = min(block, resamples - first)
        indices = [np.empty((count, n), dtype=np.int64) for n in sizes]
        for row in range(count):  # drawn resample by resample, pair by pair: one fixed stream for a given seed
            for drawn, n in zip(indices, sizes):
                drawn[row] = generator.integers(0, n, n)
        diffs = np.column_stack([score_a(idx) - score_b(idx) for (score_a, score_b), idx in zip(scorers, indices)])
        means.extend(np.nanmean(diffs, axis=1))
    low, high = np.nanpercentile(means, [2.5, 97.5])
    return float(low), float(high)


def add_prediction_statistics(comp: pd.DataFrame, table: pd.DataFrame, method: str, metric: str) -> pd.DataFrame:
    """Per task row of a :func:`compare_methods` frame: ``disagree`` (share of test predictions that
    differ, mean over paired seeds) and ``boot95`` (test-set bootstrap interval of the difference)."""
    if "run_dir" not in table.columns and "test_predictions" not in table.columns:
        return comp
    disagree, boot = [], []
    for row in comp.itertuples():
        pairs = [] if row.task == POOLED else _paired_predictions(table, row.task, method, row.vs)
        share = disagreement(pairs)
        interval = bootstrap_interval(pairs, metric) if pairs else None
        disagree.append(None if share is None else round(share, 4))
        boot.append("" if interval is None else f"[{interval[0]:+.3f}, {interval[1]:+.3f}]")
    if all(d is None for d in disagree):
        return comp
    return comp.assign(disagree=disagree, boot95=boot)
