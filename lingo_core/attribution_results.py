"""What an attribution produced: per-sequence IG and ISM results and their exports (no model, no plotting).

:mod:`lingo_core.attribution` computes these and :mod:`lingo_core.plots.attribution` draws them;
both import this module, so the figures need neither torch nor the model code, and the dependency
runs one way (the attribute command's ``--html`` calls the plots, never the reverse).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import pandas as pd

from .encoding import PROMPT

BASES = "ACGT"
CONVERGENCE_TOLERANCE = 0.05  # |delta| / |score difference| above which IG warns: raise n_steps
PathLike = Union[str, Path]


class AttributionError(ValueError):
    """An attribution request cannot be served; the message says why and what to do."""


def onehot(sequence: str) -> np.ndarray:
    """(L, 4) one-hot matrix in A, C, G, T order (N rows are all zero)."""
    codes = np.frombuffer(sequence.encode(), dtype=np.uint8)
    return (codes[:, None] == np.frombuffer(BASES.encode(), dtype=np.uint8)[None, :]).astype(np.float32)


@dataclass
class IGResult:
    """Integrated gradients for one sequence."""

    sequence: str
    target: int
    target_name: str
    nucleotide: np.ndarray  # (L,) per-nucleotide attribution (log-odds units)
    token_scores: np.ndarray  # (T,) per-token attribution
    tokens: list[str]
    spans: list[Optional[tuple[int, int]]]
    kinds: list[str]
    score: float  # log-odds of the target at the input
    baseline_score: float  # ... and at the baseline
    delta: float  # captum convergence delta: sum(attributions) - (score - baseline_score)
    baseline: str
    include_prompt: bool
    n_steps: int
    internal_batch_size: Optional[int]
    seconds: float

    @property
    def total(self) -> float:
        return float(self.token_scores.sum())

    @property
    def relative_delta(self) -> float:
        """|delta| / |score - baseline score|: above ~0.05 the integral has not converged (raise n_steps)."""
        return abs(self.delta) / max(abs(self.score - self.baseline_score), 1e-12)

    @property
    def converged(self) -> bool:
        return self.relative_delta <= CONVERGENCE_TOLERANCE

    @property
    def sequence_total(self) -> float:
        return float(self.nucleotide.sum())

    @property
    def prompt_total(self) -> float:
        return float(self.token_scores[np.array(self.kinds) == PROMPT].sum())

    @property
    def prompt_tokens(self) -> list[tuple[str, float]]:
        """(token, attribution) of every language-prefix token, in order."""
        return [(t, float(s)) for t, s, k in zip(self.tokens, self.token_scores, self.kinds) if k == PROMPT]

    @property
    def prompt_share(self) -> float:
        """Share of the absolute attribution that the language prefix carries."""
        absolute = np.abs(self.token_scores)
        return float(absolute[np.array(self.kinds) == PROMPT].sum() / max(absolute.sum(), 1e-12))

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target_name,
            "score_log_odds": self.score,
            "baseline_score_log_odds": self.baseline_score,
            "attribution_sum": self.total,
            "sequence_attribution": self.sequence_total,
            "prompt_attribution": self.prompt_total,
            "prompt_share_of_abs": self.prompt_share,
            "convergence_delta": self.delta,
            "relative_delta": self.relative_delta,
            "converged": self.converged,
            "baseline": self.baseline,
            "include_prompt": self.include_prompt,
            "n_steps": self.n_steps,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ISMResult:
    """In-silico mutagenesis for one sequence."""

    sequence: str
    target: int
    target_name: str
    matrix: np.ndarray  # (L, 4) score change for each base at each position (reference base: 0)
    reference_score: float  # log-odds of the target for the unmutated sequence
    n_mutants: int
    seconds: float

    @property
    def centred(self) -> np.ndarray:
        """(L, 4) matrix with every row mean-centred (a logo of the preferred bases)."""
        return self.matrix - self.matrix.mean(axis=1, keepdims=True)

    @property
    def nucleotide(self) -> np.ndarray:
        """(L,) per-position effect: the centred value of the reference base (= -mean change over mutations)."""
        return -self.matrix.mean(axis=1)

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.target_name,
            "reference_score_log_odds": self.reference_score,
            "n_mutants": self.n_mutants,
            "largest_drop": float(self.matrix.min()),
            "largest_gain": float(self.matrix.max()),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Attribution:
    """IG and/or ISM for one sequence, side by side."""

    id: str
    sequence: str
    label_names: list[str]
    probabilities: np.ndarray
    target: int
    ig: Optional[IGResult] = None
    ism: Optional[ISMResult] = None
    run_dir: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def target_name(self) -> str:
        return self.label_names[self.target]

    def correlation(self) -> dict[str, Optional[float]]:
        """Pearson and Spearman correlation of the per-nucleotide IG and ISM arrays."""
        if self.ig is None or self.ism is None:
            return {"pearson": None, "spearman": None}
        from scipy import stats

        a, b = self.ig.nucleotide, self.ism.nucleotide
        if np.std(a) == 0 or np.std(b) == 0:
            return {"pearson": None, "spearman": None}
        return {"pearson": float(stats.pearsonr(a, b)[0]), "spearman": float(stats.spearmanr(a, b)[0])}

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-nucleotide arrays: ``ig`` (L,), ``ism`` (L,), ``ism_matrix`` (L, 4), ``onehot`` (L, 4)."""
        out = {"onehot": onehot(self.sequence)}
        if self.ig is not None:
            out["ig"] = self.ig.nucleotide.astype(np.float32)
        if self.ism is not None:
            out["ism"] = self.ism.nucleotide.astype(np.float32)
            out["ism_matrix"] = self.ism.matrix.astype(np.float32)
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per nucleotide: id, position (0-based), base, ig, ism, ism_A..ism_T."""
        frame = pd.DataFrame({"id": self.id, "position": np.arange(len(self.sequence)), "base": list(self.sequence)})
        if self.ig is not None:
            frame["ig"] = self.ig.nucleotide
        if self.ism is not None:
            frame["ism"] = self.ism.nucleotide
            for j, base in enumerate(BASES):
                frame[f"ism_{base}"] = self.ism.matrix[:, j]
        return frame

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "length": len(self.sequence),
            "probabilities": {n: float(p) for n, p in zip(self.label_names, self.probabilities)},
            "target": self.target_name,
            "ig": None if self.ig is None else self.ig.summary(),
            "ism": None if self.ism is None else self.ism.summary(),
            "correlation": self.correlation(),
        }

    def to_npz(self, path: PathLike) -> Path:
        return save_npz([self], path)

    def to_csv(self, path: PathLike) -> Path:
        return save_csv([self], path)


def save_npz(results: Sequence[Attribution], path: PathLike) -> Path:
    """Write per-nucleotide arrays for TF-MoDISco-style tools.

    One sequence: ``ig`` (L,), ``ism`` (L,), ``ism_matrix`` (L, 4), ``onehot`` (L, 4), ``sequence``,
    ``id``. Several of equal length: the keys all of them have, stacked to (N, L) and (N, L, 4), with
    ``ids`` (the layout TF-MoDISco takes).
    Several of different lengths: keys suffixed ``_<i>`` (``ig_0``, ``ism_0``...), with ``ids``.
    """
    path = Path(path)
    if not results:
        raise AttributionError("nothing to save: no attribution results")
    meta = {
        "ids": np.array([r.id for r in results]),
        "targets": np.array([r.target_name for r in results]),
        "bases": np.array(list(BASES)),
    }
    per = [r.arrays() for r in results]
    if len(results) == 1:
        arrays = {**per[0], "sequence": np.array(results[0].sequence), "id": np.array(results[0].id)}
        if results[0].ig is not None:
            arrays["ig_delta"] = np.array(results[0].ig.delta)
    elif len({len(r.sequence) for r in results}) == 1:
        common = [key for key in per[0] if all(key in p for p in per)]  # methods every result has
        arrays = {key: np.stack([p[key] for p in per]) for key in common}
        arrays["sequences"] = np.array([r.sequence for r in results])
    else:
        arrays = {f"{key}_{i}": value for i, p in enumerate(per) for key, value in p.items()}
        arrays.update({f"sequence_{i}": np.array(r.sequence) for i, r in enumerate(results)})
    target = path if path.suffix == ".npz" else path.with_suffix(path.suffix + ".npz")
    _write_whole(target, lambda handle: np.savez(handle, **arrays, **meta))
    return target


def save_csv(results: Sequence[Attribution], path: PathLike) -> Path:
    """One row per nucleotide of every sequence (see :meth:`Attribution.to_frame`)."""
    path = Path(path)
    text = pd.concat([r.to_frame() for r in results], ignore_index=True).to_csv(index=False)
    _write_whole(path, lambda handle: handle.write(text.encode("utf-8")))
    return path


def _write_whole(path: Path, write) -> None:
    """``write(binary handle)`` into a temporary file next to ``path``, renamed to ``path`` only when complete."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
