"""Small builders shared by the engine tests."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lingo_core.config import LingoConfig, config_from_dict


def deep_update(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def tiny_config(model_dir: Path, output_dir: Path, method: str = "ars", **override: Any) -> LingoConfig:
    """A seconds-long run: tiny model, 160 demo sequences, 16 optimizer steps, allocations every 2."""
    values: dict[str, Any] = {
        "data": {"task": "demo/motifs", "max_train": 160, "max_eval": 64},
        "model": {"name": str(model_dir)},
        "encoding": {"max_length": 128},
        "adapter": {"method": method, "lora": {"r": 4}, "adalora": {"init_r": 4, "target_r": 2, "tinit": 2, "tfinal": 4, "deltaT": 2}},
        "train": {"epochs": 1, "batch_size": 10, "max_steps": 16, "eval_every": 4, "lr": 0.003, "progress_bar": False, "warmup_ratio": 0.0},
        "output_dir": str(output_dir),
    }
    return config_from_dict(deep_update(values, override))


@dataclass
class CliResult:
    """What a finished ``python -m lingo_core`` command left: exit code, stdout, stderr."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> CliResult:
    """``python -m lingo_core ARGS`` run in this process, from the project root: the same parser, commands
    and error handling (``lingo_core.cli.main``), without the ~7-15 s a new interpreter spends importing
    torch and transformers. The entry point itself runs as its own process in the background runs
    (tests/conftest.py), the resume and torchrun tests (test_train.py) and test_config_encoding.py."""
    from lingo_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(Path(__file__).resolve().parent.parent)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(here)
    return CliResult(code, out.getvalue(), err.getvalue())


def cli_dying_after_checkpoint(step: int) -> str:
    """Python source that runs ``python -m lingo_core`` with its argv, but dies like ``kill -9`` right
    after the checkpoint of ``step`` has been written (for resume tests; run with ``python -c``)."""
    return (
        "import os, sys\n"
        "from lingo_core import runs\n"
        "save = runs.RunWriter.save_state\n"
        "def save_then_die(self, state):\n"
        "    save(self, state)\n"
        f"    if state['loop']['step'] >= {step}:\n"
        "        os._exit(137)\n"
        "runs.RunWriter.save_state = save_then_die\n"
        "from lingo_core.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
