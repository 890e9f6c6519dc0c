"""Which nucleotides drove a prediction: integrated gradients and in-silico mutagenesis.

Both methods explain the same number, the **log-odds of the target class**: for single-label
tasks ``logit[t] - logsumexp(other logits)`` (for two classes simply ``logit[1] - logit[0]``),
for multi-label tasks the label's own logit. Scores are in log-odds units, so IG and ISM are
directly comparable.

- :func:`integrated_gradients`: captum ``LayerIntegratedGradients`` on the input (word)
  embeddings, from a stated baseline: ``pad`` (every sequence token replaced by the pad token) or
  ``N`` (by the tokens of an all-N sequence). With ``include_prompt=True`` (default) the
  language-prefix tokens are also replaced in the baseline, so the prompt's own contribution is
  measured and reported separately; special tokens ([CLS], [SEP]...) are kept. Token scores go to
  nucleotides through the spans the encoding provides (a token's score is split evenly over the
  nucleotides it covers). The convergence delta (sum of attributions minus the score difference)
  is reported.
- :func:`in_silico_mutagenesis`: every position mutated to each other base, re-encoded and scored
  in batches. ``matrix[i, b]`` is the score change when base ``b`` is put at position ``i``
  (0 for the reference base); rows are mean-centred and the per-position effect is the centred
  value of the reference base (positive: the base supports the target).
- :func:`attribute`: both, side by side, with their correlation; :meth:`Attribution.to_npz` /
  :meth:`Attribution.to_csv` export per-nucleotide arrays (and the L x 4 ISM matrix) for
  TF-MoDISco-style tools.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch

from .data import clean_sequence
from .encoding import PROMPT, SEQUENCE, EncodedSequence
from .predict import Predictor, load_predictor
from .inference import logits_to_probs

BASES = "ACGT"
BASELINES = ("pad", "N")
METHODS = ("ig", "ism", "both")
CONVERGENCE_TOLERANCE = 0.05  # |delta| / |score difference| above which IG warns: raise n_steps
PathLike = Union[str, Path]


class AttributionError(ValueError):
    """An attribution request cannot be served; the message says why and what to do."""


# --------------------------------------------------------------------------------------- scores


def target_log_odds(logits: torch.Tensor, target: int, multi_label: bool) -> torch.Tensor:
    """Log-odds of ``target`` per row: the explained quantity for both IG and ISM."""
    if multi_label:
        return logits[:, target]
    others = torch.cat([logits[:, :target], logits[:, target + 1 :]], dim=1)
    if others.shape[1] == 0:
        return logits[:, target]
    return logits[:, target] - torch.logsumexp(others, dim=1)


def _resolve_target(predictor: Predictor, logits: np.ndarray, target: Union[int, str, None]) -> int:
    names = predictor.label_names
    if target is None:
        return int(np.argmax(logits))
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in names:
            raise AttributionError(f"unknown target label {target!r}; this run's labels are {names}")
        return names.index(target)
    index = int(target)
    if not 0 <= index < len(names):
        raise AttributionError(f"target {index} is outside 0..{len(names) - 1} (labels {names})")
    return index


def onehot(sequence: str) -> np.ndarray:
    """(L, 4) one-hot matrix in A, C, G, T order (N rows are all zero)."""
    codes = np.frombuffer(sequence.encode(), dtype=np.uint8)
    return (codes[:, None] == np.frombuffer(BASES.encode(), dtype=np.uint8)[None, :]).astype(np.float32)


def token_to_nucleotide(token_scores: np.ndarray, spans: Sequence[Optional[tuple[int, int]]], length: int) -> np.ndarray:
    """Spread every sequence token's score evenly over the nucleotides of its span (totals are kept)."""
    out = np.zeros(length, dtype=np.float64)
    for score, span in zip(token_scores, spans):
        if span is None:
            continue
        start, end = span
        out[start:end] += score / (end - start)
    return out


# --------------------------------------------------------------------------------------- results


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
    np.savez(path, **arrays, **meta)
    return path if path.suffix == ".npz" else path.with_suffix(path.suffix + ".npz")


def save_csv(results: Sequence[Attribution], path: PathLike) -> Path:
    """One row per nucleotide of every sequence (see :meth:`Attribution.to_frame`)."""
    path = Path(path)
    pd.concat([r.to_frame() for r in results], ignore_index=True).to_csv(path, index=False)
    return path


# --------------------------------------------------------------------------------------- methods


def _encode_whole(predictor: Predictor, sequence: str) -> EncodedSequence:
    encoded = predictor.encoder.encode_with_spans(sequence)
    if encoded.truncated_at is not None:
        raise AttributionError(
            f"the sequence ({len(sequence)} nt) does not fit the model window (encoding.max_length="
            f"{predictor.encoder.cfg.max_length} tokens, about {predictor.window_nt} nt); attributions need the whole "
            f"sequence in one window. Fix: attribute a part of it, e.g. sequence[:{encoded.truncated_at}]."
        )
    return encoded


def baseline_pad_id(predictor: Predictor) -> int:
    """The token a ``pad`` baseline puts in place of sequence (and prompt) tokens.

    Encoder models (BERT family): the pad token. Decoder classifiers (OPT, GPT-2, Llama) read the
    logits at the last non-pad token, so a pad baseline would move that position; they get the unk
    token instead (or, without one, the pad token with that caveat).
    """
    tokenizer = predictor.trained.tokenizer
    if predictor.trained.loaded.family == "bert":
        return predictor.pad_id
    unk = getattr(tokenizer, "unk_token_id", None)
    return unk if unk is not None and unk != predictor.pad_id else predictor.pad_id


def _baseline_ids(predictor: Predictor, encoded: EncodedSequence, length: int, baseline: str, include_prompt: bool) -> list[int]:
    """Baseline token ids: same length and special tokens as the input, sequence (and prompt) replaced."""
    if baseline not in BASELINES:
        raise AttributionError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    pad = baseline_pad_id(predictor)
    ids = list(encoded.input_ids)
    if baseline == "N":
        n_encoded = predictor.encoder.encode_many(["N" * length])[0]
        n_tokens = [t for t, k in zip(n_encoded.input_ids, n_encoded.kinds) if k == SEQUENCE]
    k = 0  # index among the sequence tokens
    for i, kind in enumerate(encoded.kinds):
        if kind == SEQUENCE:
            # pad, or the k-th token of the all-N encoding (its last one if that encoding is shorter)
            ids[i] = pad if baseline == "pad" else n_tokens[min(k, len(n_tokens) - 1)]
            k += 1
        elif kind == PROMPT and include_prompt:
            ids[i] = pad
    return ids


def _clean(sequence: str, where: str, predictor: Predictor) -> str:
    return clean_sequence(sequence, where, predictor.iupac)[0]


def integrated_gradients(
    predictor: Predictor,
    sequence: str,
    target: Union[int, str, None] = None,
    *,
    baseline: str = "pad",
    include_prompt: bool = True,
    n_steps: int = 50,
    internal_batch_size: Optional[int] = None,
    where: str = "sequence",
) -> IGResult:
    """Integrated gradients of the target's log-odds w.r.t. the input word embeddings (captum).

    ``target`` defaults to the predicted class. ``internal_batch_size`` bounds how many of the
    ``n_steps`` interpolated inputs go through the model at once (memory); None runs all at once.
    """
    from captum.attr import LayerIntegratedGradients

    sequence = _clean(sequence, where, predictor)
    encoded = _encode_whole(predictor, sequence)
    model, device = predictor.model, predictor.device
    input_ids = torch.tensor([encoded.input_ids], device=device)
    mask = torch.ones_like(input_ids)
    base_ids = torch.tensor([_baseline_ids(predictor, encoded, len(sequence), baseline, include_prompt)], device=device)
    started = time.perf_counter()
    with torch.inference_mode():
        logits = model(input_ids=torch.cat([input_ids, base_ids]), attention_mask=torch.cat([mask, mask])).logits.float()
    target_index = _resolve_target(predictor, logits[0].cpu().numpy(), target)
    scores = target_log_odds(logits, target_index, predictor.multi_label).cpu().numpy()

    def forward(ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = model(input_ids=ids, attention_mask=attention_mask).logits.float()
        return target_log_odds(out, target_index, predictor.multi_label)

    was_training = model.training
    model.eval()
    explainer = LayerIntegratedGradients(forward, model.get_input_embeddings())
    with torch.enable_grad():
        attributions, delta = explainer.attribute(
            inputs=input_ids,
            baselines=base_ids,
            additional_forward_args=(mask,),
            n_steps=n_steps,
            internal_batch_size=internal_batch_size,
            return_convergence_delta=True,
        )
    model.train(was_training)
    token_scores = attributions.sum(dim=-1)[0].detach().float().cpu().numpy().astype(np.float64)
    tokens = encoded.tokens or predictor.trained.tokenizer.convert_ids_to_tokens(encoded.input_ids)
    return IGResult(
        sequence=sequence,
        target=target_index,
        target_name=predictor.label_names[target_index],
        nucleotide=token_to_nucleotide(token_scores, encoded.spans, len(sequence)),
        token_scores=token_scores,
        tokens=list(tokens),
        spans=list(encoded.spans),
        kinds=list(encoded.kinds),
        score=float(scores[0]),
        baseline_score=float(scores[1]),
        delta=float(delta.reshape(-1)[0]),
        baseline=baseline,
        include_prompt=include_prompt,
        n_steps=n_steps,
        internal_batch_size=internal_batch_size,
        seconds=time.perf_counter() - started,
    )


def mutants(sequence: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """All single-base substitutions: sequences, their positions and base indices (A, C, G, T)."""
    out, positions, bases = [], [], []
    for i, ref in enumerate(sequence):
        for j, base in enumerate(BASES):
            if base != ref:
                out.append(sequence[:i] + base + sequence[i + 1 :])
                positions.append(i)
                bases.append(j)
    return out, np.array(positions, dtype=np.int64), np.array(bases, dtype=np.int64)


def in_silico_mutagenesis(
    predictor: Predictor,
    sequence: str,
    target: Union[int, str, None] = None,
    *,
    batch_size: Optional[int] = None,
    where: str = "sequence",
) -> ISMResult:
    """Score every single-base substitution (re-encoded, batched) against the reference sequence."""
    sequence = _clean(sequence, where, predictor)
    _encode_whole(predictor, sequence)
    started = time.perf_counter()
    variants, positions, bases = mutants(sequence)
    ids, _ = predictor.encoder.encode_batch([sequence] + variants)
    logits = predictor.logits_of_ids(ids, batch_size)
    target_index = _resolve_target(predictor, logits[0], target)
    scores = target_log_odds(torch.from_numpy(logits), target_index, predictor.multi_label).numpy().astype(np.float64)
    matrix = np.zeros((len(sequence), len(BASES)), dtype=np.float64)
    matrix[positions, bases] = scores[1:] - scores[0]
    return ISMResult(
        sequence=sequence,
        target=target_index,
        target_name=predictor.label_names[target_index],
        matrix=matrix,
        reference_score=float(scores[0]),
        n_mutants=len(variants),
        seconds=time.perf_counter() - started,
    )


def attribute(
    predictor: Union[Predictor, PathLike],
    sequence: str,
    method: str = "both",
    target: Union[int, str, None] = None,
    *,
    id: str = "sequence",
    baseline: str = "pad",
    include_prompt: bool = True,
    n_steps: int = 50,
    internal_batch_size: Optional[int] = None,
    batch_size: Optional[int] = None,
) -> Attribution:
    """IG and/or ISM (``method`` = ``ig``, ``ism`` or ``both``) for one sequence, for the same target."""
    if method not in METHODS:
        raise AttributionError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(predictor, Predictor):
        predictor = load_predictor(predictor)
    where = f"sequence '{id}'"
    sequence = _clean(sequence, where, predictor)
    _encode_whole(predictor, sequence)
    logits = predictor.logits([sequence])[0]
    probabilities = logits_to_probs(logits[None, :], predictor.multi_label)[0]
    target_index = _resolve_target(predictor, logits, target)
    result = Attribution(
        id=id,
        sequence=sequence,
        label_names=list(predictor.label_names),
        probabilities=probabilities,
        target=target_index,
        run_dir=str(predictor.trained.run.path),
        settings={"method": method, "baseline": baseline, "include_prompt": include_prompt, "n_steps": n_steps},
    )
    if method in ("ig", "both"):
        result.ig = integrated_gradients(
            predictor, sequence, target_index, baseline=baseline, include_prompt=include_prompt,
            n_steps=n_steps, internal_batch_size=internal_batch_size, where=where,
        )
    if method in ("ism", "both"):
        result.ism = in_silico_mutagenesis(predictor, sequence, target_index, batch_size=batch_size, where=where)
    return result


def region_enrichment(scores: np.ndarray, regions: Sequence[tuple[int, int]]) -> float:
    """Mean |score| inside ``regions`` ([start, end) pairs) divided by mean |score| outside.

    1 means no preference; the demo's planted motifs should give clearly more than 1.
    """
    inside = np.zeros(len(scores), dtype=bool)
    for start, end in regions:
        inside[start:end] = True
    absolute = np.abs(np.asarray(scores, dtype=np.float64))
    if inside.all() or not inside.any():
        raise ValueError("regions must cover some but not all positions")
    return float(absolute[inside].mean() / max(absolute[~inside].mean(), 1e-12))


def run_cli(args: Any) -> int:
    """``python -m lingo_core attribute``: see :func:`lingo_core.cli.build_parser` for the arguments."""
    import json
    import sys

    from .data import DataError
    from .predict import gather_inputs

    records = gather_inputs(args.sequences or None, fasta=args.fasta)
    predictor = load_predictor(args.run_dir, args.device)
    results: list[Attribution] = []
    for record in records:
        try:
            if record.error:
                raise DataError(record.error)
            sequence = clean_sequence(record.sequence, record.where, predictor.iupac)[0]
            results.append(
                attribute(
                    predictor, sequence, args.method, args.target, id=record.id, baseline=args.baseline,
                    include_prompt=not args.keep_prompt, n_steps=args.n_steps,
                    internal_batch_size=args.internal_batch_size, batch_size=args.batch_size,
                )
            )
        except (DataError, AttributionError) as exc:
            if args.strict:
                raise
            print(f"not attributed: {exc}", file=sys.stderr)
    for result in results:
        if result.ig is not None and not result.ig.converged:
            print(
                f"warning: IG for '{result.id}' did not converge: |delta| is {result.ig.relative_delta:.0%} of the score "
                f"difference with --n-steps {result.ig.n_steps}; rerun with more steps (e.g. --n-steps {result.ig.n_steps * 2})",
                file=sys.stderr,
            )
    print(json.dumps([r.summary() for r in results], indent=2))
    if not results:
        return 1
    if args.out:
        written = save_csv(results, args.out) if str(args.out).lower().endswith(".csv") else save_npz(results, args.out)
        print(f"wrote {written}", file=sys.stderr)
    if args.csv:
        print(f"wrote {save_csv(results, args.csv)}", file=sys.stderr)
    if args.html:
        from .plots.attribution import write_html

        print(f"wrote {write_html(results, args.html)}", file=sys.stderr)
    return 0
