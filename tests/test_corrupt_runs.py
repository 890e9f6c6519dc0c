"""Damaged run directories (issue 12, items 8-9): every file of a finished run truncated, emptied,
replaced by garbage, by the wrong type, or deleted.

The read API (``list_runs``, ``Run``'s accessors) never raises and says what is wrong in
``Run.damage``; loading for predict/evaluate and ``--resume`` refuse with a one-line error naming
the file (the project's own error types, exit code 2); the other runs keep working.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lingo_core import runs
from lingo_core.cli import main
from lingo_core.config import ConfigError
from lingo_core.inference import RunLoadError, load_trained
from lingo_core.train import train
from tests.helpers import tiny_config

CORRUPTIONS = ("truncated", "empty", "garbage", "wrong_type", "deleted")
FILES = (
    "config.yaml", "status.json", "metrics.jsonl", "ranks.jsonl", "data_report.json", "report.json",
    "predictions_dev.csv", "predictions_test.csv", "adapter/README.md", "adapter/adapter_config.json",
    "adapter/adapter_model.safetensors", "adapter/lingo_adapter.json", "checkpoint/best.pt", "checkpoint/state.pt",
)
# what a loader needs: damage to these must be reported by Run.damage (except a plain-but-valid wrong type
# of a binary file, which only loading can tell) and refused by predict
MODEL_FILES = ("config.yaml", "data_report.json", "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
               "adapter/lingo_adapter.json")
CHECKED = MODEL_FILES + ("status.json", "report.json", "checkpoint/best.pt", "checkpoint/state.pt")
LOAD_ERRORS = (RunLoadError, runs.RunFileError, ConfigError)
SEQUENCE = "ACGTTGCATTATAAAGGCCAATCGTACGTAGCTAGCTAGGATCCA"


@pytest.fixture(scope="module")
def finished_run(tiny_bert_dir, tmp_path_factory) -> Path:
    """A finished 5-step ARS run of the tiny BERT: every file a run directory can hold, ranks.jsonl included."""
    out = tmp_path_factory.mktemp("corrupt_base")
    return train(tiny_config(
        tiny_bert_dir, out, "ars", data={"max_train": 40, "max_eval": 20}, model={"dtype": "float32"},
        adapter={"adalora": {"tinit": 1, "tfinal": 2, "deltaT": 1}}, train={"max_steps": 6, "eval_every": 3, "batch_size": 8},
    ))


def corrupt(path: Path, how: str) -> None:
    """Damage one file of a run directory in one of the :data:`CORRUPTIONS` ways."""
    if how == "deleted":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00\xff\xfe garbage \x80\x81\n\xc3\x28 more\n")
    elif how == "wrong_type":
        suffix = path.suffix
        if suffix == ".json":
            path.write_text("[1, 2, 3]\n")
        elif suffix == ".jsonl":
            path.write_text('[1]\n"text"\n7\n{"step": 1}\n')
        elif suffix == ".yaml":
            path.write_text("- a list\n- not a mapping\n")
        elif suffix == ".pt":
            torch.save([1, 2, 3], path)
        elif suffix == ".safetensors":
            save_file({"unrelated": torch.zeros(3)}, str(path))
        else:
            path.write_text("a,b\n1\n")
    else:
        raise ValueError(how)


def damaged_copy(finished_run: Path, root: Path, name: str, how: str) -> Path:
    run_dir = root / f"{name.replace('/', '_')}-{how}"
    shutil.copytree(finished_run, run_dir)
    corrupt(run_dir / name, how)
    return run_dir


def read_everything(run: runs.Run) -> None:
    """Every accessor the dashboard, predict and studies use; none may raise."""
    run.summary()
    assert run.state in runs.STATES + ("interrupted", "unknown")
    for value in (run.config, run.status):
        assert isinstance(value, dict)
    assert isinstance(run.metrics(), list) and isinstance(run.ranks(), list)
    for value in (run.report(), run.data_report(), run.export_info()):
        assert value is None or isinstance(value, dict)
    run.exported_parameters(), run.predictions("test"), run.predictions("dev"), run.total_step
    run.method, run.task, run.model_name, run.weights_stamp(), run.has_model, run.resumable, run.log_tail()
    damage = run.damage
    assert damage is None or (isinstance(damage, str) and "\n" not in damage and damage.strip())


def test_the_read_api_never_raises_and_names_the_damage(finished_run, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(finished_run, root / "healthy")
    expected = {}
    for name in FILES:
        for how in CORRUPTIONS:
            run_dir = damaged_copy(finished_run, root, name, how)
            binary_but_valid = how == "wrong_type" and name.endswith((".pt", ".safetensors"))
            optional = how == "deleted" and name.startswith("checkpoint/")  # a finished run needs only its export
            expected[run_dir.name] = name in CHECKED and not binary_but_valid and not optional
    listed = runs.list_runs(root)
    assert len(listed) == len(expected) + (1 if (root / "healthy").exists() else 0) - sum(
        1 for n in expected if n.startswith("config.yaml-deleted")  # no config.yaml: not a run directory any more
    )
    for run in listed:
        read_everything(run)
        if run.id == "healthy":
            assert run.damage is None and run.state == "done"
        elif expected[run.id]:
            assert run.damage is not None, f"{run.id}: damage not reported"
    assert runs.load_run(root / "healthy").summary()["test_mcc"] is not None


def test_a_status_that_is_a_list_or_has_a_bad_pid_reads_as_unknown_or_interrupted(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    run = runs.load_run(run_dir)
    (run_dir / runs.STATUS).write_text('{"state": "running", "pid": "not-a-pid"}')
    assert run.state == "interrupted"
    (run_dir / runs.STATUS).write_text('{"state": "running", "pid": -1}')
    assert run.state == "interrupted"
    (run_dir / runs.STATUS).write_text('["running"]')
    assert run.state == "unknown" and "list" in run.damage
    runs.RunWriter(run_dir).update_status(progress={"step": 1})  # a writer repairs it instead of crashing
    assert run.state == "running" or run.state == "interrupted"


@pytest.mark.parametrize("name", MODEL_FILES + ("checkpoint/best.pt",))
def test_predict_refuses_a_damaged_model_with_an_error_naming_the_file(finished_run, tmp_path, name):
    failures = []
    for how in CORRUPTIONS:
        run_dir = damaged_copy(finished_run, tmp_path, name, how)
        if name == "checkpoint/best.pt":
            shutil.rmtree(run_dir / runs.ADAPTER)  # a run still training predicts with its best checkpoint
        if name == "config.yaml" and how == "deleted":
            with pytest.raises(FileNotFoundError, match="not a LINGO run directory"):
                load_trained(run_dir)
            continue
        try:
            load_trained(run_dir)
        except LOAD_ERRORS as exc:
            message = str(exc)
            assert Path(name).name in message or name.split("/")[0] in message, f"{how}: {message}"
        else:
            failures.append(how)
    assert not failures, f"{name} damaged ({failures}) still loaded"


def test_cli_predict_and_evaluate_fail_clearly_and_other_runs_keep_working(finished_run, tmp_path, capsys):
    healthy = tmp_path / "healthy"
    shutil.copytree(finished_run, healthy)
    for name, how in (("config.yaml", "garbage"), ("adapter/adapter_model.safetensors", "truncated"),
                      ("data_report.json", "wrong_type"), ("adapter/adapter_model.safetensors", "deleted")):
        run_dir = damaged_copy(finished_run, tmp_path, name, how)
        for argv in (["predict", str(run_dir), SEQUENCE], ["evaluate", str(run_dir), "--splits", "dev"]):
            assert main(argv) == 2, (name, how, argv[0])
            err = capsys.readouterr().err
            lines = [line for line in err.splitlines() if line.startswith("error:")]
            assert len(lines) == 1 and Path(name).name in lines[0] and "Traceback" not in err, err
    code = main(["predict", str(healthy), SEQUENCE])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "seq1" in out


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_resume_refuses_a_damaged_checkpoint_or_config(finished_run, tmp_path, capsys, how):
    for name in ("checkpoint/state.pt", "config.yaml"):
        run_dir = damaged_copy(finished_run, tmp_path, name, how)
        runs.RunWriter(run_dir).set_status("failed", error="stopped")
        if name == "checkpoint/state.pt" and how == "deleted":
            continue  # no checkpoint: a restart from step 0 (tests/test_train.py)
        code = main(["train", "--resume", str(run_dir)])
        err = capsys.readouterr().err
        assert code == 2, (name, how, err)
        assert "Traceback" not in err and Path(name).name in err, err
        assert runs.Run(run_dir).state in ("failed", "unknown"), "a refused resume must not mark the run running"


def test_resume_repairs_a_damaged_status(finished_run, tmp_path):
    """status.json is rewritten by the resumed run; the checkpoint at the last step finishes it again."""
    run_dir = damaged_copy(finished_run, tmp_path, "status.json", "wrong_type")
    shutil.rmtree(run_dir / runs.ADAPTER)
    assert main(["train", "--resume", str(run_dir)]) == 0
    run = runs.load_run(run_dir)
    assert run.state == "done" and run.damage is None and run.has_adapter


# -- resume and failures leave a clean run directory (issue 12, item 10) ---------------------------------
def _hidden_files(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob(".*")]


def test_resume_before_the_first_checkpoint_restarts_with_fresh_records(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    for name in (runs.ADAPTER, runs.REPORT, f"{runs.CHECKPOINT}/{runs.STATE_FILE}"):
        shutil.rmtree(run_dir / name) if (run_dir / name).is_dir() else (run_dir / name).unlink()
    runs.RunWriter(run_dir).set_status("failed", error="killed before its first checkpoint")
    (run_dir / runs.CHECKPOINT / ".state.pt.k1ll3d").write_bytes(b"")  # what a kill during torch.save leaves
    (run_dir / ".adapter.tmp").mkdir()
    (run_dir / ".CANCEL.wr1t1ng").write_bytes(b"")  # a fresh temporary: someone may be writing it now
    old = time.time() - 2 * runs.STALE_TEMPORARY_S
    for leftover in (run_dir / runs.CHECKPOINT / ".state.pt.k1ll3d", run_dir / ".adapter.tmp"):
        os.utime(leftover, (old, old))
    before = [m["step"] for m in runs.load_run(run_dir).metrics() if "loss" in m]
    assert before == list(range(1, len(before) + 1))

    assert main(["train", "--resume", str(run_dir)]) == 0
    run = runs.load_run(run_dir)
    assert run.state == "done" and run.status["resumed_from_step"] == 0 and run.damage is None
    assert [m["step"] for m in run.metrics() if "loss" in m] == before, "the old log must not precede step 1"
    assert [r["step"] for r in run.ranks()] == sorted({r["step"] for r in run.ranks()})
    assert [p.name for p in _hidden_files(run_dir)] == [".CANCEL.wr1t1ng"]  # only the young one is left to its writer


def test_a_full_disk_marks_the_run_failed_on_one_line_and_leaves_no_temporary_files(finished_run, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    shutil.rmtree(run_dir / runs.ADAPTER)
    runs.RunWriter(run_dir).set_status("cancelled")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runs.os, "fsync", disk_full)  # every atomic write fails after writing its temporary file
    assert main(["train", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error:")] == ["error: [Errno 28] No space left on device"]
    status = runs.load_run(run_dir).status  # written in place, as a full disk allows
    assert status["state"] == "failed" and status["error"] == "OSError: [Errno 28] No space left on device"
    assert _hidden_files(run_dir) == []


def test_a_failed_run_without_a_model_says_why_instead_of_wait(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    shutil.rmtree(run_dir / runs.ADAPTER)
    (run_dir / runs.CHECKPOINT / runs.BEST_FILE).unlink()
    runs.RunWriter(run_dir).record_failure("OSError: [Errno 28] No space left on device")
    with pytest.raises(RunLoadError) as info:
        load_trained(run_dir)
    message = str(info.value)
    assert "failed before its first dev evaluation" in message and "No space left" in message
    assert "wait" not in message and "--resume" in message
    runs.RunWriter(run_dir).set_status("running", pid=os.getpid())
    with pytest.raises(RunLoadError, match="wait for its first dev evaluation"):
        load_trained(run_dir)
