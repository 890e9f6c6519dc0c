"""Opening someone else's run directory runs none of its code (issue 12, items 1-2).

Item 1 (checkpoints load with ``weights_only=True``) is also checked for ``best.pt`` in
``tests/test_train.py``; here for ``state.pt`` on resume. Item 2: a run's own ``config.yaml`` with
``model.trust_remote_code: true`` is a request that only the person loading the run can grant.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from lingo_core import runs
from lingo_core.cli import main
from lingo_core.predict import load_predictor  # what the dashboard pages call (imported before any captured stderr)
from lingo_core.config import ConfigError
from lingo_core.inference import RunLoadError, load_trained, remote_code_allowed
from lingo_core.train import resume, train
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def finished_run(tiny_bert_dir, tmp_path_factory) -> Path:
    """A finished 2-step LoRA run of the tiny BERT."""
    out = tmp_path_factory.mktemp("security_runs")
    return train(tiny_config(
        tiny_bert_dir, out, "lora", data={"max_train": 40, "max_eval": 20}, model={"dtype": "float32"},
        train={"max_steps": 2, "eval_every": 2},
    ))


def _remote_code_model(tiny_bert_dir: Path, folder: Path, marker: Path) -> Path:
    """The tiny BERT as a model that ships its own code; importing that code writes ``marker``."""
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "custom_bert.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('remote code ran')\n"
        "from transformers import BertConfig, BertForSequenceClassification\n"
        "class CustomBertConfig(BertConfig):\n"
        "    model_type = 'bert'\n"
        "class CustomBert(BertForSequenceClassification):\n"
        "    config_class = CustomBertConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "custom_bert.CustomBertConfig",
        "AutoModelForSequenceClassification": "custom_bert.CustomBert",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def remote_code_run(finished_run, tiny_bert_dir, tmp_path) -> tuple[Path, Path]:
    """A copy of the finished run whose config.yaml points at a remote-code model and asks to trust it."""
    marker = tmp_path / "remote-code-ran"
    model = _remote_code_model(tiny_bert_dir, tmp_path / "custom_model", marker)
    run_dir = tmp_path / "runs" / "shared-run"
    shutil.copytree(finished_run, run_dir)
    config = yaml.safe_load((run_dir / runs.CONFIG).read_text())
    config["model"].update({"name": str(model), "trust_remote_code": True})
    (run_dir / runs.CONFIG).write_text(yaml.safe_dump(config))
    return run_dir, marker


def test_a_runs_own_trust_remote_code_is_not_obeyed_when_loading_it(remote_code_run, capsys):
    run_dir, marker = remote_code_run
    with pytest.raises(RunLoadError, match="trust_remote_code: true.*--trust-remote-code"):
        load_trained(run_dir)
    with pytest.raises(RunLoadError, match="cannot switch that on by itself"):
        load_predictor(run_dir)
    for argv in (["predict", str(run_dir), "ACGTACGTAC"], ["attribute", str(run_dir), "ACGTACGTAC"], ["evaluate", str(run_dir)]):
        assert main(argv) == 2
        assert "--trust-remote-code" in capsys.readouterr().err
    # reading the run (dashboard tables) never loads a model
    run = runs.list_runs(run_dir.parent)[0]
    assert run.summary()["model"].endswith("custom_model") and run.damage is None
    assert not marker.exists(), "the run directory ran code without being asked"


def test_resuming_or_training_a_queued_run_needs_the_same_opt_in(remote_code_run):
    run_dir, marker = remote_code_run
    runs.RunWriter(run_dir).set_status("failed", error="stopped")
    with pytest.raises(ConfigError, match="--trust-remote-code"):
        resume(run_dir)
    assert main(["train", "--resume", str(run_dir)]) == 2
    assert not marker.exists()


def test_remote_code_runs_only_when_the_caller_opts_in(remote_code_run):
    run_dir, marker = remote_code_run
    with remote_code_allowed(False):
        with pytest.raises(RunLoadError):
            load_trained(run_dir)
    assert not marker.exists()
    trained = load_trained(run_dir, trust_remote_code=True)  # the explicit keyword grants it
    assert marker.exists() and type(trained.loaded.model).__name__ == "CustomBert"


def test_registry_models_ignore_the_flag(finished_run):
    """A registry model never runs its own code: a run asking for it loads, with the flag switched off."""
    from lingo_core.inference import _allow_remote_code

    run = runs.load_run(finished_run)
    cfg = run.typed_config()
    cfg.model.name, cfg.model.trust_remote_code = "minilm-l6", True
    _allow_remote_code(cfg, run, None)
    assert cfg.model.trust_remote_code is False


def test_a_resume_checkpoint_that_could_run_code_is_refused(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    runs.RunWriter(run_dir).set_status("failed", error="stopped")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    state = torch.load(run_dir / runs.CHECKPOINT / runs.STATE_FILE, weights_only=True)
    state["payload"] = Exploit()
    torch.save(state, run_dir / runs.CHECKPOINT / runs.STATE_FILE)
    assert main(["train", "--resume", str(run_dir)]) == 2
    assert "not loaded (it could run code)" in capsys.readouterr().err
    assert not marker.exists()
    assert runs.load_run(run_dir).state == "failed"
