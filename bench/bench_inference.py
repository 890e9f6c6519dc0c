"""Inference, integrated gradients and in-silico mutagenesis speed, against the machine's matmul speed.

    python bench/bench_inference.py [--run RUN_DIR] [--rounds 3] [--full]

Without ``--run`` a 2-step quickstart run (embedded MiniLM-L6 + ARS adapter) is created in a
temporary folder: speed does not depend on what the weights learnt. Every workload is measured in
``--rounds`` rounds, each right after a 2048 x 2048 fp32 matmul measurement, so a ratio compares
two numbers taken under the same machine load (the 2 cores are shared); medians are reported.

FLOPs count only real (non-padding) tokens: per sequence of T tokens, the linear layers'
FLOPs as counted by ``torch.utils.flop_counter`` on that unpadded sequence (fitted exactly as
a + b*T from two lengths), plus attention's 4*T^2*hidden per layer (CPU SDPA is not counted by
the flop counter). Padding, tokenisation and Python overhead all count against the efficiency.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lingo_core.attribution import in_silico_mutagenesis, integrated_gradients, mutants  # noqa: E402
from lingo_core.inference import collate, predict_logits  # noqa: E402
from lingo_core.predict import Predictor, default_max_tokens, load_predictor  # noqa: E402
from quickstart_run import make_run  # noqa: E402

MATMUL_N = 2048


def matmul_flops_per_s(seconds: float = 1.0) -> float:
    """Sustained fp32 FLOP/s of a 2048 x 2048 matmul on this machine (all torch threads)."""
    a, b = torch.randn(MATMUL_N, MATMUL_N), torch.randn(MATMUL_N, MATMUL_N)
    a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * MATMUL_N**3 * count / (time.perf_counter() - started)


class FlopModel:
    """FLOPs of one forward pass of the run's model on an unpadded sequence of T tokens."""

    def __init__(self, predictor: Predictor) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        model = predictor.model
        config = predictor.trained.loaded.model.config
        self.layers = config.num_hidden_layers
        self.hidden = config.hidden_size
        counts = []
        for length in (16, 64):
            ids = torch.full((1, length), predictor.encoder.tokenizer.convert_tokens_to_ids("a"))
            with FlopCounterMode(display=False) as counter, torch.inference_mode():
                model(input_ids=ids, attention_mask=torch.ones_like(ids))
            counts.append(counter.get_total_flops())
        self.per_token = (counts[1] - counts[0]) / 48
        self.constant = counts[0] - 16 * self.per_token

    def __call__(self, tokens: int) -> float:
        return self.constant + self.per_token * tokens + 4 * tokens * tokens * self.hidden * self.layers


def random_sequences(n: int, lengths: tuple[int, int], seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    p = np.array([0.275, 0.225, 0.225, 0.275])
    return ["".join(rng.choice(list("ACGT"), size=int(rng.integers(lengths[0], lengths[1] + 1)), p=p)) for _ in range(n)]


def measure(rounds: int, work: Callable[[], float]) -> tuple[list[float], list[float]]:
    """(seconds of ``work`` per round, matmul FLOP/s measured right before each round)."""
    seconds, matmul = [], []
    for _ in range(rounds):
        matmul.append(matmul_flops_per_s())
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return seconds, matmul


def efficiency(flops: float, seconds: list[float], matmul: list[float]) -> tuple[float, float]:
    """Median achieved FLOP/s and median ratio to the matmul FLOP/s of the same round."""
    achieved = [flops / s for s in seconds]
    return statistics.median(achieved), statistics.median(a / m for a, m in zip(achieved, matmul))


def unbucketed_logits(predictor: Predictor, input_ids: list[list[int]], batch_size: int) -> None:
    """The naive way, for comparison: batches in input order, padded to their longest member."""
    with torch.inference_mode():
        for i in range(0, len(input_ids), batch_size):
            batch = collate(input_ids[i : i + batch_size], predictor.pad_id)
            predictor.model(**batch)


Row = tuple[str, float, str, float, float]  # workload, value, unit, achieved FLOP/s, fraction of matmul


def bench_inference(predictor: Predictor, flops_of: FlopModel, args: argparse.Namespace, out: dict) -> list[Row]:
    """Batch 1 and batched predict(), the model alone bucketed and not, and (``--full``) a batch-size sweep."""
    rows: list[Row] = []
    mixed = random_sequences(args.n, (100, 600), seed=1)
    ids, _ = predictor.encoder.encode_batch(mixed)
    real_flops = sum(flops_of(len(x)) for x in ids)
    out["tokens_per_sequence_mixed"] = sum(len(x) for x in ids) / args.n
    predictor.logits_of_ids(ids[:8])  # warm-up

    single = mixed[:24]
    single_flops = sum(flops_of(len(x)) for x in ids[:24])
    seconds, matmul = measure(args.rounds, lambda: predictor.predict(single, batch_size=1))
    achieved, ratio = efficiency(single_flops, seconds, matmul)
    rows.append(("predict(), batch 1, 100-600 nt", len(single) / statistics.median(seconds), "seq/s", achieved, ratio))

    seconds, matmul = measure(args.rounds, lambda: predictor.predict(mixed))
    achieved, ratio = efficiency(real_flops, seconds, matmul)
    rows.append(("predict(), batched (default sizes), 100-600 nt", args.n / statistics.median(seconds), "seq/s", achieved, ratio))
    out["inference_batched_fraction_of_matmul"] = ratio

    seconds, matmul = measure(args.rounds, lambda: predictor.logits_of_ids(ids))
    achieved, ratio = efficiency(real_flops, seconds, matmul)
    rows.append((f"model only, bucketed, default ({predictor.default_batch_size}, <= {default_max_tokens(predictor.device)} tokens)", args.n / statistics.median(seconds), "seq/s", achieved, ratio))

    shuffled = [ids[i] for i in np.random.default_rng(0).permutation(len(ids))]
    seconds, matmul = measure(args.rounds, lambda: unbucketed_logits(predictor, shuffled, 16))
    achieved, ratio = efficiency(real_flops, seconds, matmul)
    rows.append(("model only, NOT bucketed, batch 16 (padding waste)", args.n / statistics.median(seconds), "seq/s", achieved, ratio))

    if args.full:
        for size, budget in ((8, None), (16, None), (32, None), (64, None), (128, None), (64, 2048), (64, 8192)):
            seconds, matmul = measure(
                args.rounds,
                lambda: predict_logits(predictor.model, ids, predictor.pad_id, size, predictor.device, max_tokens=budget),
            )
            achieved, ratio = efficiency(real_flops, seconds, matmul)
            label = f"model only, bucketed, batch {size}" + (f", <= {budget} tokens" if budget else "")
            rows.append((label, args.n / statistics.median(seconds), "seq/s", achieved, ratio))
    return rows


def bench_attribution(predictor: Predictor, flops_of: FlopModel, args: argparse.Namespace, lengths: tuple[int, ...], out: dict) -> list[Row]:
    """IG (50 steps) and ISM on one sequence of each length."""
    rows: list[Row] = []
    for length in lengths:
        seq = random_sequences(1, (length, length), seed=length)[0]
        n_tokens = len(predictor.encoder.encode_batch([seq])[0][0])
        integrated_gradients(predictor, seq, n_steps=4)  # warm-up
        seconds, matmul = measure(args.rounds, lambda: integrated_gradients(predictor, seq, n_steps=50))
        ig_flops = 50 * 2 * flops_of(n_tokens)  # per step: forward + backward to the activations (weights are frozen)
        achieved, ratio = efficiency(ig_flops, seconds, matmul)
        rows.append((f"IG, 50 steps, {length} nt ({n_tokens} tokens)", statistics.median(seconds), "s/seq", achieved, ratio))
        out[f"ig_seconds_{length}nt"] = statistics.median(seconds)

        variants, _, _ = mutants(seq)
        mutant_ids, _ = predictor.encoder.encode_batch([seq] + variants)
        ism_flops = sum(flops_of(len(x)) for x in mutant_ids)
        ism_rounds = args.rounds if length <= 300 else 1
        seconds, matmul = measure(ism_rounds, lambda: in_silico_mutagenesis(predictor, seq))
        achieved, ratio = efficiency(ism_flops, seconds, matmul)
        floor = ism_flops / statistics.median(matmul)
        rows.append((f"ISM, {len(variants) + 1} forwards, {length} nt", statistics.median(seconds), "s/seq", achieved, ratio))
        out[f"ism_seconds_{length}nt"] = statistics.median(seconds)
        out[f"ism_floor_seconds_{length}nt"] = floor
        out[f"ism_over_floor_{length}nt"] = statistics.median(seconds) / floor
    return rows


def print_report(out: dict, rows: list[Row], lengths: tuple[int, ...], load_before: float) -> None:
    print(f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f} (other processes share the cores)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model {out['model']['source']} + {out['model']['adapter']}; "
          f"{out['model']['gflop_per_token']:.4f} GFLOP/token (linear layers); matmul {out['matmul_gflops_median']:.1f} GFLOP/s")
    print(f"{'workload':52s} {'value':>10s} {'unit':6s} {'GFLOP/s':>8s} {'/matmul':>8s}")
    for w, v, u, a, r in rows:
        print(f"{w:52s} {v:10.3f} {u:6s} {a / 1e9:8.1f} {r:8.2f}")
    for length in lengths:
        print(f"ISM {length} nt: {out[f'ism_seconds_{length}nt']:.2f} s, FLOP floor at matmul speed {out[f'ism_floor_seconds_{length}nt']:.2f} s "
              f"-> {out[f'ism_over_floor_{length}nt']:.2f}x the floor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="run directory to load (default: a fresh 2-step quickstart run)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=256, help="sequences for the batched inference measurement")
    parser.add_argument("--full", action="store_true", help="also IG/ISM at 600 nt and a batch-size sweep")
    parser.add_argument("--json", help="write all numbers to this JSON file")
    args = parser.parse_args()

    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    lengths = (100, 300, 600) if args.full else (100, 300)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run) if args.run else make_run(Path(tmp))
        predictor = load_predictor(run_dir)
        flops_of = FlopModel(predictor)
        out: dict = {
            "machine": {
                "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(), "cores_visible": os.cpu_count(),
            },
            "model": {"source": predictor.trained.loaded.source, "adapter": predictor.trained.cfg.adapter.method,
                      "gflop_per_token": flops_of.per_token / 1e9},
        }
        rows = bench_inference(predictor, flops_of, args, out) + bench_attribution(predictor, flops_of, args, lengths, out)
        out["matmul_gflops_median"] = statistics.median(matmul_flops_per_s() for _ in range(3)) / 1e9
        out["rows"] = [
            {"workload": w, "value": v, "unit": u, "gflops": a / 1e9, "fraction_of_matmul": r} for w, v, u, a, r in rows
        ]

    out["load_average_1min"] = {"before": load_before, "after": os.getloadavg()[0]}
    print_report(out, rows, lengths, load_before)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
