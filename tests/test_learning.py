"""Did the model learn? :mod:`lingo_core.learning` on dev histories recorded by the medium study, in a
trained run's report and on the Runs page."""

from __future__ import annotations

import json

import pytest

from lingo_core import runs
from lingo_core.learning import LearningWarning, learning_findings

from .test_app import app, fake_run, no_exception, texts

# dev MCC per evaluation, copied from metrics.jsonl of medium-study cells (results/runs/medium_study, 2026-12-02)
COLLAPSED = [  # prom_core_tata, LoRA lr 1e-3, 4 epochs, seed 2: learnt, then chance from step 560 to the end
    (80, 0.348), (160, 0.341), (240, 0.304), (320, 0.34), (400, 0.323), (480, 0.387), (560, 0.0), (640, 0.0),
    (720, 0.0), (800, 0.0), (880, 0.0), (960, 0.0), (1040, 0.0), (1120, 0.023), (1200, 0.0), (1220, 0.0),
]
NEVER_LEARNT = [  # tf/4, LoRA lr 1e-3, seed 0 (test MCC 0.18): one evaluation just off chance
    (80, 0.0), (160, 0.0), (240, 0.0), (320, 0.093), (400, 0.0), (480, 0.0), (560, 0.0), (626, 0.0),
]
LATE_START = [  # tf/0, LoRA lr 1e-3, seed 0: at chance from step 160 to 400, then learnt
    (80, 0.126), (160, 0.0), (240, 0.0), (320, 0.0), (400, 0.0), (480, 0.368), (560, 0.383), (626, 0.38),
]
LEARNT = [  # prom_core_tata, LoRA lr 1e-3, 4 epochs, seed 0 (test MCC 0.645)
    (80, 0.397), (160, 0.383), (240, 0.383), (320, 0.399), (400, 0.481), (480, 0.499), (560, 0.506), (640, 0.586),
    (720, 0.589), (800, 0.539), (880, 0.612), (960, 0.596), (1040, 0.615), (1120, 0.661), (1200, 0.662), (1220, 0.665),
]


def history(evaluations, undefined_as_null: bool = False) -> list[dict]:
    """A metrics.jsonl history: a training-loss line per 40 steps and the dev evaluations."""
    records = []
    for step, mcc in evaluations:
        records.append({"step": step, "epoch": 0.1, "loss": 0.69, "lr": 1e-3})
        value = None if undefined_as_null and mcc == 0.0 else mcc
        records.append({"step": step, "epoch": 0, "dev_mcc": value, "dev_auroc": 0.5, "dev_loss": 0.69})
    return records


def test_a_collapse_is_found_at_the_first_evaluation_of_the_final_run_at_chance():
    (finding,) = learning_findings(history(COLLAPSED))
    assert finding.kind == "collapsed" and not finding.provisional
    assert (finding.best_step, finding.best_mcc, finding.collapse_step) == (480, 0.387, 560)
    assert "step-480 model" in finding.summary and "last 10 evaluations" in finding.summary
    assert finding.setting == "train.lr" and "lower" in finding.advice


def test_a_run_that_never_left_chance_is_found_whether_mcc_is_zero_or_undefined():
    for undefined in (False, True):
        (finding,) = learning_findings(history(NEVER_LEARNT, undefined_as_null=undefined))
        assert finding.kind == "never_learnt" and finding.best_mcc == 0.093 and finding.evaluations == 8
        assert "has not learnt:" in finding.summary


def test_runs_that_learnt_even_late_have_no_finding():
    assert learning_findings(history(LEARNT)) == []
    assert learning_findings(history(LATE_START)) == []


def test_while_training_findings_are_provisional_and_say_the_run_may_recover():
    (early,) = learning_findings(history(LATE_START[:5]), finished=False)  # what the page showed at step 400
    assert early.kind == "collapsed" and early.provisional and "may have collapsed" in early.summary
    (start,) = learning_findings(history(NEVER_LEARNT[:3]), finished=False)
    assert start.kind == "never_learnt" and "so far" in start.summary and "for a while" in start.advice


def test_one_evaluation_or_a_dip_that_recovers_is_not_a_finding():
    assert learning_findings(history(COLLAPSED[:1])) == []
    assert learning_findings(history(COLLAPSED[:7])) == []  # one evaluation at chance after the best
    assert learning_findings([{"step": "x", "dev_mcc": 0.0}, {"no": "step"}, "garbage"]) == []  # unreadable lines


def test_the_read_api_reads_findings_from_a_run_directory_and_never_raises(tmp_path):
    run_dir = fake_run(tmp_path, "collapsed")
    (run_dir / runs.METRICS).write_text("".join(json.dumps(r) + "\n" for r in history(COLLAPSED)))
    (finding,) = runs.Run(run_dir).learning_findings()
    assert finding.kind == "collapsed"
    (run_dir / runs.METRICS).write_bytes(b"\x00\xff{not json\n")
    assert runs.Run(run_dir).learning_findings() == []


def test_a_trained_run_reports_its_findings_and_warns(tiny_bert_dir, tmp_path):
    """A real run with a learning rate of zero cannot learn: the report says so, and training warns."""
    from lingo_core.train import train

    from .helpers import tiny_config

    cfg = tiny_config(tiny_bert_dir, tmp_path, method="lora", train={"lr": 1e-12, "max_steps": 6, "eval_every": 2})
    with pytest.warns(LearningWarning, match="has not learnt"):
        run_dir = train(cfg)
    run = runs.Run(run_dir)
    report = run.report()
    assert [f["kind"] for f in report["learning"]] == ["never_learnt"]
    assert report["learning"] == [f.to_dict() for f in run.learning_findings()]


def test_runs_page_warns_about_a_collapse_and_names_the_field_to_change(dashboard_runs_dir):
    run_dir = fake_run(dashboard_runs_dir, "20261125-100000-lora-demo_motifs-collapsed", method="lora")
    (run_dir / runs.METRICS).write_text("".join(json.dumps(r) + "\n" for r in history(COLLAPSED)))
    at = app("runs")
    no_exception(at)
    warning = texts(at.warning)
    assert "Training collapsed" in warning and "step-480 model" in warning
    assert "Learning rate" in warning and "Train page" in warning and "train.lr" not in warning


def test_a_study_cell_records_the_finding_and_the_table_shows_it(tmp_path):
    from lingo_core.study.runner import summarise_run
    from lingo_core.study.table import _detail

    class Cell:  # what summarise_run reads of a study cell
        @staticmethod
        def base_record() -> dict:
            return {"cell_id": "c"}

    run_dir = fake_run(tmp_path, "collapsed", method="lora")
    (run_dir / runs.METRICS).write_text("".join(json.dumps(r) + "\n" for r in history(COLLAPSED)))
    record = summarise_run(Cell(), runs.Run(run_dir), wall=1.0)
    assert record["learning"] == ["collapsed (best dev MCC 0.387 at step 480, chance from step 560)"]
    assert record["dev_curve"] == [[step, mcc] for step, mcc in COLLAPSED]
    assert _detail({**record, "detail": "best dev mcc over 16 evaluations"}) == (
        "best dev mcc over 16 evaluations; collapsed (best dev MCC 0.387 at step 480, chance from step 560)"
    )
    assert _detail({"detail": "x", "learning": "not a list"}) == "x"


def test_train_page_starts_each_method_at_its_recommended_learning_rate_and_warns_above_it(dashboard_runs_dir):
    from lingo_core.adapters import get_method

    at = app("train")
    no_exception(at)
    assert at.radio(key="train_method").value == "ars" and at.number_input(key="train_lr").value == pytest.approx(0.008)
    assert not at.warning  # the quickstart's rate is within 2x of ARS's recommended one
    at.radio(key="train_method").set_value("lora").run()
    no_exception(at)
    assert at.number_input(key="train_lr").value == pytest.approx(get_method("lora").recommended_lr) == pytest.approx(5e-4)
    assert "Recommended learning rate for LORA: 0.0005" in texts(at.caption)
    at.number_input(key="train_lr").set_value(0.004).run()
    assert "8× the one recommended for LORA" in texts(at.warning)
    at.radio(key="train_method").set_value("adalora").run()
    assert at.number_input(key="train_lr").value == pytest.approx(0.004) and not at.warning
