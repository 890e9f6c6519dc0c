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

The result types and their exports live in :mod:`lingo_core.attribution_results` (re-exported
here); the figures in :mod:`lingo_core.plots.attribution`, which this module uses only for the
command line's ``--html``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from .attribution_results import (  # noqa: F401  the result types and exports are part of this module's API
    BASES,
    Attribution,
    AttributionError,
    IGResult,
    ISMResult,
    PathLike,
    save_csv,
    save_npz,
)
from .data import DataError, clean_sequence
from .encoding import PROMPT, SEQUENCE, EncodedSequence
from .inference import logits_to_probs
from .predict import Predictor, load_predictor
from .sequence_input import gather_inputs

BASELINES = ("pad", "N")
METHODS = ("ig", "ism", "both")


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


def token_to_nucleotide(token_scores: np.ndarray, spans: Sequence[Optional[tuple[int, int]]], length: int) -> np.ndarray:
    """Spread every sequence token's score evenly over the nucleotides of its span (totals are kept)."""
    out = np.zeros(length, dtype=np.float64)
    for score, span in zip(token_scores, spans):
        if span is None:
            continue
        start, end = span
        out[start:end] += score / (end - start)
    return out


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
    logits = predictor.logits_of_ids(ids, batch_size, precision="no")  # fp32: effects can be small
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
