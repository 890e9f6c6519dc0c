"""A panel of N adapters on one backbone against N separate predictors: memory and time, side by side in one run.

    python bench/bench_panel.py                       # N = 1, 4, 8; M = 256 sequences of 100 nt; 5 rounds
    python bench/bench_panel.py --quick               # N = 1, 2; M = 32; 2 rounds (checks that everything runs)
    python bench/bench_panel.py --runs-dir runs --json panel.json   # your own finished runs (one compatible group)

Runs: the largest compatible group of finished runs in ``--runs-dir``; when it has fewer than the
largest N, seconds-long runs of the embedded MiniLM on the demo task (LoRA, ARS, AdaLoRA and head-only
in turn, 2 steps each, so their numbers say nothing about accuracy) are trained into ``--work``
(kept there and reused by the next run of the bench).

1. **Memory**: resident memory (RSS) of a fresh process after it loaded a panel of N runs and scored
   a few sequences, against a fresh process holding N separate predictors (one backbone each), for
   every N; the import baseline (torch, transformers) is subtracted. Goal: the panel costs one
   backbone plus N x an adapter.
2. **Time**: scoring M sequences against N tasks: the panel switching adapters (fused LoRA forward,
   and peft's own forward), the panel in mixed batches (peft ``adapter_names``), N separate
   (merged) predictors, and the floor: the plain backbone, no adapter, one forward pass per task on
   that task's own token ids, batched as predict batches. Configurations alternate in rounds on the
   same inputs; medians of wall time and of process CPU time (less sensitive to other jobs on the
   machine). Goal: panel <= 1.1 x floor.
3. **Switching and first result**: the time of one ``set_adapter`` switch; loading the panel against
   loading N predictors; the time until the panel's first chunk of results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

METHODS = ("lora", "ars", "adalora", "head")
FLOOR = "floor: backbone alone as predict runs it"


def rss_mib() -> float:
    """Resident memory of this process now (MiB)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def settled_rss_mib() -> float:
    """RSS after freed heap memory went back to the system (glibc ``malloc_trim``), so freed activations do not count."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass
    return rss_mib()


# -- runs ----------------------------------------------------------------------------------------------------------
def make_runs(work: Path, count: int) -> list[Path]:
    """``count`` finished seconds-long MiniLM runs on the demo task (methods in turn), reused when already there."""
    from lingo_core import runs as runs_api
    from lingo_core.config import load_config
    from lingo_core.train import train

    work.mkdir(parents=True, exist_ok=True)
    done = [r.path for r in runs_api.list_runs(work) if r.state == "done"]
    for k in range(len(done), count):
        method = METHODS[k % len(METHODS)]
        cfg = load_config(ROOT / "configs" / "quickstart.yaml", [
            f"adapter.method={method}", f"output_dir={work}", "train.max_steps=2", "train.eval_every=2", "data.max_train=32",
            "data.max_eval=32", "train.progress_bar=false", f"train.seed={k}",
        ])
        print(f"training bench run {k + 1}/{count} ({method}, 2 steps)", file=sys.stderr, flush=True)
        done.append(train(cfg))
    return sorted(done)[:count]


def pick_runs(args: argparse.Namespace, count: int) -> list[str]:
    from lingo_core import runs as runs_api
    from lingo_core.panel import group_compatible

    if args.runs_dir:
        grouping = group_compatible(runs_api.list_runs(args.runs_dir), args.device)
        if grouping.groups and len(grouping.groups[0].runs) >= count:
            return [str(r.path) for r in grouping.groups[0].runs[:count]]
        print(f"{args.runs_dir} has no group of {count} compatible finished runs; training bench runs in {args.work}", file=sys.stderr)
    return [str(p) for p in make_runs(Path(args.work), count)]


def sequences(count: int, length: int) -> list[str]:
    from lingo_core.data import make_demo_task

    return make_demo_task(n_train=4, n_dev=4, n_test=count, length=length, seed=11).test.sequences


# -- memory: one configuration per fresh process ------------------------------------------------------------------
def memory_child(kind: str, run_dirs: list[str], device: Optional[str]) -> dict[str, Any]:
    """Load ``kind`` (panel or separate) for ``run_dirs``, score a few sequences, report RSS (runs in a child process)."""
    import torch  # noqa: F401 - imported before the baseline is taken

    from lingo_core.inference import load_trained
    from lingo_core.panel import load_panel
    from lingo_core.predict import Predictor

    from lingo_core.panel import group_compatible

    seqs = sequences(16, 100)
    group_compatible(run_dirs, device)  # imports and the tokenizer, for both kinds alike, before the baseline
    baseline = settled_rss_mib()
    if kind == "panel":
        panel = load_panel(run_dirs, device)
        loaded = settled_rss_mib() - baseline
        panel.score(seqs)
        parameters = panel.parameter_counts()
        weights = sum(p.numel() * p.element_size() for p in panel.model.parameters())
    else:
        predictors = [Predictor(load_trained(d, device=device)) for d in run_dirs]
        loaded = settled_rss_mib() - baseline
        for predictor in predictors:
            predictor.predict(seqs)
        parameters = {"models": sum(sum(p.numel() for p in pr.model.parameters()) for pr in predictors)}
        weights = sum(p.numel() * p.element_size() for pr in predictors for p in pr.model.parameters())
    return {
        "kind": kind, "n": len(run_dirs), "loaded_mib": loaded, "rss_mib": settled_rss_mib() - baseline,
        "peak_mib": peak_rss_mib() - baseline, "weights_mib": weights / 2**20, "parameters": parameters,
    }


def measure_memory(kind: str, run_dirs: list[str], device: Optional[str]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--memory-child", kind, "--child-runs", *run_dirs]
    if device:
        command += ["--device", device]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"memory child {kind} N={len(run_dirs)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- time -------------------------------------------------------------------------------------------------------------
def timed(action: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure_time(run_dirs: list[str], seqs: list[str], rounds: int, device: Optional[str]) -> dict[str, Any]:
    """Scoring ``seqs`` against every task of ``run_dirs``: every configuration, in alternating rounds."""
    import torch

    from lingo_core.inference import load_backbone, load_trained, predict_logits
    from lingo_core.models import store_frozen_weights
    from lingo_core.panel import load_panel
    from lingo_core.predict import Predictor, default_batch_size, default_max_tokens

    started = time.perf_counter()
    panel = load_panel(run_dirs, device)
    first_chunk = next(panel.score_stream(iter(as_records(seqs[:32])), chunk_records=32))
    first_result_s = time.perf_counter() - started
    assert len(first_chunk) == min(32, len(seqs))
    unfused = load_panel(run_dirs, device, fused=False)
    started = time.perf_counter()
    separate = [Predictor(load_trained(d, device=device)) for d in run_dirs]
    separate_load_s = time.perf_counter() - started

    # the floor: the plain backbone (no peft wrapper), one pass per task on that task's ids
    first = panel.tasks[0].predictor.trained
    info = {"label_names": first.label_names, "multi_label": first.multi_label}
    plain = load_backbone(first.cfg, info).loaded.model.to(panel.device).eval().requires_grad_(False)
    task_ids = [task.predictor.encoder.encode_batch(seqs)[0] for task in panel.tasks]
    batch, max_tokens = default_batch_size(panel.device), default_max_tokens(panel.device)

    def floor(model: torch.nn.Module) -> Callable[[], None]:
        def passes() -> None:
            for ids in task_ids:
                predict_logits(model, ids, first.tokenizer.pad_token_id, batch, panel.device, panel.precision, max_tokens)
        return passes

    configs: dict[str, Callable[[], Any]] = {FLOOR: floor(plain)}
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(panel.precision)
    if low is not None and panel.device.type == "cuda":  # the backbone as a panel stores it on a GPU
        stored = load_backbone(first.cfg, info).loaded.model.to(panel.device).eval().requires_grad_(False)
        store_frozen_weights(stored, low)
        configs[f"floor, linear weights stored in {panel.precision}"] = floor(stored)
    configs.update({
        "panel, switch (fused LoRA forward)": lambda: panel.score(seqs, mode="switch"),
        "panel, switch (peft forward)": lambda: unfused.score(seqs, mode="switch"),
        "panel, mixed batches": lambda: panel.score(seqs, mode="mixed"),
        "N separate predictors (merged)": lambda: [p.predict(seqs) for p in separate],
    })
    for action in configs.values():  # warm-up
        action()
    walls: dict[str, list[float]] = {name: [] for name in configs}
    cpus: dict[str, list[float]] = {name: [] for name in configs}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, action in configs.items():
                wall, cpu = timed(action)
                walls[name].append(wall)
                cpus[name].append(cpu)
    switch_s = []
    for _ in range(200):
        for task in panel.tasks:
            switch_s.append(timed(lambda t=task: panel.activate(t.adapter))[0])
    floor_wall, floor_cpu = statistics.median(walls[FLOOR]), statistics.median(cpus[FLOOR])
    return {
        "n": len(run_dirs),
        "m": len(seqs),
        "precision": panel.precision,
        "device": str(panel.device),
        "forms": [t.form for t in panel.tasks],
        "seconds": {
            name: {
                "wall": statistics.median(walls[name]), "cpu": statistics.median(cpus[name]),
                "wall_vs_floor": statistics.median(walls[name]) / floor_wall, "cpu_vs_floor": statistics.median(cpus[name]) / floor_cpu,
            }
            for name in configs
        },
        "switch_us": 1e6 * statistics.median(switch_s),
        "panel_load_s": panel.load_seconds,
        "panel_first_result_s": first_result_s,
        "separate_load_s": separate_load_s,
    }


def as_records(seqs: list[str]):
    from lingo_core.sequence_input import records_from_sequences

    return records_from_sequences(seqs)


# -- report -----------------------------------------------------------------------------------------------------------
def print_report(memory: list[dict[str, Any]], timing: dict[str, Any]) -> None:
    print("\nMemory: RSS above the import baseline (fresh process each; MiB): once loaded, and after scoring 16 sequences")
    print(f"{'N':>3}  {'panel loaded':>12}  {'N predictors':>12}  {'ratio':>6}  {'panel scored':>12}  {'N predictors':>12}  {'ratio':>6}  "
          f"{'panel weights':>13}  {'predictors weights':>18}")
    by = {(r["kind"], r["n"]): r for r in memory}
    ns = sorted({r["n"] for r in memory})
    for n in ns:
        p, s = by[("panel", n)], by[("separate", n)]
        print(f"{n:>3}  {p['loaded_mib']:>12.1f}  {s['loaded_mib']:>12.1f}  {p['loaded_mib'] / s['loaded_mib']:>6.2f}  "
              f"{p['rss_mib']:>12.1f}  {s['rss_mib']:>12.1f}  {p['rss_mib'] / s['rss_mib']:>6.2f}  "
              f"{p['weights_mib']:>13.1f}  {s['weights_mib']:>18.1f}")
    largest = by[("panel", ns[-1])]["parameters"]
    adapters = {k: v for k, v in largest.items() if k != "backbone"}
    print(f"panel of {ns[-1]}: backbone {largest['backbone']:,} parameters (once); adapters {sorted(adapters.values())} parameters each")

    precision = {"no": "fp32"}.get(timing["precision"], timing["precision"])
    print(f"\nTime: M = {timing['m']} sequences x N = {timing['n']} tasks ({precision}, {timing['device']}; medians)")
    print(f"{'configuration':<44}  {'wall s':>8}  {'x floor':>8}  {'CPU s':>8}  {'x floor':>8}")
    for name, values in timing["seconds"].items():
        print(f"{name:<44}  {values['wall']:>8.3f}  {values['wall_vs_floor']:>8.2f}  {values['cpu']:>8.3f}  {values['cpu_vs_floor']:>8.2f}")
    print(f"\nswitching the active adapter: {timing['switch_us']:.1f} us (no reload, no merge)")
    print(f"loading: panel of {timing['n']} {timing['panel_load_s']:.2f} s (first chunk of results after {timing['panel_first_result_s']:.2f} s); "
          f"{timing['n']} separate predictors {timing['separate_load_s']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 1, 2; M = 32; 2 rounds: checks that the bench runs")
    parser.add_argument("--n", type=int, nargs="+", help="panel sizes (default 1 4 8)")
    parser.add_argument("--m", type=int, help="sequences scored (default 256)")
    parser.add_argument("--length", type=int, default=100, help="sequence length in nt")
    parser.add_argument("--rounds", type=int, help="timing rounds (default 5)")
    parser.add_argument("--runs-dir", help="use finished runs from here (the largest compatible group)")
    parser.add_argument("--work", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "lingo-bench-panel-runs"), help="where bench runs are trained and kept")
    parser.add_argument("--device", help="cpu, cuda, ... (default: the runs' model.device)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--json", help="also write the measurements here")
    parser.add_argument("--memory-child", choices=["panel", "separate"], help=argparse.SUPPRESS)
    parser.add_argument("--child-runs", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.child_runs, args.device)))
        return
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    ns = args.n or ([1, 2] if args.quick else [1, 4, 8])
    m = args.m or (32 if args.quick else 256)
    rounds = args.rounds or (2 if args.quick else 5)
    run_dirs = pick_runs(args, max(ns))
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; runs: "
          + ", ".join(Path(d).name for d in run_dirs), flush=True)
    memory = []
    for n in ns:
        for kind in ("panel", "separate"):
            memory.append(measure_memory(kind, run_dirs[:n], args.device))
            print(f"memory {kind} N={n}: {memory[-1]['rss_mib']:.1f} MiB", file=sys.stderr, flush=True)
    timing = measure_time(run_dirs[: max(ns)], sequences(m, args.length), rounds, args.device)
    print_report(memory, timing)
    if args.json:
        Path(args.json).write_text(json.dumps({"memory": memory, "time": timing, "runs": run_dirs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
