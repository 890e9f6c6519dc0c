"""Prediction on real code paths: inputs (FASTA/CSV edge cases), validation, windows, exports, cache, CLI.

Mechanics are tested on a seconds-long run of a tiny BERT (same tokenizer and code path as the
embedded MiniLM); tests/test_trained_runs.py checks that the trained MiniLM demo run's predictions mean something.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lingo_core import runs
from lingo_core.data import DataError, make_demo_task
from lingo_core.inference import logits_to_probs, predict_logits
from lingo_core.predict import load_predictor
from lingo_core.sequence_input import parse_fasta_records, read_csv_input, reverse_complement
from lingo_core.train import train
from tests.helpers import run_cli, tiny_config

DEMO = make_demo_task(n_train=4, n_dev=4, n_test=40, seed=123)


@pytest.fixture(scope="module")
def tiny_run(tiny_bert_dir, tmp_path_factory) -> Path:
    """A finished 4-step LoRA run of the tiny BERT on the demo task (max_length 128 tokens), in fp32 so that
    batching, padding and windows can be checked to 1e-5 (bf16 is checked on its own below)."""
    out = tmp_path_factory.mktemp("predict_runs")
    return train(tiny_config(tiny_bert_dir, out, "lora", model={"dtype": "float32"}, train={"max_steps": 4, "eval_every": 4}))


@pytest.fixture(scope="module")
def predictor(tiny_run):
    return load_predictor(tiny_run)


def _direct_probs(predictor, sequences: list[str]) -> np.ndarray:
    """Reference: encode each sequence alone and run the model one at a time (no batching, no windows)."""
    ids, n_truncated = predictor.encoder.encode_batch(sequences)
    assert n_truncated == 0
    logits = predict_logits(predictor.model, ids, predictor.pad_id, 1, predictor.device)
    return logits_to_probs(logits, predictor.multi_label)


# --------------------------------------------------------------------------------------- inputs


def test_fasta_edge_cases_are_reported_per_record_and_the_rest_scored(predictor, tmp_path):
    seqs = DEMO.test.sequences
    wrapped = "\r\n".join(seqs[0][i : i + 30] for i in range(0, 100, 30))  # wrapped lines, Windows endings
    text = (
        f">first some description\r\n{wrapped}\r\n"
        f">lower\r\n{seqs[1].lower()}\r\n"
        ">empty\r\n"
        f">bad\r\n{seqs[2][:50]}X{seqs[2][51:]}\r\n"
        f">first\r\n{seqs[3]}\r\n"  # duplicate id
        f">iupac\r\n{seqs[4][:10]}RY{seqs[4][12:]}\r\n"
    )
    path = tmp_path / "in.fa"
    path.write_bytes(("\ufeff" + text).encode())

    from lingo_core.sequence_input import read_fasta_input

    records = read_fasta_input(path)
    assert [r.id for r in records] == ["first", "lower", "empty", "bad", "first", "iupac"]
    assert records[0].sequence == seqs[0]

    result = predictor.predict(records)
    frame = result.to_frame()
    assert frame["id"].tolist() == ["first", "lower", "empty", "bad", "first", "iupac"]
    scored = frame["error"] == ""
    assert scored.tolist() == [True, True, False, False, True, True]
    # errors name the file, the record and the fix
    empty_error, bad_error = frame.loc[2, "error"], frame.loc[3, "error"]
    assert "record 'empty'" in empty_error and "empty sequence" in empty_error and "Fix" in empty_error
    assert "record 'bad'" in bad_error and "'X' at position 51" in bad_error and str(path) in bad_error
    assert frame.loc[~scored, ["prob_negative", "prob_positive"]].isna().all().all()
    # lower case is upper-cased and scored exactly like the upper-case sequence
    assert frame.loc[1, "sequence"] == seqs[1]
    expected = _direct_probs(predictor, [seqs[0], seqs[1], seqs[3]])
    np.testing.assert_allclose(frame.loc[[0, 1, 4], ["prob_negative", "prob_positive"]].to_numpy(), expected, atol=1e-5)
    # duplicate ids are kept (both rows) and flagged; IUPAC codes become N and are counted
    assert frame["duplicate_id"].tolist() == [False, False, False, False, True, False]
    assert frame.loc[5, "iupac_replaced"] == 2 and frame.loc[5, "n_fraction"] == pytest.approx(0.02)
    assert len(result.errors) == 2

    with pytest.raises(DataError, match="record 'empty'.*empty sequence"):
        predictor.predict(records, strict=True)
    with pytest.raises(DataError, match="duplicate id"):
        predictor.predict([records[0], records[4]], strict=True)


def test_fasta_header_problems():
    records = parse_fasta_records(">\nACGT\n>ok\nACGT\n", "x.fa")
    assert records[0].error and "empty FASTA header" in records[0].error and records[1].error is None
    with pytest.raises(DataError, match="x.fa, line 1: sequence data before the first '>'"):
        parse_fasta_records("ACGT\n>a\nACGT\n", "x.fa")
    with pytest.raises(DataError, match="no FASTA records"):
        parse_fasta_records("\n\n", "x.fa")


def test_csv_input_ids_and_export_columns(predictor, tmp_path):
    seqs = DEMO.test.sequences[:3]
    path = tmp_path / "in.csv"
    path.write_bytes(("id,sequence\r\n" + f"a,{seqs[0]}\r\nb,{seqs[1].lower()}\r\n\r\nc,\r\nd,{seqs[2]}\r\n").encode())
    records = read_csv_input(path)
    assert [r.id for r in records] == ["a", "b", "c", "d"]
    result = predictor.predict(records)
    frame = result.to_frame()
    assert list(frame.columns[:5]) == ["id", "sequence", "prob_negative", "prob_positive", "predicted"]
    assert {"n_fraction", "n_windows", "aggregation", "rc_averaged", "duplicate_id", "error"} <= set(frame.columns)
    assert "line 5 (id 'c')" in frame.loc[2, "error"]  # blank line 4 is skipped, the line number is still right
    assert frame.loc[[0, 1, 3], "predicted"].isin(["negative", "positive"]).all()

    out_csv = result.save(tmp_path / "out.csv")
    back = pd.read_csv(out_csv, keep_default_na=False)
    assert back["id"].tolist() == ["a", "b", "c", "d"]
    np.testing.assert_allclose(back.loc[[0, 1, 3], "prob_positive"].astype(float), frame.loc[[0, 1, 3], "prob_positive"], atol=1e-6)

    out_json = json.loads(result.save(tmp_path / "out.json").read_text())
    assert out_json["aggregation"].startswith("mean") and out_json["n_errors"] == 1
    first = out_json["predictions"][0]
    assert set(first["probabilities"]) == {"negative", "positive"} and first["flags"]["n_windows"] == 1
    assert sum(first["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)

    # ids from file:line when there is no id column; a missing column names what was found
    path2 = tmp_path / "noid.csv"
    path2.write_text(f"sequence\n{seqs[0]}\n")
    assert read_csv_input(path2)[0].id == "noid.csv:2"
    with pytest.raises(DataError, match=r"no column 'seq'.*columns found: \['sequence'\]"):
        read_csv_input(path2, sequence_column="seq")


# --------------------------------------------------------------------------------------- scoring


def test_batching_and_padding_do_not_change_predictions(predictor):
    # lengths differ, so batches mix padded and unpadded rows
    seqs = [s[: 40 + 7 * i] for i, s in enumerate(DEMO.test.sequences[:9])]
    batched = predictor.predict(seqs, batch_size=4).probabilities
    np.testing.assert_allclose(batched, _direct_probs(predictor, seqs), atol=1e-5)


def test_sliding_windows_agree_with_a_single_window_on_sequences_that_fit(predictor):
    seqs = DEMO.test.sequences[:6]
    default = predictor.predict(seqs)
    assert (default.to_frame()["n_windows"] == 1).all()
    single = _direct_probs(predictor, seqs)
    np.testing.assert_allclose(default.probabilities, single, atol=1e-5)
    # forcing the window path with a window as long as the sequence changes nothing
    forced = predictor.predict(seqs, window=100, stride=50)
    np.testing.assert_allclose(forced.probabilities, single, atol=1e-5)
    assert (forced.to_frame()["n_windows"] == 1).all()


def test_long_sequences_are_scored_in_windows_and_aggregated(predictor):
    long_seq = "".join(DEMO.test.sequences[:8])  # 800 nt: does not fit 128 tokens
    window = predictor.window_nt
    assert len(long_seq) > window
    result = predictor.predict([long_seq])
    row = result.rows[0]
    starts = list(range(0, len(long_seq) - window + 1, window // 2))
    if starts[-1] + window < len(long_seq):
        starts.append(len(long_seq) - window)
    assert row.n_windows == len(starts) and row.windows_truncated == 0
    per_window = _direct_probs(predictor, [long_seq[s : s + window] for s in starts])
    np.testing.assert_allclose(row.probabilities, per_window.mean(axis=0), atol=1e-5)
    maxed = predictor.predict([long_seq], aggregate="max").rows[0]
    np.testing.assert_allclose(maxed.probabilities, per_window.max(axis=0), atol=1e-5)
    assert "max" in predictor.predict([long_seq], aggregate="max").to_dict()["aggregation"]

    # an explicit window and stride
    custom = predictor.predict([long_seq], window=300, stride=100).rows[0]
    assert custom.n_windows == len(range(0, 800 - 300 + 1, 100))
    with pytest.raises(ValueError, match="stride 400 nt is larger than the window 300 nt"):
        predictor.predict([long_seq], window=300, stride=400)


def test_reverse_complement_averaging(predictor):
    seqs = DEMO.test.sequences[:4]
    assert reverse_complement("AACGTN") == "NACGTT"
    averaged = predictor.predict(seqs, reverse_complement=True)
    expected = (_direct_probs(predictor, seqs) + _direct_probs(predictor, [reverse_complement(s) for s in seqs])) / 2
    np.testing.assert_allclose(averaged.probabilities, expected, atol=1e-5)
    assert averaged.to_frame()["rc_averaged"].all()


def _touch(path: Path) -> None:
    """Give ``path`` a new modification time, as rewriting it would."""
    later = time.time_ns() + 10**9
    os.utime(path, ns=(later, later))


def test_loading_is_cached_until_the_weights_change(tiny_run, tmp_path):
    seqs = DEMO.test.sequences[:4]
    first = load_predictor(tiny_run)
    assert load_predictor(tiny_run) is first and load_predictor(str(tiny_run)) is first  # no reload
    stamp = runs.load_run(tiny_run).weights_stamp()
    _touch(tiny_run / runs.ADAPTER / runs.EXPORT_INFO)  # a new export
    assert runs.load_run(tiny_run).weights_stamp() != stamp
    second = load_predictor(tiny_run)
    assert second is not first and load_predictor(tiny_run) is second
    np.testing.assert_allclose(second.probabilities(seqs), first.probabilities(seqs), atol=1e-6)

    # a run still training (no export yet) is loaded from its best checkpoint, reloaded when that is rewritten
    training = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, training, ignore=shutil.ignore_patterns(runs.ADAPTER))
    from_best = load_predictor(training)
    assert from_best.trained.source == "best-checkpoint" and load_predictor(training) is from_best
    np.testing.assert_allclose(from_best.probabilities(seqs), first.probabilities(seqs), atol=1e-5)
    _touch(training / runs.CHECKPOINT / runs.BEST_FILE)
    assert load_predictor(training) is not from_best


def test_multi_label_runs_report_per_label_probabilities(tiny_bert_dir, tmp_path):
    rng = np.random.default_rng(0)
    seqs = DEMO.test.sequences
    rows = ["sequence,tata,ccaat"] + [f"{s},{int('TATA' in s)},{int(rng.random() < 0.5)}" for s in seqs * 3]
    data = tmp_path / "multi.csv"
    data.write_text("\n".join(rows) + "\n")
    cfg = tiny_config(
        tiny_bert_dir, tmp_path / "runs", "lora",
        data={"task": str(data), "label_columns": ["tata", "ccaat"], "max_train": None, "max_eval": None},
        train={"max_steps": 2, "eval_every": 2},
    )
    predictor = load_predictor(train(cfg))
    result = predictor.predict(seqs[:5], threshold=0.0)
    frame = result.to_frame()
    assert ["prob_tata", "prob_ccaat"] == [c for c in frame.columns if c.startswith("prob_")]
    assert (frame["predicted"] == "tata;ccaat").all()  # threshold 0: every label
    assert result.to_dict()["probability"] == "sigmoid per label"
    assert (predictor.predict(seqs[:5], threshold=1.01).to_frame()["predicted"] == "").all()


# --------------------------------------------------------------------------------------- CLI




def test_cli_predict_fasta_to_csv_and_raw_sequences_to_stdout(tiny_run, tmp_path):
    fasta = tmp_path / "in.fa"
    fasta.write_text(f">a\n{DEMO.test.sequences[0]}\n>b\nACGTXX\n")
    out = tmp_path / "out.csv"
    done = run_cli("predict", str(tiny_run), "--fasta", str(fasta), "--out", str(out), "--rc")
    assert done.returncode == 0, done.stderr
    assert "not scored:" in done.stderr and "record 'b'" in done.stderr
    frame = pd.read_csv(out, keep_default_na=False)
    assert frame["id"].tolist() == ["a", "b"] and frame.loc[0, "predicted"] in ("negative", "positive")
    assert bool(frame.loc[0, "rc_averaged"]) is True

    done = run_cli("predict", str(tiny_run), DEMO.test.sequences[1], "acgtacgtacgt")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("id,sequence,prob_negative,prob_positive,predicted") and len(lines) == 3

    done = run_cli("predict", str(tiny_run), "--fasta", str(fasta), "--strict")
    assert done.returncode == 2 and "record 'b'" in done.stderr


def test_bf16_predictions_agree_with_fp32(tiny_bert_dir, tmp_path):
    """model.dtype bfloat16 (what auto picks on AMX CPUs): the same run's predictions within bf16 rounding."""
    run_dir = train(tiny_config(tiny_bert_dir, tmp_path, "lora", model={"dtype": "bfloat16"}, train={"max_steps": 4, "eval_every": 4}))
    fast = load_predictor(run_dir)
    assert fast.trained.loaded.precision == "bf16"
    sequences = DEMO.test.sequences[:12]
    ids, _ = fast.encoder.encode_batch(sequences)
    bf16 = logits_to_probs(fast.logits_of_ids(ids), fast.multi_label)
    fp32 = logits_to_probs(fast.logits_of_ids(ids, precision="no"), fast.multi_label)
    np.testing.assert_allclose(bf16, fp32, atol=5e-3)
    assert (bf16.argmax(1) == fp32.argmax(1)).mean() >= 0.9
