"""bf16 on CPU: inference and adapter-training speed against fp32, side by side in one process.

    python bench/bench_bf16.py [--steps 30] [--block 5]
    python bench/bench_bf16.py --task gue/tf/0 --sequence kmer --k 1 --skip-inference   # a study task's shapes

Variants, each measured in alternating blocks on the same batches (so machine noise hits all alike):

- ``fp32``: everything in float32 (``model.dtype: float32``).
- ``bf16-autocast``: float32 weights, matmuls under ``torch.autocast("cpu", bfloat16)`` — what
  ``model.dtype: auto`` picks on CPUs with AMX / AVX-512 BF16 (through Accelerate's mixed precision).
- ``bf16-frozen``: as autocast, and the frozen backbone weights stored in bfloat16 (the adapter and
  head stay float32), so no cast of the big matrices on every step; in training also without peft's
  cast of the adapters' bf16 inputs to fp32 (``skip_adapter_input_casts``), as the trainer does on such CPUs.

Training is also measured with every ``nn.Dropout`` replaced by ``lingo_core.dropout.UniformDropout``
(``+uniform``), as the trainer does on CPU under an adapter: its mask costs about a third of
``nn.Dropout``'s. ``fp32`` is the trainer's fp32 path before that change, ``fp32+uniform`` its
fp32 path now (CPUs without bf16 support), ``bf16-frozen+uniform`` its path on AMX CPUs.

Inference: MiniLM-L6, batch 64 x 64 tokens. Training: one LoRA (r = 8) optimizer step, batch 16 on
the demo task, or on the first 512 training sequences of ``--task`` encoded as ``--sequence`` (and
``--k``), so the step has that task's shapes. Prints medians and the bf16/fp32 speed-up ratios.
"""

from __future__ import annotations

import argparse
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
from lingo_core.models import cpu_has_fast_bf16, load_model, skip_adapter_input_casts, store_frozen_weights  # noqa: E402

VARIANTS = ("fp32", "bf16-autocast", "bf16-frozen")
TRAIN_VARIANTS = ("fp32", "bf16-frozen", "fp32+uniform", "bf16-frozen+uniform")


def make_model(variant: str, num_labels: int, adapter: bool):
    cfg = config_from_dict({"adapter": {"method": "lora", "lora": {"r": 8}}, "model": {"pooling": "auto"}})
    seed_everything(0)
    loaded = load_model(cfg.model, num_labels, False, cfg.encoding)
    model = build_adapter(loaded, cfg.adapter, 100).model if adapter else loaded.model
    if variant.endswith("+uniform"):
        use_uniform_dropout(model, backbone=adapter)  # as the trainer does under an adapter
    if variant.startswith("bf16-frozen"):
        if adapter:  # as the trainer does under bf16 autocast
            store_frozen_weights(model, torch.bfloat16)
            skip_adapter_input_casts(model)
        else:
            model.to(torch.bfloat16)
    return model, loaded.tokenizer


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(runners: dict, steps: int, block: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runners}
    done = 0
    while done < steps:
        for name, run in runners.items():
            for i in range(done, min(done + block, steps)):
                times[name].append(timed(lambda: run(i)))
        done += block
    return times


def report(title: str, times: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    base = statistics.median(times["fp32"])
    for name, values in times.items():
        median = statistics.median(values)
        line = f"  {name:22s} median {median * 1000:8.1f} ms   speed-up vs fp32 {base / median:5.2f}x"
        if name.endswith("+uniform") and name != "fp32+uniform":
            line += f"   vs fp32+uniform {statistics.median(times['fp32+uniform']) / median:5.2f}x"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--block", type=int, default=5)
    parser.add_argument("--task", default="demo/motifs", help="task whose training sequences make the batches")
    parser.add_argument("--sequence", default="native", choices=["native", "kmer", "nucleotide"], help="encoding.sequence")
    parser.add_argument("--k", type=int, default=6, help="encoding.k when --sequence kmer")
    parser.add_argument("--skip-inference", action="store_true", help="measure the training step only")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, native bf16 (AMX/AVX-512 BF16): {cpu_has_fast_bf16()}")

    if not args.skip_inference:
        measure_inference(args)
    measure_training(args)


def measure_inference(args) -> None:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 29000, (64, 64), generator=generator)
    mask = torch.ones_like(ids)
    infer = {}
    for variant in VARIANTS:
        model, _ = make_model(variant, 2, adapter=False)
        model.eval()

        def run(i, model=model, variant=variant):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant != "fp32"):
                model(input_ids=ids, attention_mask=mask)

        run(0)
        infer[variant] = run
    report("inference, MiniLM-L6, batch 64 x 64 tokens", alternate(infer, args.steps, args.block))


def measure_training(args) -> None:
    from lingo_core.data import load_task
    from lingo_core.encoding import SequenceEncoder

    task = load_task(config_from_dict({"data": {"task": args.task, "max_train": 512}}).data)
    encoding = config_from_dict({"encoding": {"sequence": args.sequence, "k": args.k}}).encoding
    trains = {}
    batches = None
    for variant in TRAIN_VARIANTS:
        model, tokenizer = make_model(variant, task.num_labels, adapter=True)
        if batches is None:
            encoder = SequenceEncoder(tokenizer, encoding, domain=task.domain)
            ids_all, _ = encoder.encode_batch(task.train.sequences)
            batches = [collate(ids_all[i * 16 : (i + 1) * 16], tokenizer.pad_token_id, task.train.labels[i * 16 : (i + 1) * 16]) for i in range(32)]
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        model.train()

        def step(i, model=model, optimizer=optimizer, variant=variant):
            batch = dict(batches[i % len(batches)])
            labels = batch.pop("labels")
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.startswith("bf16")):
                logits = model(**batch).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step(0)
        trains[variant] = step
    tokens = statistics.mean(float(b["attention_mask"].sum()) for b in batches) / 16
    report(f"LoRA training step, batch 16 x ~{tokens:.0f} tokens ({args.task}, {args.sequence} encoding)",
           alternate(trains, args.steps, args.block))


if __name__ == "__main__":
    main()
