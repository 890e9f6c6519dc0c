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


# The session's demo run: the quickstart as shipped (ARS on MiniLM's WordPiece tokens at lr 8e-3), capped
# at DEMO_RUN_STEPS of its 250 steps and trained in fp32 so that it is the same run on every CPU.
# Measured side by side (one torch thread each, 2026-12-03): 150 steps reach dev MCC 0.83 and pass the
# attribution and prediction tests with margin (IG enrichment 11-14, IG share on the motifs 0.61-0.65);
# 120 steps passed too with ISM's share down to 0.54. It replaced full fine-tuning on one token per base
# for 200 steps (cleaner attributions, IG share ~0.75, at 1.6x the training time and 1.7x the test time).
DEMO_RUN_STEPS = 150
DEMO_RUN_OVERRIDES = ["model.dtype=float32"]


# -- training runs that train in the background while the rest of the suite runs -----------------------------
# The suite's two real trainings (the demo run, ~160 s, and a short ARS run on real promoters, ~135 s) are
# CPU-bound, while most other tests leave one of the two cores idle (the suite averaged 137 % CPU). Each is
# started as its own `python -m lingo_core train` process when the session's tests are known, on one torch
# thread at the normal priority, and the tests that read it run last. At nice 10 the other tests and
# their subprocesses starved them, and the first test reading each waited for it with one core idle (demo run
# 84 s, 2026-12-04; with only the promoter run at nice 10 it was that run's test that waited, 40 s). Suite:
# 913 s with both at nice 10, 887 s with the promoter run alone at nice 10, 754 s with neither.
BACKGROUND_TIMEOUT_S = 1800


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
            [f"data.root={root}", "data.max_train=1600", "train.max_steps=100", "train.eval_every=50",
             "train.batch_size=16", "train.lr=0.002", "train.progress_bar=false"],
        )
    return configs


class BackgroundRun:
    """One ``python -m lingo_core train`` process and the run directory it writes."""

    def __init__(self, name: str, config: Path, overrides: list[str], beside_other_tests: bool = True):
        import subprocess
        import sys
        import tempfile

        self.name = name
        self.out = Path(tempfile.mkdtemp(prefix=f"lingo-test-{name}-"))
        args = [sys.executable, "-m", "lingo_core", "train", str(config)]
        for override in [*overrides, f"output_dir={self.out}"]:
            args += ["--set", override]
        env = dict(os.environ)
        if beside_other_tests:  # one core: the other tests keep the other
            env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        elif not _THREADS_SET_BY_USER:  # alone (only its tests selected): every core, as a user's run
            env.pop("OMP_NUM_THREADS", None)
        self.log = open(self.out / "train.log", "w")
        self.proc = subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait(self) -> Path:
        """The finished run's directory; fails the test with the log's tail if the training failed."""
        from lingo_core.runs import load_run

        rc = self.proc.wait(timeout=BACKGROUND_TIMEOUT_S)
        self.log.close()
        run_dirs = [d for d in self.out.iterdir() if d.is_dir()]
        tail = (self.out / "train.log").read_text(errors="replace")[-3000:]
        assert rc == 0 and len(run_dirs) == 1, f"background run {self.name} failed (exit {rc}):\n{tail}"
        run = load_run(run_dirs[0])
        assert run.state == "done", f"background run {self.name} failed: {run.status.get('error')}\n{tail}"
        return run_dirs[0]

    def stop(self) -> None:
        import shutil

        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.out, ignore_errors=True)


_BACKGROUND: dict[str, BackgroundRun] = {}


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: only runs a selected test reads are started
def pytest_collection_modifyitems(session, config, items) -> None:
    """Tests that read a background run go last; the runs they read start now."""
    configs = _background_configs()
    late = [item for item in items if set(getattr(item, "fixturenames", ())) & configs.keys()]
    items[:] = [item for item in items if item not in late] + late
    if config.option.collectonly:
        return
    needed = {name for item in late for name in item.fixturenames if name in configs}
    if "demo_run" in needed and os.environ.get("LINGO_TEST_DEMO_RUN"):
        needed.discard("demo_run")
    for name in sorted(needed):
        _BACKGROUND[name] = BackgroundRun(name, *configs[name], beside_other_tests=len(late) < len(items))


def pytest_sessionfinish(session, exitstatus) -> None:
    for run in _BACKGROUND.values():
        run.stop()
    _BACKGROUND.clear()


def _background_run(name: str) -> Path:
    if name not in _BACKGROUND:  # e.g. a plugin reordered or re-collected the items: start it now
        configs = _background_configs()
        if name not in configs:
            pytest.skip(NO_DATA)
        _BACKGROUND[name] = BackgroundRun(name, *configs[name])
    return _BACKGROUND[name].wait()


@pytest.fixture(autouse=True)
def _every_core_for_the_tests_that_run_last(request):
    """The tests that read a background run run last, when the machine is otherwise idle: they get every
    core back from the suite's one-thread default (the motif attribution test, 2026-12-04: 95 s on one
    thread, 59 s on two)."""
    if not set(request.fixturenames) & _background_configs().keys():  # as the collection hook orders them
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
    """The shipped ARS config on real TATA promoters, cut short (100 steps on 1,600 training sequences at
    lr 2e-3, dev evaluated at steps 50 and 100), trained in the background. It used to be the suite's last
    background run to finish; evaluating dev at 50 and 100 instead of every 25 steps cut its CPU time by
    13 % (292 s -> 253 s on one thread, 2026-12-04) with the same selected checkpoint's dev MCC (0.41) and
    test AUROC (0.74)."""
    return _background_run("real_promoter_ars_run")
