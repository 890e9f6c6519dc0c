"""Fuzzing bad input (issue 12, "keep it so"): the config loader, the FASTA/CSV readers and the CLI
entry points, fed with random values, bytes and sequences.

Properties: nothing but the project's own error types escapes the loaders and readers; the CLI
answers every input with an exit code and at most one ``error:`` line (never a traceback or an
"unexpected" error); invalid input creates no run directory; an output file is either absent or
complete. Examples are derandomised (the same on every run); ``LINGO_FUZZ_EXAMPLES=500`` explores
further with fresh random examples.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import tempfile
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lingo_core.attribution_results import AttributionError
from lingo_core.cli import main
from lingo_core.config import ConfigError, ConfigWarning, LingoConfig, load_config
from lingo_core.data import DataError
from lingo_core.data.readers import parse_fasta_text, read_fasta, read_table_frame, scan_fasta
from lingo_core.data.validation import clean_sequence
from lingo_core.encoding import EncodingError
from lingo_core.inference import RunLoadError
from lingo_core.models import ModelError
from lingo_core.runs import RunFileError
from lingo_core.sequence_input import parse_fasta_records, read_csv_input, read_fasta_input
from lingo_core.train import train
from tests.helpers import run_cli, tiny_config

PROJECT_ERRORS = (ConfigError, DataError, EncodingError, ModelError, RunLoadError, RunFileError, AttributionError)
DEEP = int(os.environ.get("LINGO_FUZZ_EXAMPLES", "0"))


def fuzz(examples: int):
    """Hypothesis settings: ``examples`` derandomised examples, or LINGO_FUZZ_EXAMPLES random ones."""
    return settings(
        max_examples=DEEP or examples,
        derandomize=not DEEP,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def _dotted_keys(value: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, child in value.items():
        dotted = f"{prefix}{key}"
        keys += _dotted_keys(child, dotted + ".") if isinstance(child, dict) and child else [dotted]
    return keys


CONFIG_KEYS = _dotted_keys(LingoConfig().to_dict())
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**12), max_value=10**12), st.floats(),
    st.text(max_size=12), st.sampled_from(["auto", "cpu", "lora", "ars", "mcc", "paper", "{sequence}", ".inf", "nan", "../x"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=6), scalars, max_size=2))
raw_texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["[1,", "{a: 1", "'unclosed", "!!python/object:os.system", "&a [*a]", "- a\n- b", ": :", "%YAML 9"]),
)
keys = st.one_of(st.sampled_from(CONFIG_KEYS), st.text(alphabet="abcdefghijklmnopqrstuvwxyz._", min_size=1, max_size=20))


@st.composite
def overrides(draw) -> str:
    key = draw(keys)
    raw = draw(st.one_of(values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("\n...")), raw_texts))
    return f"{key}={raw}"


def _load(path=None, sets=()):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        return load_config(path, list(sets))


# ------------------------------------------------------------------------------------------ config
@fuzz(300)
@given(st.lists(overrides(), min_size=1, max_size=4))
def test_config_overrides_load_or_raise_a_config_error(sets):
    try:
        cfg = _load(None, sets)
    except ConfigError as exc:
        assert str(exc).strip()
    else:
        assert isinstance(cfg, LingoConfig)


@fuzz(150)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.dictionaries(st.sampled_from(["data", "train", "model", "adapter", "encoding", "output_dir", "x"]),
                                 values, max_size=4).map(lambda d: yaml.safe_dump(d).encode())))
def test_config_files_load_or_raise_a_config_error(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_bytes(content)
        try:
            cfg = _load(path)
        except ConfigError as exc:
            assert str(path) in str(exc)
        else:
            assert isinstance(cfg, LingoConfig)


@fuzz(60)
@given(st.lists(overrides(), min_size=1, max_size=3))
def test_invalid_configs_create_no_run_directory(sets):
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "runs"
        sets = [*sets, f"output_dir={out}"]
        argv = ["train", "configs/quickstart.yaml", *[a for s in sets for a in ("--set", s)]]
        try:
            _load("configs/quickstart.yaml", sets)
        except ConfigError:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                assert main(argv) == 2
            assert err.getvalue().startswith("error: ") and "Traceback" not in err.getvalue()
            assert not out.exists() or not any(out.iterdir())


@fuzz(25)
@given(st.one_of(st.binary(max_size=120), st.lists(
    st.tuples(st.text(alphabet="ACGTNRYX acgt-", max_size=12), st.sampled_from(["0", "1", "2", "x", "", "-1", "1.5"])),
    max_size=8).map(lambda rows: ("sequence,label\n" + "".join(f"{s},{l}\n" for s, l in rows)).encode())))
def test_bad_training_data_or_model_fails_before_any_run_directory(content):
    """Whatever the data, a run whose model cannot load leaves no run directory behind."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "data.csv").write_bytes(content)
        cfg = tiny_config(folder / "no-such-model", folder / "runs", "lora", data={"task": str(folder / "data.csv"), "max_train": None})
        with pytest.raises((DataError, ModelError)):
            train(cfg)
        assert not (folder / "runs").exists() or not any((folder / "runs").iterdir())


# ----------------------------------------------------------------------------------------- readers
fasta_texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(st.text(alphabet="ACGTNacgtn RYX\t", max_size=30), st.text(max_size=10).map(lambda t: ">" + t),
                       st.just(">"), st.just(""), st.just("\ufeff>x")), max_size=12).map("\n".join),
)


@fuzz(200)
@given(fasta_texts)
def test_fasta_text_parses_or_raises_a_data_error(text):
    for parse in (scan_fasta, parse_fasta_text, parse_fasta_records):
        try:
            parse(text, "<fuzz>")
        except DataError as exc:
            assert "<fuzz>" in str(exc)


@fuzz(100)
@given(st.one_of(st.binary(max_size=200), fasta_texts.map(lambda t: t.encode("utf-8"))), st.booleans(), st.booleans())
def test_fasta_files_read_or_raise_a_data_error(content, gzipped, truncate):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("in.fa.gz" if gzipped else "in.fa")
        data = gzip.compress(content) if gzipped else content
        path.write_bytes(data[: len(data) // 2] if truncate else data)
        for read in (read_fasta, read_fasta_input):
            try:
                read(path)
            except DataError as exc:
                assert str(path) in str(exc)


table_bytes = st.one_of(
    st.binary(max_size=200),
    st.lists(st.lists(st.text(alphabet='ACGT01,"\t \\x;', max_size=8), min_size=1, max_size=4).map(",".join),
             max_size=8).map(lambda rows: ("sequence,label\n" + "\n".join(rows)).encode()),
)


@fuzz(150)
@given(table_bytes, st.sampled_from(["in.csv", "in.tsv", "in.csv.gz"]))
def test_tables_read_or_raise_a_data_error(content, name):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(gzip.compress(content) if name.endswith(".gz") else content)
        try:
            frame, lines = read_table_frame(path)
        except DataError as exc:
            assert str(path) in str(exc)
        else:
            assert isinstance(frame, pd.DataFrame) and len(lines) == len(frame)
        try:
            read_csv_input(path)
        except DataError as exc:
            assert str(path) in str(exc)


@fuzz(200)
@given(st.text(max_size=60), st.sampled_from(["n", "reject"]))
def test_sequence_cleaning_returns_dna_or_raises_a_data_error(sequence, iupac):
    try:
        cleaned, _ = clean_sequence(sequence, "record 'x'", iupac)
    except DataError as exc:
        assert "record 'x'" in str(exc)
    else:
        assert set(cleaned) <= set("ACGTN")


# ---------------------------------------------------------------------------------- CLI entry points
@pytest.fixture(scope="module")
def tiny_run(tiny_bert_dir, tmp_path_factory) -> Path:
    """A finished 2-step LoRA run of the tiny BERT (max_length 128)."""
    out = tmp_path_factory.mktemp("fuzz_runs")
    return train(tiny_config(
        tiny_bert_dir, out, "lora", data={"max_train": 40, "max_eval": 20}, model={"dtype": "float32"},
        train={"max_steps": 2, "eval_every": 2},
    ))


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    done = run_cli(*argv)
    return done.returncode, done.stdout, done.stderr


def _answered_cleanly(code: int, err: str) -> None:
    assert code in (0, 1, 2), code
    assert "Traceback" not in err and "unexpected" not in err, err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) <= 1, err


def _not_an_option(text: str) -> bool:
    return not text.startswith("-")  # argparse would read it as an option (a sequence never starts with '-')


sequences = st.lists(st.one_of(st.text(alphabet="ACGTN", min_size=1, max_size=200), st.text(alphabet="ACGTacgtNRYX-*> ", max_size=30),
                               st.text(max_size=12)).filter(_not_an_option), min_size=1, max_size=3)


@fuzz(10)
@given(sequences, st.sampled_from([[], ["--rc"], ["--aggregate", "max"], ["--window", "60", "--stride", "25"], ["--strict"]]),
       st.sampled_from(["out.csv", "out.json", None]))
def test_predict_answers_any_input_and_writes_whole_files_only(tiny_run, seqs, options, out_name):
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / out_name if out_name else None
        argv = ["predict", str(tiny_run), *seqs, *options, *(["--out", str(out)] if out else [])]
        code, stdout, err = _run_cli(argv)
        _answered_cleanly(code, err)
        leftovers = [p.name for p in Path(folder).iterdir() if p != out]
        assert not leftovers, f"temporary files left: {leftovers}"
        if out is None or code != 0:
            assert out is None or not out.exists(), "a failed predict must not leave an output file"
            return
        if out.suffix == ".csv":
            assert len(pd.read_csv(out, keep_default_na=False)) == len(seqs)  # one row per record, all written
        else:
            assert isinstance(json.loads(out.read_text()), (dict, list))  # parses: written whole


@fuzz(4)
@given(st.lists(st.one_of(st.text(alphabet="ACGT", min_size=1, max_size=24), st.text(max_size=8)).filter(_not_an_option), min_size=1, max_size=2),
       st.sampled_from([["--method", "ism"], ["--method", "ig", "--n-steps", "2"], ["--method", "ism", "--target", "7"]]))
def test_attribute_answers_any_input(tiny_run, seqs, options):
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "attr.npz"
        code, _, err = _run_cli(["attribute", str(tiny_run), *seqs, *options, "--out", str(out)])
        _answered_cleanly(code, err)
        if code != 0:
            assert not out.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["attribute", "RUN", "ACGT", "--n-steps", "0"], None),  # argparse: exit status 2
        (["predict", "RUN", "ACGTACGT", "--out", "/nonexistent-folder/p.csv"], "does not exist"),
        (["attribute", "RUN", "ACGTACGT", "--html", "/nonexistent-folder/a.html"], "does not exist"),
        (["train", "configs/quickstart.yaml", "--set", "train.lr=[1,"], "not valid YAML"),
        (["train", "configs/quickstart.yaml", "--set", "run_name=../../x"], "folder name, not a path"),
        (["train", "configs/quickstart.yaml", "--set", "train.epochs=.inf"], "train.epochs must be a finite number"),
        (["evaluate", "/nonexistent-run"], "not a LINGO run directory"),
    ],
)
def test_cli_refuses_bad_arguments_in_one_line(tiny_run, argv, message):
    argv = [str(tiny_run) if a == "RUN" else a for a in argv]
    if message is None:
        with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(io.StringIO()):
            main(argv)
        assert exit_info.value.code == 2
        return
    code, _, err = _run_cli(argv)
    assert code == 2 and err.count("error:") == 1 and message in err, err


def test_the_last_resort_handler_prints_one_line_and_a_log(monkeypatch, tmp_path):
    """An exception nobody foresaw: one line naming it, the traceback in a log file, exit 1."""
    import lingo_core.cli as cli

    monkeypatch.setenv("LINGO_LOG_DIR", str(tmp_path))

    def broken(args):
        return {}["no such key"]

    monkeypatch.setattr(cli, "cmd_list_models", broken)
    code, _, err = _run_cli(["list-models"])
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("error: unexpected KeyError") and str(tmp_path) in line
    (log,) = tmp_path.glob("error-*.log")
    assert "Traceback" in log.read_text() and "no such key" in log.read_text()


# ------------------------------------------------------------------- values refused before any run directory
@pytest.mark.parametrize(
    "override, key",
    [
        ("train.lr=0", "train.lr must be > 0"),
        ("train.lr=-0.001", "train.lr must be > 0"),
        ("train.weight_decay=-0.1", "train.weight_decay must be >= 0"),
        ("adapter.lora.lora_dropout=1.0", r"adapter\.lora\.lora_dropout must be in \[0, 1\)"),
        ("adapter.lora.lora_dropout=-0.1", r"adapter\.lora\.lora_dropout must be in \[0, 1\)"),
        ("train.epochs=.inf", "train.epochs must be a finite number"),
        ("train.lr=.nan", "train.lr must be a finite number"),
        ("adapter.ars.temperature=.inf", "adapter.ars.temperature must be a finite number"),
        ("train.eval_batch_size=0", "train.eval_batch_size must be >= 1"),
        ("train.early_stopping_patience=-1", "train.early_stopping_patience must be >= 0"),
        ("train.warmup_ratio=1", r"train\.warmup_ratio must be in \[0\.0, 1\.0\)"),
        ("train.seed=-1", r"train\.seed must be in \[0, 4294967295\]"),
        ("data.split.test_fraction=0.95", "dev_fraction \\+ data.split.test_fraction must be < 1"),
        ("data.max_train=0", "data.max_train must be >= 1"),
        ("model.device=gpu", "model.device must be"),
        ("model.dtype=float8", "model.dtype must be one of"),
        ("model.dropout=1.0", r"model\.dropout must be in \[0\.0, 1\.0\)"),
        ("encoding.prefix='{sequence} {label}'", r"unknown field \{label\}"),
        ("run_name=../../x", "must be a folder name, not a path"),
        ("run_name=..", "must not start with '.'"),
    ],
)
def test_each_bad_value_is_refused_naming_its_key(override, key):
    with pytest.raises(ConfigError, match=key):
        _load(None, [override])


def test_patience_zero_means_off_and_an_empty_config_file_is_refused(tiny_bert_dir, tmp_path):
    from lingo_core.runs import load_run

    run = load_run(train(tiny_config(
        tiny_bert_dir, tmp_path / "runs", "lora", data={"max_train": 40, "max_eval": 20},
        train={"max_steps": 3, "eval_every": 1, "lr": 1e-9, "early_stopping_patience": 0},
    )))
    assert run.report()["steps_done"] == 3 and "early_stopped_at" not in run.status  # 0: off, as on the Train page
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    with pytest.raises(ConfigError, match="empty.yaml: the config file is empty"):
        _load(empty)


def test_max_length_above_the_models_positions_and_a_taken_run_name_fail_before_loading(tiny_bert_dir, tmp_path):
    with pytest.raises(ConfigError, match="encoding.max_length is 1024 tokens but model .* has only 512 positions"):
        train(tiny_config(tiny_bert_dir, tmp_path / "runs", "lora", encoding={"max_length": 1024}))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    with pytest.raises(ConfigError, match="run_name 'taken'.*already exists"):
        train(tiny_config(tmp_path / "not-even-loaded", tmp_path / "runs", "lora", run_name="taken"))
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        train(tiny_config(tiny_bert_dir, tmp_path / "file" / "runs", "lora"))


def test_a_one_class_split_names_the_label_as_written():
    import numpy as np

    from lingo_core.data.validation import require_two_classes

    with pytest.raises(DataError, match="the train split has only class 1 "):
        require_two_classes(np.zeros(5, dtype=int), "train", ["only_ones.csv"], label_names=["1"])
