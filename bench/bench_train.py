"""ARS vs LoRA training step time, measured side by side in one process, and throughput.

    python bench/bench_train.py [--steps 60] [--batch-size 16] [--task demo/motifs]

Both models are built on the embedded MiniLM-L6 with the same trainable budget (LoRA r=8,
ARS init_r=8 -> target_r=4) and trained on the same batches. Steps alternate in blocks
(LoRA block, ARS block, ...) so that machine noise hits both alike. ARS steps include its
real per-step work: importance-score EMA updates every step, the orthogonal regulariser, and a
rank allocation every deltaT=10 steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from lingo_core.adapters import build_adapter  # noqa: E402
from lingo_core.config import config_from_dict  # noqa: E402
from lingo_core.dropout import use_uniform_dropout  # noqa: E402
from lingo_core.inference import collate, seed_everything  # noqa: E402
from lingo_core.train import prepare  # noqa: E402


def build(method: str, prepared, cfg, total_step: int):
    from lingo_core.models import load_model

    seed_everything(0)
    loaded = load_model(cfg.model, prepared.task.num_labels, prepared.task.multi_label, cfg.encoding)
    adapted = build_adapter(loaded, dataclasses.replace(cfg.adapter, method=method), total_step, seed=0)
    use_uniform_dropout(adapted.model)  # as the trainer does on CPU
    params = [p for p in adapted.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    adapted.model.train()
    return adapted, optimizer


def step(adapted, optimizer, batch, global_step: int) -> float:
    start = time.perf_counter()
    loss = adapted.model(**batch).loss
    loss.backward()
    optimizer.step()
    adapted.after_optimizer_step(global_step)
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="measured steps per method")
    parser.add_argument("--block", type=int, default=10, help="steps per alternating block")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--task", default="demo/motifs")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    cfg = config_from_dict({"data": {"task": args.task, "max_train": 2000}, "adapter": {"lora": {"r": 8}, "adalora": {"init_r": 8, "target_r": 4, "deltaT": 10}}})
    prepared = prepare(cfg)
    train = prepared.splits["train"]
    pad = prepared.loaded.tokenizer.pad_token_id
    total_step = args.steps + args.warmup + 100  # the schedule is mid-way (allocating) while measured
    cfg.adapter.adalora.tinit, cfg.adapter.adalora.tfinal = 1, 50
    generator = torch.Generator().manual_seed(0)
    n_batches = args.steps + args.warmup
    batches = []
    for _ in range(n_batches):
        idx = torch.randint(len(train), (args.batch_size,), generator=generator).numpy()
        batches.append(collate([train.input_ids[i] for i in idx], pad, train.labels[idx]))

    models = {m: build(m, prepared, cfg, total_step) for m in ("lora", "ars")}
    times: dict[str, list[float]] = {m: [] for m in models}
    counts = {m: models[m][0].parameter_counts()["trainable"] for m in models}
    for method, (adapted, optimizer) in models.items():
        for i in range(args.warmup):
            step(adapted, optimizer, batches[i], i + 1)
    position = {m: args.warmup for m in models}
    while min(position.values()) < n_batches:
        for method, (adapted, optimizer) in models.items():
            for _ in range(args.block):
                i = position[method]
                if i >= n_batches:
                    break
                times[method].append(step(adapted, optimizer, batches[i], i + 1))
                position[method] += 1

    tokens = sum(int(b["attention_mask"].sum()) for b in batches[args.warmup :]) / len(batches[args.warmup :])
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"task {args.task}, batch {args.batch_size}, mean real tokens per batch {tokens:.0f}, {args.steps} measured steps per method")
    for method in models:
        mean = statistics.mean(times[method])
        median = statistics.median(times[method])
        print(f"{method:5s} trainable={counts[method]:,}  mean step {mean * 1000:.1f} ms  median {median * 1000:.1f} ms  throughput {args.batch_size / mean:.1f} sequences/s")
    ratio_mean = statistics.mean(times["ars"]) / statistics.mean(times["lora"])
    ratio_median = statistics.median(times["ars"]) / statistics.median(times["lora"])
    print(f"ARS/LoRA step time ratio: mean {ratio_mean:.3f}, median {ratio_median:.3f} (goal <= 1.03)")


if __name__ == "__main__":
    main()
