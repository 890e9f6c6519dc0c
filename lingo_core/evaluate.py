"""Classification metrics (scikit-learn) and evaluation of a model over a split."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np
from sklearn import metrics as skm


def _safe(fn: Callable[[], float]) -> Optional[float]:
    """A metric that is undefined (one class present) is reported as None, not as a crash."""
    try:
        value = float(fn())
    except ValueError:
        return None
    return None if math.isnan(value) else value


def classification_metrics(labels: np.ndarray, probs: np.ndarray, multi_label: bool = False) -> dict[str, Any]:
    """MCC, macro F1, accuracy, AUROC, AUPRC and the confusion matrix.

    ``probs`` are class probabilities (n, C) for single-label tasks, or per-label probabilities
    (n, L) for multi-label tasks (then AUROC/AUPRC are macro averages over labels, MCC and F1 are
    macro averages at threshold 0.5, accuracy is the exact-match ratio).
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if multi_label:
        preds = (probs >= 0.5).astype(int)
        truth = labels.astype(int)
        per_label_mcc = [_safe(lambda j=j: skm.matthews_corrcoef(truth[:, j], preds[:, j])) for j in range(truth.shape[1])]
        return {
            "mcc": float(np.mean([m for m in per_label_mcc if m is not None])) if any(m is not None for m in per_label_mcc) else None,
            "f1": _safe(lambda: skm.f1_score(truth, preds, average="macro", zero_division=0)),
            "accuracy": float((preds == truth).all(axis=1).mean()),
            "auroc": _safe(lambda: skm.roc_auc_score(truth, probs, average="macro")),
            "auprc": _safe(lambda: skm.average_precision_score(truth, probs, average="macro")),
            "per_label_mcc": per_label_mcc,
            "n": int(len(truth)),
        }
    labels = labels.astype(int)
    n_classes = probs.shape[1]
    preds = probs.argmax(axis=1)
    if n_classes == 2:
        auroc = _safe(lambda: skm.roc_auc_score(labels, probs[:, 1]))
        auprc = _safe(lambda: skm.average_precision_score(labels, probs[:, 1]))
    else:
        onehot = np.eye(n_classes)[labels]
        auroc = _safe(lambda: skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=list(range(n_classes))))
        auprc = _safe(lambda: skm.average_precision_score(onehot, probs, average="macro"))
    return {
        "mcc": float(skm.matthews_corrcoef(labels, preds)),
        "f1": float(skm.f1_score(labels, preds, average="macro", zero_division=0)),
        "accuracy": float(skm.accuracy_score(labels, preds)),
        "auroc": auroc,
        "auprc": auprc,
        "confusion_matrix": skm.confusion_matrix(labels, preds, labels=list(range(n_classes))).tolist(),
        "n": int(len(labels)),
    }


def metric_value(metrics: dict[str, Any], name: str) -> float:
    """The model-selection value (higher is better; loss is negated); undefined counts as -inf."""
    value = metrics.get(name)
    if value is None:
        return -math.inf
    return -float(value) if name == "loss" else float(value)
