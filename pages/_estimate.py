"""How long a run will take on this machine, before it is launched (Train page, Home's quickstart button).

Not a page. The estimate is the run's work (optimizer steps x batch x tokens per sequence, plus its
dev and test evaluations) times a cost per sequence-token that is

1. **measured**: from the runs of the same model already in the runs folder (this machine's runs:
   finished ones from their report, running ones from their live progress), the median of the most
   recent; or, when there is none,
2. **benchmarked**: a reference step time (all-MiniLM-L6-v2: 0.51 s per step of 8 x 128 tokens on a
   2-core EPYC whose fp32 matrix product runs at ~184 GFLOP/s; docs NOTES) scaled by the model's
   size and by this machine's own matrix-product speed, measured here in a fraction of a second.

Evaluations are forward passes only: a dev or test sequence costs about a third of a training one.
Pure functions except :func:`machine_gflops`; the pages cache what they call.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time
from typing import Any, Mapping, Optional, Sequence

REFERENCE_GFLOPS = 184.0  # fp32 matrix product on the 2-core machine the reference step was timed on
REFERENCE_STEP_S = 0.51  # MiniLM-L6 AdaLoRA step, batch 8 x 128 tokens, on that machine
REFERENCE_PARAMS = 22.7e6
KNOWN_PARAMS = {"minilm-l6": 22.7e6, "smollm2-135m": 134.5e6}
EVAL_SHARE = 1 / 3  # a forward pass costs about a third of a forward + backward
SETUP_S = 20.0  # loading data, tokenizer and model, exporting at the end
NT_PER_TOKEN = {"native": 2.07, "nucleotide": 1.0}  # measured for MiniLM's WordPiece (docs NOTES)
PROMPT_TOKENS = 14  # the paper prefix plus special tokens


@dataclasses.dataclass(frozen=True)
class Work:
    """What a run computes: training sequence-tokens and evaluation sequence-tokens."""

    steps: int
    batch: int
    tokens: float  # per sequence
    evals: int  # dev evaluations during training
    n_dev: int
    n_test: int

    @property
    def units(self) -> float:
        """Training-sequence-token equivalents (evaluations weighted by EVAL_SHARE)."""
        train = self.steps * self.batch * self.tokens
        evaluated = ((self.evals + 1) * self.n_dev + self.n_test) * self.tokens * EVAL_SHARE  # + the final dev pass
        return train + evaluated


@dataclasses.dataclass(frozen=True)
class Estimate:
    seconds: float
    per_step_s: float
    basis: str  # how it was obtained, in words


def tokens_per_sequence(
    mean_length: float, sequence_mode: str, k: int, max_length: int, nt_per_token: Optional[float] = None, prompt_tokens: Optional[int] = None
) -> float:
    """Tokens the model reads per sequence: the prompt (and special tokens) plus the sequence's tokens,
    capped at ``max_length``. ``nt_per_token`` and ``prompt_tokens`` come from the token preview when known."""
    per = nt_per_token or (k if sequence_mode == "kmer" else NT_PER_TOKEN.get(sequence_mode, 2.0))
    prompt = PROMPT_TOKENS if prompt_tokens is None else prompt_tokens
    return float(min(max_length, prompt + mean_length / max(per, 0.1)))


def work_of(config: Mapping[str, Any], steps: int, eval_every: int, n_dev: int, n_test: int, tokens: float) -> Work:
    train = config.get("train") if isinstance(config.get("train"), Mapping) else {}
    batch = int(train.get("batch_size") or 16) * int(train.get("grad_accum") or 1)
    return Work(steps=int(steps), batch=batch, tokens=float(tokens), evals=int(steps // max(1, eval_every)), n_dev=int(n_dev), n_test=int(n_test))


def _number(value: Any) -> Optional[float]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def measured_cost(config: Mapping[str, Any], status: Mapping[str, Any], report: Optional[Mapping[str, Any]], data_report: Optional[Mapping[str, Any]]) -> Optional[float]:
    """Seconds per training-sequence-token one earlier run of this machine took (evaluations included), or None."""
    data_report = data_report or {}
    stats = data_report.get("token_stats") if isinstance(data_report.get("token_stats"), Mapping) else {}
    tokens = _number(stats.get("mean_tokens"))
    counts = data_report.get("counts") if isinstance(data_report.get("counts"), Mapping) else {}

    def total(split: str) -> int:
        part = counts.get(split)
        return int(part.get("total") or 0) if isinstance(part, Mapping) and isinstance(part.get("total"), int) else 0

    if tokens is None:
        return None
    report = report or {}
    plan = report.get("plan") if isinstance(report.get("plan"), Mapping) else {}
    if _number(report.get("wall_time_s")) and _number(report.get("total_step")):
        seconds, steps = float(report["wall_time_s"]), int(report["total_step"])
        eval_every = int(plan.get("eval_every") or max(1, steps // 4))
        work = work_of(config, steps, eval_every, total("dev"), 0, tokens)
    else:
        progress = status.get("progress") if isinstance(status.get("progress"), Mapping) else {}
        seconds, steps = _number(progress.get("elapsed_s")), _number(progress.get("step"))
        if seconds is None or steps is None or steps < 5:
            return None
        train = config.get("train") if isinstance(config.get("train"), Mapping) else {}
        eval_every = int(train.get("eval_every") or max(1, int(steps)))
        work = work_of(config, int(steps), eval_every, total("dev"), 0, tokens)
        work = dataclasses.replace(work, evals=max(0, work.evals - 1))  # no final pass yet
    return seconds / work.units if work.units > 0 else None


def machine_gflops(size: int = 768, repeats: int = 6) -> float:
    """This machine's fp32 matrix-product speed right now (GFLOP/s), in about a tenth of a second."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm up
    started = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    elapsed = max(time.perf_counter() - started, 1e-6)
    return 2 * size**3 * repeats / elapsed / 1e9


def benchmarked_cost(model_params: float, gflops: float) -> float:
    """Seconds per training-sequence-token from the reference step, scaled to this model and machine."""
    per_unit_reference = REFERENCE_STEP_S / (8 * 128)
    return per_unit_reference * (model_params / REFERENCE_PARAMS) * (REFERENCE_GFLOPS / max(gflops, 1.0))


def estimate(
    work: Work,
    model_name: str,
    earlier: Sequence[tuple[str, Optional[float]]] = (),
    model_params: Optional[float] = None,
    gflops: Optional[float] = None,
) -> Optional[Estimate]:
    """The run's wall time on this machine. ``earlier``: (model name, measured cost) of the runs in the
    runs folder, newest first; ``model_params``: the model's size when known (the plan counts it)."""
    costs = [cost for name, cost in earlier if name == model_name and cost][:5]
    if costs:
        cost = statistics.median(costs)
        basis = f"measured on {len(costs)} earlier {model_name} run(s) on this machine"
    else:
        params = model_params or KNOWN_PARAMS.get(model_name)
        if not params or not gflops:
            return None
        cost = benchmarked_cost(params, gflops)
        basis = f"benchmarked: this machine's matrix products ({gflops:.0f} GFLOP/s now) and the model's size"
    seconds = SETUP_S + cost * work.units
    per_step = cost * work.batch * work.tokens
    return Estimate(seconds=seconds, per_step_s=per_step, basis=basis)


def busy_note() -> Optional[str]:
    """A warning when other work competes for this machine's cores (1-minute load above the core count)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cores = os.cpu_count() or 1
    if load > cores + 0.5:
        return f"This machine is busy (load {load:.1f} on {cores} cores): the run will take longer while other work competes for it."
    return None
