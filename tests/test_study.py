"""Studies: grid expansion, resumability, the tidy table, the k-mer baseline, a tiny end-to-end study."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lingo_core import runs
from lingo_core.study import (
    TABLE_COLUMNS,
    StudyError,
    StudyInterrupted,
    POOLED,
    build_table,
    choose_on_dev,
    compare_methods,
    expand,
    kmer_logistic_regression,
    load_study,
    read_record,
    recover_records,
    run_study,
    write_report,
    write_table,
)
from lingo_core.study.cells import cell_identity
from lingo_core.study.records import write_record
from tests.conftest import PROJECT_ROOT
from tests.helpers import cli_dying_after_checkpoint, run_cli

SMOKE = PROJECT_ROOT / "studies" / "smoke.yaml"
CPU_STUDY = PROJECT_ROOT / "studies" / "cpu_study.yaml"


def _spec(tmp_path: Path, model_dir: Path, **extra) -> dict:
    """A tiny study: the demo task, the tiny random BERT, 8 optimizer steps per cell."""
    spec = {
        "name": "tiny",
        "output_dir": str(tmp_path / "out"),
        "work_dir": str(tmp_path / "work"),
        "seeds": [0, 1],
        "base": {
            "model": {"name": str(model_dir)},
            "data": {"task": "demo/motifs", "max_train": 80, "max_eval": 40, "duplicates": "remove"},
            "encoding": {"max_length": 128},
            "adapter": {"lora": {"r": 4}, "adalora": {"init_r": 4, "target_r": 2, "tinit": 1, "tfinal": 2, "deltaT": 2}},
            "train": {"epochs": 1, "batch_size": 10, "max_steps": 8, "eval_every": 4, "lr": 0.003, "warmup_ratio": 0.0, "progress_bar": False},
        },
        "methods": {
            "kmer_lr": {"baseline": "kmer_lr", "k": [3, 4], "C": [1.0]},
            "lora": {"adapter": {"method": "lora"}},
            "ars": {"adapter": {"method": "ars"}},
        },
        "grids": [
            {"name": "main", "tasks": ["demo/motifs"], "methods": ["kmer_lr", "lora", "ars"]},
            {"name": "rho", "tasks": ["demo/motifs"], "methods": ["ars"], "seeds": [0], "vary": {"adapter.ars.reintroduce_rate": [0.0, 0.1]}},
        ],
        "comparisons": [{"method": "ars", "label": "ARS", "name": "ARS minus LoRA", "against": ["lora"]}],
    }
    spec.update(extra)
    return spec


# -- expansion ---------------------------------------------------------------------------------


def test_grid_expansion_merges_identical_cells_and_labels_rows(tmp_path):
    study = load_study(spec=_spec(tmp_path, Path("/nonexistent-model")))
    cells = expand(study)
    # kmer (one deterministic fit for both seeds) + lora x2 + ars x2 + ars rho=0 (rho=0.1 seed 0 is main's ars)
    assert len(cells) == 6
    kmer = [c for c in cells if c.method == "kmer_lr"]
    assert len(kmer) == 1 and [seed for _, _, seed in kmer[0].rows] == [0, 1]
    shared = [c for c in cells if c.method == "ars" and c.seed == 0 and c.config["adapter"]["ars"]["reintroduce_rate"] == 0.1]
    assert len(shared) == 1 and shared[0].groups == ["main", "rho"]
    assert ("rho", "adapter.ars.reintroduce_rate=0.1", 0) in shared[0].rows
    rho0 = [c for c in cells if c.config["adapter"]["ars"]["reintroduce_rate"] == 0.0]
    assert len(rho0) == 1 and rho0[0].rows == [("rho", "adapter.ars.reintroduce_rate=0.0", 0)]
    for cell in cells:
        assert cell.config["data"]["task"] == "demo/motifs"
        assert cell.config["train"]["seed"] == cell.seed
    # ids are stable: expanding again gives the same cells
    assert [c.cell_id for c in expand(study)] == [c.cell_id for c in cells]
    ids = {c.cell_id for c in cells}
    by_method = lambda cs, m: {c.cell_id for c in cs if c.method == m}  # noqa: E731
    # a key added later (adapter.adalora.lambda_lr_scale) leaves ids alone at its neutral default, not otherwise
    spec = _spec(tmp_path, Path("/nonexistent-model"))
    spec["base"]["adapter"]["adalora"]["lambda_lr_scale"] = 1.0
    assert [c.cell_id for c in expand(load_study(spec=spec))] == [c.cell_id for c in cells]
    spec["base"]["adapter"]["adalora"]["lambda_lr_scale"] = 4.0
    scaled = expand(load_study(spec=spec))
    assert not by_method(scaled, "ars") & ids and len(by_method(scaled, "ars")) == len(by_method(cells, "ars"))
    # data.augment at "none" keeps every id; augmenting is a new cell for the networks and the regression alike
    spec = _spec(tmp_path, Path("/nonexistent-model"))
    spec["base"]["data"]["augment"] = "none"
    assert [c.cell_id for c in expand(load_study(spec=spec))] == [c.cell_id for c in cells]
    spec["base"]["data"]["augment"] = "reverse_complement"
    assert not {c.cell_id for c in expand(load_study(spec=spec))} & ids
    # so does data.eval_strands at "given"; scoring on both strands is a new cell for both as well
    spec = _spec(tmp_path, Path("/nonexistent-model"))
    spec["base"]["data"]["eval_strands"] = "given"
    assert [c.cell_id for c in expand(load_study(spec=spec))] == [c.cell_id for c in cells]
    spec["base"]["data"]["eval_strands"] = "both"
    assert not {c.cell_id for c in expand(load_study(spec=spec))} & ids
    # data.crop at 0 keeps every id; cropping is a new cell for the networks only (the regression reads sequences whole)
    spec = _spec(tmp_path, Path("/nonexistent-model"))
    spec["base"]["data"]["crop"] = 0
    assert [c.cell_id for c in expand(load_study(spec=spec))] == [c.cell_id for c in cells]
    spec["base"]["data"]["crop"] = 5
    cropped = expand(load_study(spec=spec))
    assert {c.cell_id for c in cropped if c.kind == "train"}.isdisjoint(ids)
    assert {c.cell_id for c in cropped if c.kind != "train"} == {c.cell_id for c in cells if c.kind != "train"}
    # model.dropout at null (the backbone's own rates) keeps the id of a cell recorded before the key existed;
    # 0 is a new cell for the networks only
    lora = next(c for c in cells if c.method == "lora")
    recorded_before = copy.deepcopy(lora.config)
    del recorded_before["model"]["dropout"]
    assert cell_identity(recorded_before) == cell_identity(lora.config) == lora.cell_id.rsplit("-", 1)[1]
    spec = _spec(tmp_path, Path("/nonexistent-model"))
    spec["base"]["model"]["dropout"] = 0.0
    no_dropout = expand(load_study(spec=spec))
    assert {c.cell_id for c in no_dropout if c.kind == "train"}.isdisjoint(ids)
    assert {c.cell_id for c in no_dropout if c.kind != "train"} == {c.cell_id for c in cells if c.kind != "train"}
    # encoding.nucleotide_init matters only for the nucleotide encoding: other cells keep their ids at any value
    trained = lambda cs: [c for c in cs if c.kind == "train"]  # noqa: E731
    for init in ("mean", "letters"):
        spec = _spec(tmp_path, Path("/nonexistent-model"))
        spec["base"]["encoding"]["nucleotide_init"] = init
        assert [c.cell_id for c in expand(load_study(spec=spec))] == [c.cell_id for c in cells]
    # the k-mer settings change nothing for the native encoding: a native cell in a grid that sets k keeps its id
    spec = _spec(tmp_path, Path("/nonexistent-model"))
    spec["base"]["encoding"].update(k=1, kmer_stride=1)
    assert [c.cell_id for c in expand(load_study(spec=spec))] == [c.cell_id for c in cells]
    spec["base"]["encoding"]["sequence"] = "kmer"
    assert not {c.cell_id for c in trained(expand(load_study(spec=spec)))} & ids
    # a nucleotide cell run before the key existed (mean rows) keeps its id at mean and gets a new one with letters
    spec = _spec(tmp_path, Path("/nonexistent-model"))
    spec["base"]["encoding"].update(sequence="nucleotide", nucleotide_init="mean")
    mean_cells = trained(expand(load_study(spec=spec)))
    before_key = copy.deepcopy(mean_cells[0].config)
    before_key["encoding"].pop("nucleotide_init")
    assert mean_cells[0].cell_id.endswith("-" + cell_identity(before_key))
    spec["base"]["encoding"]["nucleotide_init"] = "letters"
    letter_ids = {c.cell_id for c in trained(expand(load_study(spec=spec)))}
    assert len(letter_ids) == len(mean_cells) and not letter_ids & {c.cell_id for c in mean_cells}
    # a cell's id covers only the adapter sections its method reads: LoRA ignores AdaLoRA's and ARS's
    assert by_method(scaled, "lora") == by_method(cells, "lora") and by_method(scaled, "kmer_lr") == by_method(cells, "kmer_lr")
    spec = _spec(tmp_path, Path("/nonexistent-model"))
    spec["base"]["adapter"]["ars"] = {"temperature": "uniform"}
    uniform = expand(load_study(spec=spec))
    assert by_method(uniform, "lora") == by_method(cells, "lora") and not by_method(uniform, "ars") & ids
    spec["base"]["adapter"]["lora"]["r"] = 8  # every method built on LoRA reads its section
    assert not ({c.cell_id for c in expand(load_study(spec=spec)) if c.method != "kmer_lr"} & ids)


def test_registering_a_method_leaves_existing_cell_ids_alone(tmp_path):
    from dataclasses import dataclass

    from lingo_core.adapters import MethodSpec, register_method, unregister_method

    @dataclass
    class ToySettings:
        strength: float = 0.5

    before = [c.cell_id for c in expand(load_study(spec=_spec(tmp_path, Path("/m"))))]
    register_method(MethodSpec("toy_study_method", "a toy", model="lingo_core.adapters.lora.model:LoRA", settings=ToySettings))
    try:
        cells = expand(load_study(spec=_spec(tmp_path, Path("/m"))))
        assert all("toy_study_method" in c.config["adapter"] for c in cells if c.kind == "train")  # resolved with its section
        assert [c.cell_id for c in cells] == before
    finally:
        unregister_method("toy_study_method")


def test_a_methods_task_overrides_apply_to_that_method_on_matching_tasks_only(tmp_path):
    spec = _spec(tmp_path, Path("/m"))
    spec["grids"] = [{"name": "main", "tasks": ["demo/motifs", "gue/tf/0"], "methods": ["kmer_lr", "lora", "ars"], "seeds": [0]}]
    before = {(c.task, c.method): c for c in expand(load_study(spec=spec))}
    spec["methods"]["lora"]["task_overrides"] = {"gue/tf/*": {"train": {"lr": 0.0005}}}
    after = {(c.task, c.method): c for c in expand(load_study(spec=spec))}
    changed = {key for key in after if after[key].cell_id != before[key].cell_id}
    assert changed == {("gue/tf/0", "lora")}  # not LoRA elsewhere, not ARS or the regression on the TF task
    assert after[("gue/tf/0", "lora")].config["train"]["lr"] == 0.0005
    assert after[("demo/motifs", "lora")].config["train"]["lr"] == 0.003
    # a grid's set still wins over the method's task override: it is the cell the grid asks for
    spec["grids"].append({"name": "fixed", "tasks": ["gue/tf/0"], "methods": ["lora"], "seeds": [0], "set": {"train": {"lr": 0.002}}})
    fixed = [c for c in expand(load_study(spec=spec)) if "fixed" in c.groups]
    assert [c.config["train"]["lr"] for c in fixed] == [0.002]
    # misuse names the key
    bad = _spec(tmp_path, Path("/m"))
    bad["methods"]["lora"]["task_overrides"] = [{"train": {"lr": 0.1}}]
    with pytest.raises(StudyError, match=r"methods\.lora\.task_overrides must map task globs"):
        load_study(spec=bad)
    bad = _spec(tmp_path, Path("/m"))
    bad["methods"]["kmer_lr"]["task_overrides"] = {"*": {"C": [1.0]}}
    with pytest.raises(StudyError, match=r"methods\.kmer_lr: task_overrides is for trained methods"):
        load_study(spec=bad)
    bad = _spec(tmp_path, Path("/m"))
    bad["methods"]["lora"]["task_overrides"] = {"demo/*": {"train": {"lr": -1}}}
    with pytest.raises(StudyError, match="lr"):
        load_study(spec=bad)


def test_axes_sets_profiles_and_order(tmp_path):
    spec = _spec(tmp_path, Path("/m"))
    spec["sets"] = {"tasks": ["demo/motifs"], "adapters": ["lora", "ars"]}
    spec["grids"] = [
        {"name": "enc", "tasks": "tasks", "methods": ["adapters"], "encodings": ["native", "nucleotide"], "prefixes": ["paper", "none"]},
    ]
    spec["order"] = "seeds_first"
    spec["profiles"] = {"big": {"seeds": [0, 1, 2], "base": {"train": {"max_steps": 100}}}}
    study = load_study(spec=spec)
    cells = expand(study)
    assert len(cells) == 2 * 2 * 2 * 2  # methods x encodings x prefixes x seeds
    assert {(c.encoding, c.prefix) for c in cells} == {("native", "paper"), ("native", "none"), ("nucleotide", "paper"), ("nucleotide", "none")}
    assert [c.seed for c in cells] == [0] * 8 + [1] * 8  # seeds_first
    spec2 = {**spec, "order": "tasks_first", "grids": [
        {"name": "a", "tasks": ["demo/motifs", "gue/tf/0"], "methods": ["lora"]},
        {"name": "b", "tasks": ["demo/motifs", "gue/tf/0"], "methods": ["ars"]},
    ]}
    assert [(c.task, c.method) for c in expand(load_study(spec=spec2)) if c.seed == 0] == [
        ("demo/motifs", "lora"), ("demo/motifs", "ars"), ("gue/tf/0", "lora"), ("gue/tf/0", "ars")]
    big = load_study(spec=spec, scale="big")
    big_cells = expand(big)
    assert len(big_cells) == 24 and all(c.config["train"]["max_steps"] == 100 for c in big_cells)
    assert big.spec["scale"] == "big"
    assert not {c.cell_id for c in big_cells} & {c.cell_id for c in cells}  # a changed setting is a new cell


def test_bad_study_files_name_the_problem(tmp_path):
    spec = _spec(tmp_path, Path("/m"))
    spec["grids"][0]["methods"] = ["lora", "dora"]
    with pytest.raises(StudyError, match="dora"):
        load_study(spec=spec)
    spec = _spec(tmp_path, Path("/m"))
    spec["grids"][0]["vary"] = {"adapter.ars.reintroduce_rate": [1.5]}
    with pytest.raises(StudyError, match="reintroduce_rate"):
        load_study(spec=spec)
    with pytest.raises(StudyError, match="scale 'huge'"):
        load_study(spec=_spec(tmp_path, Path("/m")), scale="huge")
    with pytest.raises(StudyError, match="unknown key"):
        load_study(spec={**_spec(tmp_path, Path("/m")), "gridz": []})


@pytest.mark.parametrize(
    ("comparisons", "message"),
    [
        ({"method": "ars", "against": ["lora"]}, r"comparisons must be a list"),
        ([{"method": "ars", "against": ["dora"]}], r"comparisons\[0\]\.against: 'dora'"),
        ([{"method": "ars", "against": []}], r"comparisons\[0\]\.against is required"),
        ([{"method": "ars", "against": ["ars"]}], r"comparisons\[0\]\.against: 'ars'"),
        ([{"method": "dora", "against": ["lora"]}], r"comparisons\[0\]\.method .* got 'dora'"),
        ([{"method": "ars", "against": ["lora"], "metrics": ["test_loss"]}], r"comparisons\[0\]\.metrics"),
        ([{"method": "ars", "against": ["lora"], "groups": ["nope"]}], r"comparisons\[0\]\.groups: \['nope'\]"),
        ([{"method": "ars", "against": ["lora"], "pooled": "yes"}], r"comparisons\[0\]\.pooled must be true or false"),
        ([{"method": "ars", "against": ["lora"]}, {"method": "ars", "vs": ["lora"]}], r"comparisons\[1\]: unknown key\(s\) \['vs'\]"),
    ],
)
def test_invalid_comparisons_name_the_key(tmp_path, comparisons, message):
    with pytest.raises(StudyError, match=message):
        load_study(spec=_spec(tmp_path, Path("/m"), comparisons=comparisons))


def test_committed_study_files_expand():
    cpu = load_study(CPU_STUDY)
    cells = expand(cpu)
    tasks = {c.task for c in cells}
    gue_full = {"gue/prom_core_all", "gue/prom_core_notata", "gue/prom_core_tata", "gue/prom_300_tata", *(f"gue/tf/{i}" for i in range(5))}
    assert gue_full <= tasks and {"gue/EMP/H3", "gue/EMP/H4"} <= tasks
    methods = {c.method for c in cells}
    assert {"kmer_lr", "head", "lora", "adalora", "ars", "ars_paper", "full"} <= methods
    for cell in cells:
        if cell.kind == "train":
            assert cell.config["train"]["max_steps"] is not None  # the CPU study is step-capped
            assert cell.config["data"]["duplicates"] == "remove"
    main_seeds = {c.seed for c in cells if "main" in c.groups and c.method == "ars"}
    assert len(main_seeds) >= 3
    full = expand(load_study(CPU_STUDY, scale="full"))
    assert all(c.config["data"]["max_train"] is None for c in full if c.kind == "train")
    assert {"gue/EMP/H3K36me3", "gue/prom_300_tata"} <= {c.task for c in full if "main" in c.groups}
    assert len(expand(load_study(SMOKE))) > 0


# -- report pieces -------------------------------------------------------------------------------


def _rows(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame({"status": ["done"] * n, "setting": [""] * n, **columns})


def test_paired_comparison_per_task_and_pooled_over_tasks():
    # ARS beats LoRA by exactly 0.1 on every seed of task a and 0.05 on task b; equals AdaLoRA on task a
    table = _rows(
        task=["a"] * 9 + ["b"] * 6,
        method=["ars", "lora", "adalora"] * 3 + ["ars", "lora"] * 3,
        seed=[0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 1, 1, 2, 2],
        test_mcc=[0.5, 0.4, 0.5, 0.6, 0.5, 0.6, 0.3, 0.2, 0.3, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2],
    )
    comp = compare_methods(table, "ars", ["lora", "adalora"]).set_index(["task", "vs"])
    assert comp.loc[("a", "lora"), "diff"] == pytest.approx(0.1) and comp.loc[("a", "adalora"), "verdict"] == "same"
    assert comp.loc[("b", "lora"), "seeds"] == 3 and comp.loc[("b", "lora"), "diff"] == pytest.approx(0.05)
    pooled = comp.loc[(POOLED, "lora")]
    assert pooled["seeds"] == 6 and pooled["diff"] == pytest.approx(0.075)
    assert pooled["verdict"] == "better"  # six positive paired differences with a small spread
    assert (POOLED, "adalora") in comp.index and comp.loc[(POOLED, "adalora"), "seeds"] == 3
    # one task: no pooled row
    assert POOLED not in set(compare_methods(table[table["task"] == "a"], "ars", ["lora"])["task"])


def test_three_seeds_need_the_t_distribution_not_two_standard_errors():
    # mean 0.03, se 0.0115: beyond 2 se, but the paired t interval with 2 degrees of freedom (±4.30 se) holds 0
    table = _rows(task=["a"] * 6, method=["ars", "lora"] * 3, seed=[0, 0, 1, 1, 2, 2], test_mcc=[0.41, 0.40, 0.43, 0.40, 0.45, 0.40])
    row = compare_methods(table, "ars", ["lora"]).iloc[0]
    assert row["diff"] == pytest.approx(0.03) and row["verdict"] == "tie"
    assert row["ci95"] == "[-0.020, +0.080]" and 0.1 < float(row["p"]) < 0.15


def test_prediction_disagreement_and_test_set_bootstrap_from_saved_predictions(tmp_path):
    from lingo_core.study.stats import add_prediction_statistics

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    run_dirs = {}
    for method, flip in (("ars", 0.1), ("adalora", 0.3)):
        for seed in (0, 1):
            writer = runs.RunWriter.create(tmp_path, "{}", method, "t", f"{method}-{seed}")
            wrong = rng.random(400) < flip
            predicted = np.where(wrong, 1 - labels, labels)
            probs = np.stack([1 - predicted * 0.8 - 0.1, predicted * 0.8 + 0.1], axis=1)
            writer.write_predictions("test", labels, probs, ["no", "yes"])
            run_dirs[(method, seed)] = str(writer.path)
    table = _rows(task=["t"] * 4, method=["ars", "adalora"] * 2, seed=[0, 0, 1, 1], test_mcc=[0.8, 0.4, 0.8, 0.4],
                  run_dir=[run_dirs[("ars", 0)], run_dirs[("adalora", 0)], run_dirs[("ars", 1)], run_dirs[("adalora", 1)]])
    comp = add_prediction_statistics(compare_methods(table, "ars", ["adalora"]), table, "ars", "test_mcc")
    row = comp.iloc[0]
    assert 0.25 < row["disagree"] < 0.45  # about 0.1 * 0.7 + 0.3 * 0.9 of the sequences differ
    low, high = (float(v) for v in row["boot95"].strip("[]").split(","))
    assert 0.2 < low < high < 0.6  # ARS's MCC is clearly higher, and the interval reflects 400 test sequences


def test_bootstrap_scorers_match_scikit_learn_on_resamples_with_repeats_and_ties():
    """The bootstrap's fast MCC and AUROC give scikit-learn's values on the same resampled rows."""
    from sklearn.metrics import matthews_corrcoef, roc_auc_score

    from lingo_core.study.stats import RankedScores, resampled_mcc

    rng = np.random.default_rng(3)
    for classes in (2, 3):
        labels = rng.integers(0, classes, 300)
        predicted = np.where(rng.random(300) < 0.3, rng.integers(0, classes, 300), labels)
        indices = rng.integers(0, 300, (20, 300))  # 20 resamples, scored at once
        expected = [matthews_corrcoef(labels[index], predicted[index]) for index in indices]
        np.testing.assert_allclose(resampled_mcc(labels, predicted, classes, indices), expected, rtol=0, atol=1e-12)
    # one predicted class only: MCC undefined, 0 as scikit-learn reports it
    assert resampled_mcc(labels, np.zeros(300, dtype=np.int64), 3, np.arange(300)).tolist() == [0.0]
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) * 0.5 + labels * 0.3, 2)  # rounded: many tied scores
    ranked = RankedScores(labels, scores)
    indices = rng.integers(0, 300, (20, 300))
    expected = [roc_auc_score(labels[index], scores[index]) for index in indices]
    np.testing.assert_allclose(ranked.auroc(indices), expected, rtol=0, atol=1e-12)
    # one class in a resample: nan for it, the other resamples unaffected
    one_class = np.stack([np.flatnonzero(labels == 1)[:100], indices[0][:100]])
    auroc = ranked.auroc(one_class)
    assert np.isnan(auroc[0]) and auroc[1] == pytest.approx(roc_auc_score(labels[one_class[1]], scores[one_class[1]]), abs=1e-12)


def test_variants_are_compared_with_their_methods_first_variant_seed_by_seed():
    from lingo_core.study.stats import compare_variants

    # the prefix check of a decoder grid: "none" loses 0.1, 0.05, 0.15 against "paper" on seeds 0-2;
    # the k-mer regression has no variants and is left out
    table = _rows(
        task=["t"] * 7,
        method=["smol"] * 6 + ["kmer_lr"],
        kind=["train"] * 6 + ["baseline"],
        variant=["smol (paper)", "smol (none)"] * 3 + ["kmer_lr"],
        seed=[0, 0, 1, 1, 2, 2, 0],
        test_mcc=[0.6, 0.5, 0.55, 0.5, 0.65, 0.5, 0.9],
        test_auroc=[0.8] * 7,
    )
    rows = compare_variants(table, "variant", ("test_mcc", "test_auroc")).set_index("metric")
    mcc = rows.loc["test_mcc"]
    assert (mcc["variant"], mcc["vs"], mcc["seeds"]) == ("smol (none)", "smol (paper)", 3)
    assert mcc["diff"] == pytest.approx(-0.1) and mcc["verdict"] == "tie"  # 2 degrees of freedom: p = 0.07
    assert rows.loc["test_auroc", "verdict"] == "same"
    assert set(rows["vs"]) == {"smol (paper)"}


def test_choose_on_dev_picks_the_best_mean_dev_metric_never_test():
    table = _rows(
        task=["t"] * 8,
        method=["lora"] * 4 + ["ars"] * 4,
        seed=[0, 1, 0, 1] * 2,
        setting=["train.lr=0.001", "train.lr=0.001", "train.lr=0.004", "train.lr=0.004"] * 2,
        dev_mcc=[0.30, 0.40, 0.00, 0.10, 0.20, 0.20, 0.35, 0.30],
        test_mcc=[0.10, 0.10, 0.90, 0.90, 0.50, 0.50, 0.40, 0.40],  # test would pick the other setting
    )
    chosen = choose_on_dev(table).set_index("method")
    assert chosen.loc["lora", "chosen"] == "train.lr=0.001" and chosen.loc["lora", "mean dev_mcc"] == pytest.approx(0.35)
    assert chosen.loc["ars", "chosen"] == "train.lr=0.004" and chosen.loc["ars", "mean test_mcc"] == pytest.approx(0.40)
    assert chosen.loc["ars", "seeds"] == 2 and chosen.loc["ars", "settings tried"] == 2


def _fake_records(study, scores: dict[str, tuple[float, float]]) -> None:
    """A finished record for every cell (no training): MCC = base + slope * seed for (base, slope) = scores[method]."""
    for cell in expand(study):
        base, slope = scores[cell.method]
        value = base + slope * cell.seed
        metrics = {"mcc": value, "f1": value, "accuracy": value, "auroc": 0.5 + value / 2, "auprc": 0.5}
        write_record(study, cell, {**cell.base_record(), "status": "done", "test": metrics, "dev": metrics,
                                   "parameters": {"trainable": 100, "total": 1000, "percent": 10.0}, "exported_params": 80,
                                   "steps": 8, "wall_time_s": 1.0, "train_time_s": 3.0})


def test_declared_comparisons_and_only_those_appear_in_the_report(tmp_path):
    spec = _spec(tmp_path, Path("/m"), seeds=[0, 1, 2])
    spec["methods"]["adalora"] = {"adapter": {"method": "adalora"}}
    spec["grids"] = [
        {"name": "main", "tasks": ["demo/motifs", "gue/tf/0"], "methods": ["kmer_lr", "lora", "adalora", "ars"]},
        {"name": "lr", "tasks": ["demo/motifs"], "methods": ["adalora", "ars"], "vary": {"train.lr": [0.001, 0.01]}},
    ]
    spec["comparisons"] = [
        {"method": "ars", "label": "Sampled ARS", "name": "Sampled ARS against the budget methods", "against": ["adalora"], "metrics": ["dev_mcc"]},
        {"method": "lora", "against": ["kmer_lr"], "groups": ["main"], "pooled": False},
    ]
    study = load_study(spec=spec)
    _fake_records(study, {"kmer_lr": (0.5, 0.0), "lora": (0.4, 0.01), "adalora": (0.3, 0.01), "ars": (0.35, 0.02)})
    report = (write_report(study, build_table(study))).read_text()
    # the first comparison, by method in main (pooled over both tasks) and setting by setting in lr
    assert "Sampled ARS against the budget methods, dev MCC, paired by seed" in report
    # ARS minus AdaLoRA: 0.05, 0.06, 0.07 on seeds 0, 1, 2 of each task
    assert "| all tasks (pooled pairs) | adalora | 6 | 0.06 | 0.0037 | [+0.051, +0.069] | 1.5e-05 | better | True |" in report
    assert "- Sampled ARS has the higher mean dev MCC than adalora on 2 of 2 tasks (clearly better on 2, clearly worse on 0)." in report
    assert "Sampled ARS minus the reference method at the same setting" in report
    assert "| train.lr=0.01 | dev_mcc | demo/motifs | adalora | 3 | 0.06 | 0.0058 | [+0.035, +0.085] | 0.0091 | better |" in report
    # the second, with its default name and label, only in main, without the pooled row and on both default metrics
    for metric in ("test MCC", "test AUROC"):
        assert f"`lora` minus kmer_lr, {metric}, paired by seed" in report
    assert report.count("| all tasks (pooled pairs) |") == 1 and report.count("`lora` minus kmer_lr") == 2
    # nothing else is compared: no test-metric comparison of ARS, no LoRA/AdaLoRA comparison
    assert "Sampled ARS against the budget methods, test" not in report and "minus LoRA" not in report
    assert "minus lora" not in report and "minus adalora" not in report
    # a resumed cell's last invocation (wall) next to its training time summed over resumes
    assert "| lora | 100 | 10.000 | 80 | 8 | 1 | 3 | 3 |" in report
    # the lr grid varies a setting over 3 seeds: each learning rate against the method's first one
    lr_section = report.split("## lr", 1)[1]
    assert "Each variant minus its method's first variant" in lr_section
    assert "| ars (train.lr=0.01) | test_mcc | demo/motifs | ars (train.lr=0.001) | 3 | 0.0 |" in lr_section
    assert "Each variant minus" not in report.split("## lr", 1)[0]  # main compares methods, not variants


# -- running -------------------------------------------------------------------------------------


def test_tiny_study_end_to_end_table_report_and_resume(tiny_bert_dir, tmp_path):
    spec = _spec(tmp_path, tiny_bert_dir)
    # a setting varied for ARS and its reference method: compared setting by setting in the report
    spec["grids"].append({"name": "pair", "tasks": ["demo/motifs"], "methods": ["lora", "ars"], "seeds": [0, 1], "vary": {"train.lr": [0.003, 0.01]}})
    study = load_study(spec=spec)
    messages: list[str] = []
    path = run_study(study, log=messages.append)
    table = pd.read_csv(path)
    assert list(table.columns) == TABLE_COLUMNS
    required = {"task", "method", "seed", "test_mcc", "test_auroc", "trainable_params", "wall_time_s"}
    assert required <= set(table.columns)
    main = table[table["group"] == "main"]
    assert len(main) == 6  # one row per task x method x seed
    assert sorted(main.groupby("method")["seed"].apply(list).to_dict().items()) == [("ars", [0, 1]), ("kmer_lr", [0, 1]), ("lora", [0, 1])]
    assert (table["status"] == "done").all()
    assert table["test_mcc"].notna().all() and table["trainable_params"].gt(0).all()
    for cell in expand(study):  # each trained cell's record keeps its dev curve, selected step included
        record = read_record(study, cell)
        if cell.method != "kmer_lr":
            logged = [m for m in runs.Run(record["run_dir"]).metrics() if "dev_mcc" in m]
            assert record["dev_curve"] == [[m["step"], round(m["dev_mcc"] or 0.0, 4)] for m in logged] and len(logged) == 2
            curve = dict(record["dev_curve"])
            assert curve[record["selected_step"]] == max(curve.values())
    neural = table[table["method"] != "kmer_lr"]
    assert neural["steps"].eq(8).all() and neural["trainable_percent"].lt(100).all()
    ars = table[(table["method"] == "ars") & (table["group"] == "main")]
    assert ars["exported_params"].lt(ars["trainable_params"]).all()  # pruned to target_r on export
    assert len(table[table["group"] == "rho"]) == 2
    report = (study.output_dir / "report.md").read_text()
    for needle in ("## main", "## rho", "ARS minus LoRA", "figures/main_mcc.png", "figures/pareto_trainable_vs_mcc.png", "figures/rank_patterns.png",
                   "**dev mcc**", "Chosen on dev", "ARS minus the reference method at the same setting", "| train.lr=0.01 | test_mcc | demo/motifs | lora | 2 |"):
        assert needle in report, needle
    for name in ("main_mcc.png", "main_dev_curves.png", "rho_mcc.png", "pareto_trainable_vs_mcc.png", "rank_patterns.png", "rank_dynamics_ars.png"):
        assert (study.output_dir / "figures" / name).stat().st_size > 1000, name

    # resumable: a second run skips every finished cell and leaves their records alone
    records = {c.cell_id: (study.output_dir / "cells" / f"{c.cell_id}.json").stat().st_mtime_ns for c in expand(study)}
    run_dirs = sorted(p.name for p in (study.work_dir / "runs").iterdir())
    again: list[str] = []
    run_study(study, log=again.append)
    assert sum("skipped" in m for m in again) == len(records)
    assert not any(m.endswith("running") or ": running (" in m for m in again)
    assert {c: (study.output_dir / "cells" / f"{c}.json").stat().st_mtime_ns for c in records} == records
    assert sorted(p.name for p in (study.work_dir / "runs").iterdir()) == run_dirs
    pd.testing.assert_frame_equal(pd.read_csv(path), table)

    # the output folder alone (a fresh clone: run directories are not committed) keeps the study:
    # nothing is retrained, and the table and the prediction statistics come back the same
    kept = table[table["method"] != "kmer_lr"]["test_predictions"]
    assert kept.str.startswith(str(study.output_dir / "cells")).all()
    assert all(pd.read_csv(p)["label"].size == n for p, n in zip(kept, table[table["method"] != "kmer_lr"]["n_test"]))
    shutil.rmtree(study.work_dir)
    fresh: list[str] = []
    run_study(study, log=fresh.append)
    assert sum("skipped" in m for m in fresh) == len(records) and not (study.work_dir / "runs").exists()
    pd.testing.assert_frame_equal(pd.read_csv(path), table)
    fresh_report = (study.output_dir / "report.md").read_text()
    assert "| disagree | boot95 |" in fresh_report and "figures/rank_patterns.png" in fresh_report
    assert "figures/main_dev_curves.png" in fresh_report  # drawn from the records, which a clone keeps
    assert "rank_dynamics" not in fresh_report  # drawn from a run directory, which is gone

    # records of an older results.csv (before records were kept beside it) are rebuilt from its rows
    for record_file in (study.output_dir / "cells").glob("*.json"):
        record_file.unlink()
    assert all(read_record(study, c) is None for c in expand(study))
    assert sorted(recover_records(study, expand(study))) == sorted(records)
    pd.testing.assert_frame_equal(pd.read_csv(write_table(study, build_table(study))), table)
    assert all(read_record(study, c)["recovered_from"] == "results.csv" for c in expand(study))
    # a record in the older place (work_dir/cells) is still read
    (legacy,) = [c for c in expand(study) if c.method == "kmer_lr"]
    legacy_record = read_record(study, legacy)
    (study.output_dir / "cells" / f"{legacy.cell_id}.json").unlink()
    write_legacy = study.work_dir / "cells" / f"{legacy.cell_id}.json"
    write_legacy.parent.mkdir(parents=True)
    write_legacy.write_text(json.dumps(legacy_record))
    assert read_record(study, legacy) == legacy_record

    # a new seed adds only its own cells
    more = load_study(spec=_spec(tmp_path, tiny_bert_dir, seeds=[0, 1, 2]))
    log3: list[str] = []
    run_study(more, log=log3.append)
    ran = [m for m in log3 if ": running (" in m]
    assert len(ran) == 2 and all("seed=2" in m for m in ran)  # lora and ars seed 2; kmer is shared


def test_interrupted_cell_resumes_and_failed_cell_is_recorded(tiny_bert_dir, tmp_path):
    spec = _spec(tmp_path, tiny_bert_dir, seeds=[0])
    spec["grids"] = [{"name": "main", "tasks": ["demo/motifs"], "methods": ["lora"]}]
    study = load_study(spec=spec)
    (cell,) = expand(study)
    # a study killed mid-cell (like kill -9 right after the checkpoint of step 4) leaves a run
    # directory without a record: the next run resumes it
    die_after_checkpoint = cli_dying_after_checkpoint(4)
    spec_path = tmp_path / "study.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    proc = subprocess.run([sys.executable, "-c", die_after_checkpoint, "study", str(spec_path)], cwd=PROJECT_ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert read_record(study, cell) is None
    run_dir = study.work_dir / "runs" / cell.cell_id
    assert runs.load_run(run_dir).resumable
    log: list[str] = []
    run_study(study, log=log.append)
    record = read_record(study, cell)
    assert record["status"] == "done" and record["steps"] == 8
    assert runs.load_run(run_dir).status.get("resumed_from_step") == 4

    # a cell that fails is recorded with its error, and the table keeps the row
    bad = _spec(tmp_path / "bad", tmp_path / "no-such-model", seeds=[0])
    bad["grids"] = [{"name": "main", "tasks": ["demo/motifs"], "methods": ["lora"]}]
    bad_study = load_study(spec=bad)
    run_study(bad_study, log=lambda m: None)
    table = build_table(bad_study)
    assert list(table["status"]) == ["failed"] and "no-such-model" in table["detail"][0]


def test_a_cell_cancelled_from_outside_stops_the_study_without_a_record(tiny_bert_dir, tmp_path, monkeypatch):
    spec = _spec(tmp_path, tiny_bert_dir, seeds=[0])
    spec["grids"] = [{"name": "main", "tasks": ["demo/motifs"], "methods": ["lora", "ars"]}]
    study = load_study(spec=spec)
    first, second = expand(study)
    monkeypatch.setattr(runs.RunWriter, "cancel_requested", lambda self: True)  # like a CANCEL file or SIGTERM
    with pytest.raises(StudyInterrupted):
        run_study(study, log=lambda m: None)
    assert read_record(study, first) is None and read_record(study, second) is None  # not recorded as a timeout
    monkeypatch.undo()
    run_study(study, log=lambda m: None)
    assert read_record(study, first)["status"] == "done" and read_record(study, second)["status"] == "done"


def test_time_limit_marks_a_cell_timeout_not_a_shorter_run(tiny_bert_dir, tmp_path):
    spec = _spec(tmp_path, tiny_bert_dir, seeds=[0], budget={"time_limit_s": 0.001})
    spec["grids"] = [{"name": "main", "tasks": ["demo/motifs"], "methods": ["lora"]}]
    study = load_study(spec=spec)
    run_study(study, log=lambda m: None)
    table = build_table(study)
    assert list(table["status"]) == ["timeout"] and table["test_mcc"].isna().all()
    log: list[str] = []
    run_study(study, log=log.append)  # not retried unless asked
    assert any("timeout already, skipped" in m for m in log)


def test_cli_dry_run_lists_cells():
    proc = run_cli("study", str(SMOKE), "--dry-run", "--set", "work_dir=/nonexistent/work")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == len(expand(load_study(SMOKE))) and all(line.endswith("pending") for line in lines)


# -- the k-mer baseline on real data ---------------------------------------------------------------


def test_kmer_logistic_regression_beats_chance_on_a_real_task(data_root):
    from lingo_core.config import config_from_dict
    from lingo_core.data import load_task

    cfg = config_from_dict({"data": {"task": "gue/prom_core_tata", "max_train": 1000, "duplicates": "remove", "root": str(data_root)}})
    task = load_task(cfg.data)
    result = kmer_logistic_regression(task, ks=(3, 4), cs=(1.0,))
    assert result["k"] in (3, 4) and len(result["tried"]) == 2
    assert result["test"]["mcc"] > 0.3 and result["test"]["auroc"] > 0.75  # chance: 0 and 0.5
    assert result["parameters"] == 4 ** result["k"] + 1

    # trained on both strands (data.augment: reverse_complement), the regression scores a sequence and its
    # reverse complement alike; trained on one strand of a strand-specific task (promoters), it does not
    import dataclasses

    from lingo_core.sequence_input import reverse_complement

    flipped = dataclasses.replace(task, test=dataclasses.replace(task.test, sequences=[reverse_complement(s) for s in task.test.sequences]))
    for augment, same in (("reverse_complement", True), ("none", False)):
        as_given = kmer_logistic_regression(task, ks=(4,), cs=(1.0,), augment=augment)["test"]["auroc"]
        other_strand = kmer_logistic_regression(flipped, ks=(4,), cs=(1.0,), augment=augment)["test"]["auroc"]
        assert (abs(as_given - other_strand) < 2e-3) == same, (augment, as_given, other_strand)
    # scored on both strands (data.eval_strands: both) it gives every sequence and its reverse complement the
    # same probability, however it was trained: the test metrics do not depend on the strand the set is given on
    for augment in ("reverse_complement", "none"):
        as_given = kmer_logistic_regression(task, ks=(4,), cs=(1.0,), augment=augment, eval_strands="both")["test"]
        other_strand = kmer_logistic_regression(flipped, ks=(4,), cs=(1.0,), augment=augment, eval_strands="both")["test"]
        assert as_given["auroc"] == pytest.approx(other_strand["auroc"], abs=1e-9) and as_given["mcc"] == pytest.approx(other_strand["mcc"], abs=1e-9)
    one_strand = kmer_logistic_regression(task, ks=(4,), cs=(1.0,))["test"]["auroc"]
    assert as_given["auroc"] != pytest.approx(one_strand, abs=1e-4)  # on a promoter task the second strand changes the scores


def test_a_baseline_that_an_axis_changes_is_labelled_by_setting_and_one_that_it_does_not_is_shared():
    from lingo_core.study.report import GroupView

    def rows(kmer_cells: list[str]) -> pd.DataFrame:
        neural = [{"group": "g", "task": "t", "method": "ars", "kind": "train", "seed": 0, "model": "m", "encoding": "native",
                   "prefix": "paper", "setting": f"data.augment={a}", "cell_id": f"ars-{a}"} for a in ("none", "reverse_complement")]
        kmer = [{"group": "g", "task": "t", "method": "kmer_lr", "kind": "kmer_lr", "seed": 0, "model": "m", "encoding": "kmer-counts",
                 "prefix": "paper", "setting": f"data.augment={a}", "cell_id": c} for a, c in zip(("none", "reverse_complement"), kmer_cells)]
        return pd.DataFrame(neural + kmer)

    shared = GroupView.of(rows(["kmer-a", "kmer-a"]), "g")  # e.g. train.lr: the regression is one cell
    assert sorted(shared.rows["variant"]) == ["ars (data.augment=none)", "ars (data.augment=reverse_complement)", "kmer_lr", "kmer_lr"]
    split = GroupView.of(rows(["kmer-a", "kmer-b"]), "g")  # data.augment: two regressions
    assert "kmer_lr (data.augment=reverse_complement)" in set(split.rows["variant"]) and "kmer_lr" not in set(split.rows["variant"])


def test_dev_curves_figure_skips_damaged_points(tmp_path):
    from lingo_core.plots.study import curve_points, plot_dev_curves

    damaged = [[80, 0.3], ["x", 0.1], [160, float("nan")], [240], True, [320, 0.5], [400, True]]
    assert curve_points(damaged) == [(80.0, 0.3), (320.0, 0.5)]
    assert curve_points("not a list") == [] and curve_points(None) == []
    assert curve_points([[80, 0.3], ["x", 0.1]]) == []  # one point makes no line
    no_line = [("t", "lora", curve_points([[80, 0.3]])), ("t", "ars", curve_points(None))]
    assert plot_dev_curves(no_line, tmp_path / "none.png") is None
    curves = [("t", "lora", damaged), ("t", "lora", [[80, 0.2], [160, 0.4]]), ("u", "ars", [[1, 0], [2, 0.1]])]
    path = plot_dev_curves([(task, label, curve_points(curve)) for task, label, curve in curves], tmp_path / "curves.png", "title")
    assert path == tmp_path / "curves.png" and path.stat().st_size > 1000
