"""Statistics for the report: paired comparisons by seed and hyper-parameter choice on dev."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

POOLED = "all tasks (pooled pairs)"


def _paired_row(task: str, other: str, diffs: np.ndarray) -> dict[str, Any]:
    """Mean paired difference, its standard error and the verdict (see :func:`compare_methods`)."""
    diff = float(diffs.mean())
    se = float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else float("nan")
    if np.all(diffs == 0):
        verdict = "same"
    elif len(diffs) > 1 and se > 0 and abs(diff) > 2 * se:
        verdict = "better" if diff > 0 else "worse"
    else:
        verdict = "tie"
    return {"task": task, "vs": other, "seeds": len(diffs), "diff": round(diff, 4),
            "se": None if math.isnan(se) else round(se, 4), "verdict": verdict, "higher_mean": diff > 0, "_diffs": diffs}


def compare_methods(
    table: pd.DataFrame, method: str, others: Sequence[str], metric: str = "test_mcc", group: Optional[str] = None, pooled: bool = True
) -> pd.DataFrame:
    """Per task, paired by seed: mean difference of ``method`` minus each other method on the seeds both
    finished, its standard error (spread of the paired differences / sqrt(n)), and a verdict. With
    ``pooled`` and several tasks, a last row per other method (task ``POOLED``) pools every (task, seed)
    pair.

    ``verdict``: "better"/"worse" when the mean difference exceeds two standard errors, "same" when every
    paired difference is exactly 0, "tie" otherwise (always "tie" with fewer than 2 paired seeds).
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
    columns = ["task", "vs", "seeds", "diff", "se", "verdict", "higher_mean", "_diffs"]
    frame = pd.DataFrame(rows, columns=columns)
    if pooled and frame["task"].nunique() > 1:
        # every (task, seed) pair of every task: more power than any single task, same paired logic
        extra = [_paired_row(POOLED, other, np.concatenate(list(frame[frame["vs"] == other]["_diffs"])))
                 for other in dict.fromkeys(frame["vs"])]
        frame = pd.concat([frame, pd.DataFrame(extra, columns=columns)], ignore_index=True)
    return frame.drop(columns="_diffs")


def compare_per_setting(table: pd.DataFrame, method: str, others: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """:func:`compare_methods` (not pooled) at each ``setting`` of ``table``, one row per setting x
    metric x task x other method."""
    rows = []
    for setting in dict.fromkeys(table["setting"]):
        here = table[table["setting"] == setting]
        for metric in metrics:
            comp = compare_methods(here, method, others, metric=metric, pooled=False)
            rows.extend({"setting": setting, "metric": metric, **r} for r in comp.drop(columns="higher_mean").to_dict("records"))
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
