"""Start training runs in the background, queue them, cancel and resume them.

The app never trains in its own process. :func:`launch` writes a run directory in state
``queued`` and starts a detached *queue runner* (``python -m lingo_core.launcher drain ROOT``).
The runner holds an exclusive lock on ``ROOT/.queue.lock``, starts queued runs oldest first as
``python -m lingo_core train --run-dir RUN`` (or ``--resume RUN``) while fewer than
``LINGO_MAX_PARALLEL`` (default 1) runs are active, and exits when nothing waits. Every process
is started with ``start_new_session=True``, so killing the app (even its whole process group)
leaves training going; a restarted app finds the runs in the same folder.

A queued run whose process has been started carries ``launch_pid`` in its status until the
trainer marks it ``running``. ``LINGO_MAX_PARALLEL=0`` pauses the queue (runs stay queued; tests).

:func:`launch` refuses a config identical to a queued or running run (:class:`DuplicateRunError`)
unless asked to allow it: a double click must not queue hours of work twice. The queue runner
reads every status defensively: a run directory whose ``status.json`` is damaged (a list, garbage)
is skipped, never the end of the queue.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from . import runs
from .config import LingoConfig, config_values, save_config, validate_config

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_RUNS_DIR = "LINGO_RUNS_DIR"
ENV_MAX_PARALLEL = "LINGO_MAX_PARALLEL"
QUEUE_LOCK, QUEUE_LOG, LAUNCH_LOCK = ".queue.lock", ".queue.log", ".launch.lock"
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
POLL_S = 1.0
PathLike = Union[str, Path]


def runs_root() -> Path:
    """``$LINGO_RUNS_DIR``, else ``runs/`` in the project root."""
    env = os.environ.get(ENV_RUNS_DIR)
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / "runs"


def uploads_root(root: Optional[PathLike] = None) -> Path:
    """Where the app saves uploaded data files: ``uploads/`` next to the runs folder."""
    return Path(root or runs_root()).resolve().parent / "uploads"


def max_parallel() -> int:
    """How many runs may train at once: ``$LINGO_MAX_PARALLEL`` (0 pauses the queue), default 1."""
    value = os.environ.get(ENV_MAX_PARALLEL, "").strip()
    try:
        return max(0, int(value)) if value else 1
    except ValueError:
        return 1


# -- states ----------------------------------------------------------------------------------------
def _status(run: runs.Run) -> dict[str, Any]:
    """The run's status as a dict; ``{}`` when it cannot be read (a damaged run is never fatal here)."""
    try:
        status = run.status
    except Exception:  # noqa: BLE001 - whatever a damaged status.json does, the queue goes on
        return {}
    return status if isinstance(status, dict) else {}


def _state(run: runs.Run) -> str:
    state = _status(run).get("state")
    return state if isinstance(state, str) else "unknown"


def _launch_pid(run: runs.Run) -> Optional[int]:
    pid = _status(run).get("launch_pid")
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


def _queued_at(run: runs.Run) -> str:
    status = _status(run)
    for key in ("queued_at", "created"):
        if isinstance(status.get(key), str):
            return status[key]
    return ""


def is_active(run: runs.Run) -> bool:
    """Running, or queued with its training process already started."""
    state = _state(run)
    return state == "running" or (state == "queued" and runs.pid_alive(_launch_pid(run)))


def is_waiting(run: runs.Run) -> bool:
    """Queued and not started yet."""
    return _state(run) == "queued" and not runs.pid_alive(_launch_pid(run))


def queue(root: Optional[PathLike] = None) -> list[runs.Run]:
    """Runs waiting for a slot, in the order they will start (oldest first)."""
    waiting = [r for r in runs.list_runs(root or runs_root()) if is_waiting(r)]
    return sorted(waiting, key=lambda r: (_queued_at(r), r.id))


def active_runs(root: Optional[PathLike] = None) -> list[runs.Run]:
    """Runs that are queued or running (what the app offers to cancel), in the order they started or
    will start: running ones first (oldest first), then the queue in its order."""
    listed = runs.list_runs(root or runs_root())
    running = sorted((r for r in listed if is_active(r)), key=lambda r: (_queued_at(r), r.id))
    waiting = sorted((r for r in listed if is_waiting(r)), key=lambda r: (_queued_at(r), r.id))
    return running + waiting


# -- identical configs ---------------------------------------------------------------------------------
_NOT_IDENTITY = ("run_name", "output_dir")  # where a run goes and what it is called, not what it does


def config_fingerprint(values: Mapping[str, Any]) -> str:
    """What a config does, as a string: two runs with the same fingerprint train the same model.

    ``values`` is a config as a dict (``LingoConfig.to_dict()`` or a run's ``config.yaml``); the run
    name, the output folder and the progress bar do not count.
    """
    values = {k: v for k, v in dict(values or {}).items() if k not in _NOT_IDENTITY}
    train = values.get("train")
    if isinstance(train, dict):
        values["train"] = {k: v for k, v in train.items() if k != "progress_bar"}
    return json.dumps(values, sort_keys=True, default=str)


def identical_active_run(cfg: LingoConfig, root: Optional[PathLike] = None) -> Optional[runs.Run]:
    """A queued or running run under ``root`` with exactly this config, or None."""
    wanted = config_fingerprint(config_values(cfg))
    for run in active_runs(root):
        try:
            if config_fingerprint(run.config) == wanted:
                return run
        except Exception:  # noqa: BLE001 - a damaged run is never "identical"
            continue
    return None


class DuplicateRunError(RuntimeError):
    """An identical config is already queued or running (``run`` is that run)."""

    def __init__(self, run: runs.Run) -> None:
        self.run = run
        super().__init__(f"an identical run, {run.id}, is already {_state(run)}")


# -- the API the app uses ------------------------------------------------------------------------------
def launch(cfg: LingoConfig, root: Optional[PathLike] = None, allow_duplicate: bool = False) -> Path:
    """Create a queued run directory for ``cfg`` under ``root`` and make sure the queue runs.

    Returns immediately with the run directory; training happens in a detached process. Raises
    :class:`DuplicateRunError` when a run with the same config is queued or running, unless
    ``allow_duplicate``; the check and the creation hold ``ROOT/.launch.lock``, so two launches at
    the same moment (a double click, two browser tabs) cannot both pass it.
    """
    root = Path(root or runs_root())
    cfg = dataclasses.replace(cfg, output_dir=str(root))
    validate_config(cfg)
    if cfg.run_name is not None and not RUN_NAME.match(cfg.run_name):
        raise ValueError(
            f"run_name {cfg.run_name!r}: use 1-80 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LAUNCH_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not allow_duplicate:
            twin = identical_active_run(cfg, root)
            if twin is not None:
                raise DuplicateRunError(twin)
        writer = runs.RunWriter.create(root, save_config(cfg), cfg.adapter.method, cfg.data.task, cfg.run_name)
        writer.update_status(queued_at=runs.now(), launched_by="launcher")
    kick(root)
    return writer.path


def cancel(run_dir: PathLike) -> str:
    """Cancel a queued or running run; returns its state afterwards.

    A running run stops after its current optimizer step (the trainer checks between steps); a
    queued run that has not started is marked ``cancelled`` at once.
    """
    run = runs.load_run(run_dir)
    state = _state(run)
    if state not in ("queued", "running"):
        return state
    runs.request_cancel(run.path)
    if state == "queued" and not runs.pid_alive(_launch_pid(run)):
        runs.RunWriter(run.path).set_status("cancelled", finished=runs.now())
        return "cancelled"
    return state


def resume(run_dir: PathLike) -> Path:
    """Queue a killed, failed or cancelled run to continue from its checkpoint, in the background."""
    run = runs.load_run(run_dir)
    if not run.resumable:
        raise RuntimeError(
            f"{run.id} cannot be resumed: state '{run.state}'"
            + ("" if run.has_checkpoint else ", and it has no checkpoint yet")
        )
    runs.clear_cancel(run.path)
    runs.RunWriter(run.path).set_status(
        "queued", resume=True, launch_pid=None, pid=None, queued_at=runs.now(), error=None, traceback=None
    )
    kick(run.path.parent)
    return run.path


def kick(root: PathLike) -> Optional[subprocess.Popen]:
    """Start a detached queue runner for ``root``; it waits for any runner already holding the
    lock, rescans the folder and exits as soon as nothing waits."""
    if max_parallel() == 0:
        return None
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / QUEUE_LOG, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "lingo_core.launcher", "drain", str(root)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=PROJECT_ROOT, env=_child_env(),
        )


# -- the queue runner ----------------------------------------------------------------------------------
def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def start(run: runs.Run) -> subprocess.Popen:
    """Start the training process of one queued run (detached; output to its log, ``Run.log_path``)."""
    mode = "--resume" if _status(run).get("resume") else "--run-dir"
    with open(run.log_path, "ab") as log:
        log.write(f"\n== {runs.now()} starting: python -m lingo_core train {mode} {run.path}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "lingo_core", "train", mode, str(run.path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=PROJECT_ROOT, env=_child_env(),
        )
    runs.RunWriter(run.path).update_status(launch_pid=proc.pid, launched=runs.now())
    return proc


def _settle_dead_starts(all_runs: Sequence[runs.Run], children: dict[int, subprocess.Popen]) -> None:
    """A queued run whose started process died before it began training: cancelled or failed."""
    for run in all_runs:
        pid = _launch_pid(run)
        if _state(run) != "queued" or not pid or runs.pid_alive(pid):
            continue
        writer = runs.RunWriter(run.path)
        if writer.cancel_requested():
            _try(lambda: writer.set_status("cancelled", finished=runs.now(), launch_pid=None))
            continue
        code = children[pid].returncode if pid in children else None
        _try(lambda: writer.set_status(
            "failed",
            error=f"the training process exited{f' with code {code}' if code is not None else ''} before training started",
            traceback=runs.Run(run.path).log_tail(4000),
            finished=runs.now(),
            launch_pid=None,
        ))


def drain(root: PathLike, poll_s: float = POLL_S) -> None:
    """Start queued runs while slots are free; return when none waits. One runner per root at a time.

    A run that cannot be started (its directory damaged or removed meanwhile) is marked failed when
    its status can still be written, and skipped otherwise; the other runs go on.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / QUEUE_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # blocks while another runner works; then rescans
        children: dict[int, subprocess.Popen] = {}
        skipped: set[str] = set()
        while True:
            for proc in children.values():
                proc.poll()  # reap finished children so pid_alive sees them gone
            all_runs = runs.list_runs(root)
            _settle_dead_starts(all_runs, children)
            # A run with a launch pid was started already: alive, it is active; dead, the next pass settles
            # it (cancelled or failed). Only runs never started are started, so a process that exits between
            # the settling above and this scan is not started a second time.
            waiting = [r for r in queue(root) if r.id not in skipped and _launch_pid(r) is None]
            for run in list(waiting):
                writer = runs.RunWriter(run.path)
                if writer.cancel_requested():
                    _try(lambda: writer.set_status("cancelled", finished=runs.now()))
                    waiting.remove(run)
            limit = max_parallel()
            if not waiting or limit == 0:
                return
            free = limit - sum(is_active(r) for r in runs.list_runs(root))
            for run in waiting[: max(0, free)]:
                try:
                    proc = start(run)
                except Exception as exc:  # noqa: BLE001 - one bad run directory must not stop the queue
                    skipped.add(run.id)
                    reason = f"{type(exc).__name__}: {exc}"
                    print(f"{runs.now()} cannot start {run.path}: {reason}", flush=True)
                    writer = runs.RunWriter(run.path)
                    _try(lambda: writer.set_status("failed", error=f"the queue could not start it: {reason}", finished=runs.now()))
                    continue
                children[proc.pid] = proc
            time.sleep(poll_s)


def _try(action) -> None:
    """Run a status write that may fail on a damaged run directory; the queue goes on either way."""
    try:
        action()
    except Exception as exc:  # noqa: BLE001
        print(f"{runs.now()} could not write a status: {type(exc).__name__}: {exc}", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lingo_core.launcher", description="LINGO background run queue")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("drain", help="start queued runs of a runs folder while slots are free")
    p.add_argument("root")
    args = parser.parse_args(argv)
    if args.command == "drain":
        drain(args.root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
