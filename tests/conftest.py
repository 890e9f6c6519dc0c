"""Shared fixtures: offline mode, the shared data root, tiny models for fast code-path tests."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread per process (inherited by the subprocesses the tests start): the suite's models are tiny and
# a second thread bought nothing but CPU (tests/test_train.py alone, side by side on 2 cores, 2026-12-04: 181 s
# wall and 227 CPU-seconds with two threads, 175 s and 186 with one), which the background runs need.
_THREADS_SET_BY_USER = "OMP_NUM_THREADS" in os.environ
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import pytest  # noqa: E402

from lingo_core.config import default_data_root  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent


NO_DATA = "real benchmark data not found: set LINGO_DATA_DIR or place it at ../shared/data"


def _shared_data_root() -> Optional[Path]:
    """The shared benchmark data (../shared/data), or None when it is absent."""
    root = default_data_root()
    return root if root is not None and (root / "gue").is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared benchmark data (../shared/data); tests that need it skip when it is absent."""
    root = _shared_data_root()
    if root is None:
        pytest.skip(NO_DATA)
    return root


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide randomly initialised BERT with the embedded MiniLM WordPiece tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from lingo_core.models import REGISTRY

    out = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(str(REGISTRY["minilm-l6"].locate()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_opt_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised OPT with a byte-level BPE tokenizer trained here (OPT code path)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import OPTConfig, OPTForSequenceClassification, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny_opt")
    corpus = [
        "Domain: DNA Promoter\nSequence: ACGTTGCATTATAAAGGCCAATCGT\nAnnotation:",
        "the quick brown fox jumps over the lazy dog",
    ] * 50 + ["".join("ACGT"[(i * 7 + j * 3) % 4] for j in range(60)) for i in range(200)]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=2, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    config = OPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        ffn_dim=64,
        num_attention_heads=2,
        max_position_embeddings=512,
        word_embed_proj_dim=32,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids("</s>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("</s>"),
    )
    torch.manual_seed(0)
    OPTForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def dashboard_runs_dir(tmp_path, monkeypatch) -> Path:
    """An empty runs folder for the dashboard (LINGO_RUNS_DIR) with the launch queue paused.

    ``LINGO_MAX_PARALLEL=0``: runs launched from the app stay queued, so page tests never train.
    """
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    monkeypatch.setenv("LINGO_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("LINGO_MAX_PARALLEL", "0")
    return runs_dir


# The session's demo run: the quickstart (ARS on MiniLM's WordPiece tokens at lr 8e-3) in batches of 8 instead
# of 16, capped at DEMO_RUN_STEPS steps and trained in fp32 so that it is the same run on every CPU.
# Measured side by side (one torch thread each, 2026-12-03): 150 steps of 16 reach dev MCC 0.83 and pass the
# attribution and prediction tests with margin (IG enrichment 11-14, IG share on the motifs 0.61-0.65);
# 120 steps passed too with ISM's share down to 0.54, 100 failed. 150 steps of 8 (2026-12-04, AVX-512 EPYC):
# 73 CPU-seconds instead of 118, test MCC 0.78 (0.81), the prediction test's accuracy 0.885 (0.92), IG
# enrichment 11-28, ISM 6-25, IG share 0.61-0.79, ISM share 0.47-0.77 (means 0.67 and 0.63; the test reads
# means, threshold 0.5). It replaced full fine-tuning on one token per base for 200 steps (cleaner
# attributions, IG share ~0.75, at 1.6x the training time and 1.7x the test time).
DEMO_RUN_STEPS = 150
DEMO_RUN_OVERRIDES = ["train.batch_size=8", "model.dtype=float32"]


# -- training runs that train in the background while the rest of the suite runs -----------------------------
# The suite's two real trainings (the demo run and a short ARS run on real promoters) are CPU-bound, one torch
# thread each. Each is started as its own `python -m lingo_core train` process when the session's tests are known,
# at the normal priority, and the tests that read it run last. Under pytest-xdist (`-n 2`, the README's command)
# the workers share them: the first worker to claim a run's folder in a folder the controller made starts it,
# and every test that reads it waits for its exit code there; the controller kills what is left at the end.
# Without xdist the one process does all of that itself. (At nice 10 the other tests starved them and the first
# test reading each waited with a core idle: suite 913 s, 754 s at the normal priority, 2026-12-04.)
BACKGROUND_TIMEOUT_S = 1800
_SHARED_DIR_ENV = "LINGO_TEST_BACKGROUND_DIR"  # set by the xdist controller, inherited by its workers


def _background_configs() -> dict[str, tuple[Path, list[str]]]:
    """Fixture name -> (config file, overrides) of each background run (output_dir is added at start)."""
    configs = {
        "demo_run": (
            PROJECT_ROOT / "configs" / "quickstart.yaml",
            [f"train.max_steps={DEMO_RUN_STEPS}", "train.progress_bar=false", "data.max_eval=200", "train.eval_every=75", *DEMO_RUN_OVERRIDES],
        ),
    }
    root = _shared_data_root()
    if root is not None:
        configs["real_promoter_ars_run"] = (
            PROJECT_ROOT / "configs" / "gue_prom_core_tata_ars.yaml",
            [f"data.root={root}", "data.max_train=1600", "train.max_steps=150", "train.eval_every=150",
             "train.batch_size=8", "train.lr=0.002", "train.progress_bar=false"],
        )
    return configs


def _xdist_worker() -> bool:
    return "PYTEST_XDIST_WORKER" in os.environ


def _xdist_controller(config) -> bool:
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None)) \
        and getattr(config.option, "dist", "no") != "no"


class BackgroundRun:
    """One ``python -m lingo_core train`` process writing into ``home``: ``train.log``, the run folder under
    ``out/``, its process group id in ``pid`` and, once it has ended, its exit code in ``rc``."""

    def __init__(self, home: Path) -> None:
        self.home = home

    @classmethod
    def claim(cls, home: Path, name: str, beside_other_tests: bool = True) -> "BackgroundRun":
        """Start run ``name`` in ``home`` unless another process (an xdist worker) has claimed it already."""
        import shlex
        import subprocess
        import sys

        run = cls(home)
        try:
            home.mkdir()
        except FileExistsError:  # claimed by another worker: it trains, this one waits for it
            return run
        config, overrides = _background_configs()[name]
        args = [sys.executable, "-m", "lingo_core", "train", str(config)]
        for override in [*overrides, f"output_dir={home / 'out'}"]:
            args += ["--set", override]
        env = dict(os.environ)
        if beside_other_tests:  # one core: the other tests keep the other
            env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        elif not _THREADS_SET_BY_USER:  # alone (only its tests selected): every core, as a user's run
            env.pop("OMP_NUM_THREADS", None)
        rc, part, log = (shlex.quote(str(home / f)) for f in ("rc", "rc.part", "train.log"))
        script = f"{shlex.join(args)} > {log} 2>&1; echo $? > {part} && mv {part} {rc}"
        proc = subprocess.Popen(["sh", "-c", script], cwd=PROJECT_ROOT, env=env, start_new_session=True)
        (home / "pid").write_text(str(proc.pid))
        return run

    def wait(self) -> Path:
        """The finished run's directory; fails the test with the log's tail if the training failed."""
        import time

        from lingo_core.runs import load_run

        deadline = time.monotonic() + BACKGROUND_TIMEOUT_S
        while not (self.home / "rc").exists():
            assert time.monotonic() < deadline, f"background run {self.home.name} did not end in {BACKGROUND_TIMEOUT_S} s"
            time.sleep(0.5)
        rc = int((self.home / "rc").read_text())
        out = self.home / "out"
        run_dirs = [d for d in out.iterdir() if d.is_dir()] if out.is_dir() else []
        tail = (self.home / "train.log").read_text(errors="replace")[-3000:]
        assert rc == 0 and len(run_dirs) == 1, f"background run {self.home.name} failed (exit {rc}):\n{tail}"
        run = load_run(run_dirs[0])
        assert run.state == "done", f"background run {self.home.name} failed: {run.status.get('error')}\n{tail}"
        return run_dirs[0]

    def stop(self) -> None:
        """Kill the training if it still runs (its whole process group)."""
        import signal

        pid = self.home / "pid"
        if pid.exists() and not (self.home / "rc").exists():
            try:
                os.killpg(int(pid.read_text()), signal.SIGKILL)
            except (ProcessLookupError, PermissionError, ValueError):
                pass


_BACKGROUND: dict[str, BackgroundRun] = {}


def _background_dir() -> Path:
    """The folder the background runs write into: the xdist controller's (shared), or this session's own."""
    import tempfile

    shared = os.environ.get(_SHARED_DIR_ENV)
    if shared:
        return Path(shared)
    os.environ[_SHARED_DIR_ENV] = tempfile.mkdtemp(prefix="lingo-test-background-")
    return Path(os.environ[_SHARED_DIR_ENV])


def pytest_configure(config) -> None:
    if _xdist_controller(config):  # before the workers start: they inherit the folder
        _background_dir()


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: only runs a selected test reads are started
def pytest_collection_modifyitems(session, config, items) -> None:
    """Tests marked ``runs_first`` go first, tests that read a background run go last; the runs they read start
    now. (Under xdist with ``--no-loadscope-reorder`` files are handed out in this order: the browser test's
    file to one worker at once, the rest of the suite to the other.)"""
    configs = _background_configs()
    first = [item for item in items if item.get_closest_marker("runs_first")]
    late = [item for item in items if set(getattr(item, "fixturenames", ())) & configs.keys()]
    items[:] = first + [item for item in items if item not in first and item not in late] + late
    if config.option.collectonly:
        return
    needed = {name for item in late for name in item.fixturenames if name in configs}
    if "demo_run" in needed and os.environ.get("LINGO_TEST_DEMO_RUN"):
        needed.discard("demo_run")
    for name in sorted(needed):
        _BACKGROUND[name] = BackgroundRun.claim(_background_dir() / name, name, beside_other_tests=len(late) < len(items))


def pytest_sessionfinish(session, exitstatus) -> None:
    """The process that made the folder (the xdist controller, or the one process) kills what still trains."""
    import shutil

    if _xdist_worker() or _SHARED_DIR_ENV not in os.environ:
        return
    home = Path(os.environ.pop(_SHARED_DIR_ENV))
    for run_home in home.iterdir() if home.is_dir() else ():
        BackgroundRun(run_home).stop()
    shutil.rmtree(home, ignore_errors=True)
    _BACKGROUND.clear()


def _background_run(name: str) -> Path:
    if name not in _BACKGROUND:  # e.g. a plugin reordered or re-collected the items: start it now
        if name not in _background_configs():
            pytest.skip(NO_DATA)
        _BACKGROUND[name] = BackgroundRun.claim(_background_dir() / name, name)
    return _BACKGROUND[name].wait()


@pytest.fixture(autouse=True)
def _every_core_for_the_tests_that_run_last(request):
    """The tests that read a background run run last, when the machine is otherwise idle: they get every
    core back from the suite's one-thread default (the motif attribution test, 2026-12-04: 95 s on one
    thread, 59 s on two). Not under xdist, where the other worker still runs tests."""
    if _xdist_worker() or not set(request.fixturenames) & _background_configs().keys():
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or threads)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def demo_run() -> Path:
    """The embedded MiniLM on the planted-motif demo task (quickstart + DEMO_RUN_OVERRIDES), trained briefly
    in the background.

    Set ``LINGO_TEST_DEMO_RUN=/path/to/run`` to reuse a finished run of that config instead of training.
    """
    reuse = os.environ.get("LINGO_TEST_DEMO_RUN")
    if reuse:
        return Path(reuse)
    return _background_run("demo_run")


@pytest.fixture(scope="session")
def real_promoter_ars_run(data_root) -> Path:
    """The shipped ARS config on real TATA promoters, cut short (150 steps of 8 of 1,600 training sequences at
    lr 2e-3, dev evaluated at the end), trained in the background. CPU-seconds of this run on one thread, fp32
    (as on a CPU without bf16), a 2-core AVX-512 EPYC, side by side, 2026-12-04: 100 steps of 16 with dev at
    steps 50 and 100, 89 s (dev MCC 0.41, test AUROC 0.742); dev at 100 alone, 83 s (the same); 150 steps of 8,
    70 s (dev MCC 0.42, test AUROC 0.741); 120 steps of 8, 62 s (0.40 / 0.733, too near the test's 0.7)."""
    return _background_run("real_promoter_ars_run")
