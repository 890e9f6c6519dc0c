"""A tiny quickstart run for the benchmarks that measure a trained run (speed does not depend on
what the weights learnt)."""

from __future__ import annotations

from pathlib import Path


def make_run(folder: Path) -> Path:
    """A 2-step quickstart run (embedded MiniLM-L6 + ARS) in ``folder``; the bench trains only for its setup."""
    from lingo_core.config import load_config
    from lingo_core.train import train

    root = Path(__file__).resolve().parent.parent
    cfg = load_config(
        root / "configs" / "quickstart.yaml",
        ["train.max_steps=2", f"output_dir={folder}", "train.progress_bar=false", "data.max_eval=16", "data.max_train=16"],
    )
    return train(cfg)
