"""Did the model learn? Two failures read from a run's dev evaluations (``metrics.jsonl``).

A model that runs is not a model that learns. The medium study (docs/results.md) met both failures
below with settings that work elsewhere: LoRA at lr 1e-3 sat at chance for a whole TF-binding run,
and collapsed to chance half-way through a 4-epoch promoter run that had been learning. Both end
with a finished run, predictions and attributions, so the run says so itself:

- ``never_learnt``: dev MCC at or near chance (≤ :data:`NEAR_CHANCE_MCC`) at every evaluation. The
  model predicts one class (MCC undefined, logged as null) or barely better than guessing.
- ``collapsed``: dev MCC rose above that, then fell back to chance (≤ :data:`CHANCE_MCC`) and stayed
  there for the last :data:`COLLAPSE_EVALUATIONS` or more evaluations. Dev selection keeps the best
  checkpoint, so the exported model is the one from before the collapse; the training after it was
  wasted and the setting is unstable.

While a run is still training, the same findings are ``provisional``: some tasks sit at chance for
a while before they start to learn (tf/0 at lr 5e-4 reached dev MCC 0.38 only at step 400).

The fix named is always the learning rate (``train.lr``): it is what moved both cases in the study.
Consumers word it for their audience (the dashboard names the field on the Train page).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

CHANCE_MCC = 0.05  # dev MCC at or below this counts as chance (an undefined MCC, one class predicted, too)
NEAR_CHANCE_MCC = 0.10  # a run whose best dev MCC never passed this has not learnt
COLLAPSE_EVALUATIONS = 2  # evaluations in a row at chance, at the end, that make a collapse
MIN_EVALUATIONS = 2  # fewer evaluations say nothing either way
SETTING = "train.lr"


class LearningWarning(UserWarning):
    """Issued when a finished run shows a learning failure (like scikit-learn's ConvergenceWarning)."""


@dataclass(frozen=True)
class LearningFinding:
    """One thing wrong with how a run learnt, in plain words (``summary``) and as numbers."""

    kind: str  # "never_learnt" or "collapsed"
    summary: str  # what happened, without advice (the consumer names the setting to change)
    advice: str  # what to change, naming no field or flag; the setting is ``setting``
    setting: str  # the config key to change
    provisional: bool  # the run is still training: the finding may not hold at the end
    evaluations: int  # dev evaluations read
    best_mcc: Optional[float]
    best_step: Optional[int]
    collapse_step: Optional[int] = None  # first evaluation of the final run at chance

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mcc(record: dict[str, Any]) -> float:
    """A record's dev MCC; undefined (null: one class predicted) or unreadable counts as chance (0)."""
    value = record.get("dev_mcc")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0.0
    return float(value)


def dev_evaluations(metrics: Sequence[dict[str, Any]]) -> list[tuple[int, float]]:
    """``(step, dev MCC)`` of every dev evaluation in a metrics history, in order."""
    out = []
    for record in metrics:
        if isinstance(record, dict) and "dev_mcc" in record and isinstance(record.get("step"), int):
            out.append((record["step"], _mcc(record)))
    return out


def learning_findings(metrics: Sequence[dict[str, Any]], finished: bool = True) -> list[LearningFinding]:
    """What went wrong with learning, from a run's metrics history (empty when nothing did).

    ``finished``: the run has stopped training; otherwise findings are marked provisional.
    """
    evaluations = dev_evaluations(metrics)
    if len(evaluations) < MIN_EVALUATIONS:
        return []
    best_step, best = max(evaluations, key=lambda e: e[1])
    n = len(evaluations)
    provisional = not finished
    if best <= NEAR_CHANCE_MCC:
        so_far = " so far" if provisional else ""
        return [LearningFinding(
            kind="never_learnt",
            summary=f"The model has not learnt{so_far}: its dev MCC stayed at or near chance at all {n} evaluations "
                    f"(best {best:.2f}; 0 is guessing), so its predictions are barely better than a coin toss.",
            advice="Some tasks sit at chance for a while before they start; if it stays there, train again with a "
                   "lower learning rate (half, e.g. 5e-4 instead of 1e-3) or more epochs." if provisional else
                   "Train again with a lower learning rate (half, e.g. 5e-4 instead of 1e-3) or more epochs; a "
                   "k-mer baseline on the same task tells you what a model that learns should reach.",
            setting=SETTING, provisional=provisional, evaluations=n, best_mcc=round(best, 4), best_step=best_step,
        )]
    tail = 0
    for step, value in reversed(evaluations):
        if value > CHANCE_MCC or step <= best_step:
            break
        tail += 1
    if tail >= COLLAPSE_EVALUATIONS:
        collapse_step = evaluations[n - tail][0]
        if provisional:
            summary = (f"Training may have collapsed: dev MCC reached {best:.2f} at step {best_step:,}, then fell to "
                       f"chance from step {collapse_step:,} and stayed there for the last {tail} evaluations. Runs "
                       f"sometimes recover; if not, the run will keep the step-{best_step:,} model (chosen on dev).")
        else:
            summary = (f"Training collapsed: dev MCC reached {best:.2f} at step {best_step:,}, then fell to chance from "
                       f"step {collapse_step:,} and stayed there for the last {tail} evaluations. The run keeps the "
                       f"step-{best_step:,} model (chosen on dev), so its results are real, but the training after "
                       "the collapse was wasted.")
        return [LearningFinding(
            kind="collapsed",
            summary=summary,
            advice="The learning rate is too high for this task to train stably: train again with a lower one "
                   "(half, e.g. 5e-4 instead of 1e-3).",
            setting=SETTING, provisional=provisional, evaluations=n, best_mcc=round(best, 4), best_step=best_step,
            collapse_step=collapse_step,
        )]
    return []
