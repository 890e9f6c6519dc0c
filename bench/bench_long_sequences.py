"""Long sequences: seconds per kb from 1 kb to 200 kb, and many records streamed in bounded memory.

    python bench/bench_long_sequences.py [--run RUN_DIR] [--window 900] [--rounds 3] [--records 1000,10000]

Without ``--run`` a 2-step quickstart run (embedded MiniLM-L6 + ARS, max_length 512) is created in a
temporary folder: speed does not depend on what the weights learnt. Sequences are random DNA (fixed
seed). For each length it prints, side by side:

- ``tokenizer alone``: the tokenizer on the whole sequence as one word, as encoding worked before
  (only up to 5 kb: its cost grows much faster than the length);
- ``encode all``: :class:`~lingo_core.encoding.SequenceEncoder` tokenising the whole sequence
  (no window limit), in pieces: should be flat per kb;
- ``predict``: :meth:`~lingo_core.predict.Predictor.predict` of the sequence in sliding windows of
  ``--window`` nt (stride half a window), which should cost what its windows cost: flat per kb.

The goal is a ratio largest/smallest seconds per kb of at most 1.5 for ``predict``. Each length is
measured in ``--rounds`` rounds that go over all lengths in turn (up, then down), and the median is
reported. Then ``--records`` short records
(100 nt) are scored through ``predict_stream`` + ``PredictionWriter`` (as the CLI does) and all at
once through ``predict``, with the peak resident memory above the level before each measurement.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lingo_core.predict import PredictionWriter, Predictor, load_predictor  # noqa: E402
from lingo_core.sequence_input import records_from_sequences  # noqa: E402
from quickstart_run import make_run  # noqa: E402

LENGTHS_KB = (1, 2, 5, 10, 20, 50, 100, 200)
TOKENIZER_ALONE_MAX_KB = 5


def random_dna(n: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), size=n))


def seconds(work: Callable[[], object]) -> float:
    """Wall time of one call."""
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def rss_mb() -> float:
    """Resident memory of this process now (MB), from /proc."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_above(work: Callable[[], object]) -> tuple[float, float]:
    """(seconds, peak RSS above the level before, MB) of ``work``, sampled every 20 ms."""
    before, peak, done = rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    return elapsed, max(peak[0], rss_mb()) - before


def bench_lengths(predictor: Predictor, args: argparse.Namespace) -> list[dict]:
    """Seconds per kb of each workload and length; rounds go over all lengths in turn, so load changes hit all alike."""
    tokenizer = predictor.trained.tokenizer
    whole = copy.copy(predictor.encoder)  # the run's encoder, without a window limit
    whole.cfg = dataclasses.replace(predictor.encoder.cfg, max_length=10**9)
    backend = tokenizer.backend_tokenizer.model
    predictor.predict([random_dna(2000, 0)], window=args.window)  # warm-up
    sequences = {kb: random_dna(kb * 1000, kb) for kb in args.lengths}
    times: dict[int, dict[str, list[float]]] = {kb: {"tokenizer_alone": [], "encode_all": [], "predict": []} for kb in args.lengths}
    windows: dict[int, int] = {}
    for round_ in range(args.rounds):
        for kb in args.lengths if round_ % 2 == 0 else args.lengths[::-1]:  # up, then down: drifts hit all alike
            sequence = sequences[kb]
            if kb <= TOKENIZER_ALONE_MAX_KB:
                limit = backend.max_input_chars_per_word
                backend.max_input_chars_per_word = 10**7  # as before: the whole sequence is one word
                try:
                    times[kb]["tokenizer_alone"].append(seconds(lambda: tokenizer(whole.render(sequence)[0])) / kb)
                finally:
                    backend.max_input_chars_per_word = limit
            times[kb]["encode_all"].append(seconds(lambda: whole.encode_batch([sequence])) / kb)
            result = []
            times[kb]["predict"].append(seconds(lambda: result.append(predictor.predict([sequence], window=args.window))) / kb)
            windows[kb] = result[-1].rows[0].n_windows
            print(f"  round {round_ + 1}, {kb:>4} kb: predict {times[kb]['predict'][-1]:.3f} s/kb, {windows[kb]} windows",
                  file=sys.stderr, flush=True)
    return [
        {"kb": kb, "windows": windows[kb], **{key: statistics.median(values) for key, values in times[kb].items() if values}}
        for kb in args.lengths
    ]


def bench_records(predictor: Predictor, counts: list[int]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        warm = records_from_sequences([random_dna(100, i) for i in range(600)])
        predictor.predict(warm)  # allocator and kernel warm-up: not counted against the first measurement
        for n in counts:
            records = records_from_sequences([random_dna(100, 10_000 + i) for i in range(n)])

            def stream() -> None:
                with PredictionWriter(Path(tmp) / "scores.csv") as writer:
                    for chunk in predictor.predict_stream(iter(records)):
                        writer.write(chunk)

            def at_once() -> None:
                predictor.predict(records).to_csv(Path(tmp) / "all.csv")

            for how, work in (("streamed (CLI)", stream), ("all at once (predict)", at_once)):
                elapsed, peak = peak_rss_above(work)
                rows.append({"records": n, "how": how, "seconds": elapsed, "peak_mb": peak})
                print(f"  {n} records {how}: {elapsed:.1f} s, +{peak:.0f} MB", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="run directory to load (default: a fresh 2-step quickstart run)")
    parser.add_argument("--window", type=int, default=900, help="sliding window in nt (stride half of it)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all lengths (median)")
    parser.add_argument("--records", default="1000,10000", help="comma-separated record counts for streaming ('' to skip)")
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS_KB)), help="comma-separated sequence lengths in kb")
    parser.add_argument("--threads", type=int, help="torch threads (1 on a shared machine: see docs/benchmarks.md)")
    args = parser.parse_args()
    args.lengths = [int(kb) for kb in args.lengths.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run) if args.run else make_run(Path(tmp))
        predictor = load_predictor(run_dir)
        lengths = bench_lengths(predictor, args)
        records = bench_records(predictor, [int(n) for n in args.records.split(",") if n.strip()])

    print(f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f} (other processes share the cores)")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); model {predictor.trained.loaded.source} + {predictor.trained.cfg.adapter.method}, "
          f"max_length {predictor.encoder.cfg.max_length}, precision {predictor.trained.loaded.precision}; window {args.window} nt")
    print(f"{'length':>8} {'windows':>8} {'tokenizer alone':>16} {'encode all':>11} {'predict':>9}   (seconds per kb)   "
          "predict per window")
    for row in lengths:
        alone = f"{row['tokenizer_alone']:.4f}" if "tokenizer_alone" in row else "-"
        per_window = row["predict"] * row["kb"] / row["windows"]
        print(f"{row['kb']:>5} kb {row['windows']:>8} {alone:>16} {row['encode_all']:>11.4f} {row['predict']:>9.3f}"
              f"   {'':>16}   {per_window:.3f} s")
    for key in ("encode_all", "predict"):
        values = [row[key] for row in lengths]
        print(f"{key}: largest/smallest seconds per kb = {max(values) / min(values):.2f} (goal <= 1.5)")
    alone = [(row["kb"], row["tokenizer_alone"]) for row in lengths if "tokenizer_alone" in row]
    if len(alone) > 1:
        print(f"tokenizer alone (before): {alone[-1][1] / alone[0][1]:.1f}x more per kb at {alone[-1][0]} kb than at {alone[0][0]} kb")
    if records:
        print(f"{'records':>8} {'how':<22} {'seconds':>8} {'peak RSS above start':>21}")
        for row in records:
            print(f"{row['records']:>8} {row['how']:<22} {row['seconds']:>8.1f} {row['peak_mb']:>18.0f} MB")


if __name__ == "__main__":
    main()
