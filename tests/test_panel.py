"""Panels: several runs' adapters on one backbone, scored like ``predict`` scores each run alone.

Seconds-long runs of a tiny BERT (the embedded MiniLM's tokenizer and code path) on three different
tasks: LoRA on the demo task (binary), ARS on a multi-label task (TATA box, CCAAT box) with its own
language prefix, and a head-only run on a three-class task with k-mer tokens. With the shared data
present, two real GUE tasks join them. Everything in fp32, so per-task probabilities can be checked
against ``predict`` to 1e-5.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from lingo_core import runs
from lingo_core.cli import main
from lingo_core.data import make_demo_task
from lingo_core.inference import load_trained
from lingo_core.panel import PanelError, check_panel, group_compatible, label_columns, load_panel, score_panel
from lingo_core.panel.attach import FusedLoraLinear
from lingo_core.predict import Predictor
from lingo_core.train import train
from tests.helpers import run_cli, tiny_config

DEMO = make_demo_task(n_train=4, n_dev=4, n_test=40, seed=321)
STEPS = {"train": {"max_steps": 4, "eval_every": 4}}


def motif_table(path: Path, n: int = 240) -> Path:
    """Demo sequences with two label kinds: TATA box / CCAAT box present (multi-label), and how many motifs (3 classes)."""
    task = make_demo_task(n_train=n, n_dev=4, n_test=4, seed=5)
    rows = []
    for sequence, motifs in zip(task.train.sequences, task.train.motifs):
        names = {name.removeprefix("decoy_") for _, _, name in motifs}
        rows.append({"sequence": sequence, "tata": int("TATA-box" in names), "ccaat": int("CCAAT-box" in names), "motifs": len(motifs)})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def panel_runs(tiny_bert_dir, tmp_path_factory) -> dict[str, Path]:
    """Finished fp32 runs on three tasks, and a full fine-tuning run (which no panel can take)."""
    out = tmp_path_factory.mktemp("panel_runs")
    table = motif_table(out / "motifs.csv")
    fp32 = {"dtype": "float32"}
    made = {
        "lora": train(tiny_config(tiny_bert_dir, out, "lora", model=fp32, **STEPS)),
        "ars": train(tiny_config(
            tiny_bert_dir, out, "ars", model=fp32, train={"max_steps": 6, "eval_every": 3},
            data={"task": str(table), "label_columns": ["tata", "ccaat"], "max_train": 160, "max_eval": None},
            encoding={"max_length": 128, "domain": "TATA and CCAAT boxes"}, adapter={"adalora": {"tinit": 1, "tfinal": 1}},
        )),
        "head": train(tiny_config(
            tiny_bert_dir, out, "head", model=fp32, **STEPS,
            data={"task": str(table), "label_columns": ["motifs"], "max_train": 160, "max_eval": None},
            encoding={"max_length": 128, "sequence": "kmer", "k": 3},
        )),
        "full": train(tiny_config(tiny_bert_dir, out, "full", model=fp32, train={"max_steps": 2, "eval_every": 2})),
    }
    for name, path in made.items():
        assert runs.load_run(path).state == "done", (name, runs.load_run(path).status.get("error"))
    return made


@pytest.fixture(scope="module")
def panel(panel_runs):
    return load_panel([panel_runs[m] for m in ("lora", "ars", "head")])


def inputs() -> list[str]:
    """Demo test sequences, a long one (sliding windows), an invalid one and one with IUPAC codes."""
    long_one = "".join(DEMO.test.sequences[:8])  # 800 nt: several windows of the 128-token runs
    return DEMO.test.sequences[:10] + [long_one, "ACGTXACGT", DEMO.test.sequences[11][:40] + "RYKM" + DEMO.test.sequences[11][44:]]


def predict_alone(run_dir: Path, sequences: list[str], **options) -> pd.DataFrame:
    """What ``predict`` gives for the run alone (a fresh load, merged as predict merges it)."""
    return Predictor(load_trained(run_dir)).predict(sequences, **options).to_frame()


# -- the engine -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, rc", [("switch", True), ("mixed", False)])
def test_every_column_equals_predict_for_that_run_alone(panel, panel_runs, mode, rc):
    """Per task and label: the probability predict gives that run alone, to 1e-5 (windows, RC, errors included)."""
    sequences = inputs()
    frame = panel.score(sequences, mode=mode, reverse_complement=rc)
    assert frame["id"].tolist() == [f"seq{i + 1}" for i in range(len(sequences))]
    checked = 0
    for task in panel.tasks:
        alone = predict_alone(task.run.path, sequences, reverse_complement=rc)
        for column in task.columns:
            got, want = frame[column.name].to_numpy(), alone[f"prob_{column.label}"].to_numpy()
            assert np.array_equal(np.isnan(got), np.isnan(want)), column.name
            np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], atol=1e-5, rtol=0, err_msg=column.name)
            checked += 1
        assert frame["n_windows"].max() >= alone["n_windows"].max() > 1  # the long sequence went through windows
    assert checked == 1 + 2 + 3  # binary: its positive class; multi-label: each label; three classes: each class
    bad = frame.iloc[-2]
    assert "invalid character 'X'" in bad["error"] and np.isnan(bad[panel.columns[0].name])
    assert frame.iloc[-1]["iupac_replaced"] == 4 and frame.iloc[-1]["error"] == ""


def test_columns_and_task_metadata_come_from_each_run(panel, panel_runs):
    table = panel.task_table()
    assert table["column"].tolist() == [  # two runs on one table (other label columns) are told apart by method
        "demo/motifs:positive", "motifs.csv [ars]:tata", "motifs.csv [ars]:ccaat",
        "motifs.csv [head]:0", "motifs.csv [head]:1", "motifs.csv [head]:2",
    ]
    assert table["domain"].tolist()[:3] == ["Synthetic Motifs", "DNA Sequence", "DNA Sequence"]
    lora = panel.tasks[0]
    assert lora.domain == "Synthetic Motifs" and lora.summary.startswith("Synthetic data, not genomic")
    report = runs.load_run(panel_runs["lora"]).report()
    assert table.loc[0, "test_mcc"] == pytest.approx(report["test"]["mcc"]) and table.loc[0, "test_auroc"] == pytest.approx(report["test"]["auroc"])
    assert [t.form for t in panel.tasks] == ["LoRA", "ARS (LoRA form)", "head only"]
    assert label_columns(["no", "yes"], False) == [1] and label_columns(["a", "b"], True) == [0, 1] and label_columns(["0", "1", "2"], False) == [0, 1, 2]
    names = [t.name for t in panel.tasks]
    assert len(set(names)) == 3 and all(":" in c.name for c in panel.columns)


def test_the_backbone_is_held_once_and_switching_reloads_and_merges_nothing(panel, tiny_bert_dir):
    """Parameters: one backbone plus each adapter; set_adapter changes no weight and merges nothing."""
    from transformers import BertForSequenceClassification

    backbone = sum(p.numel() for p in BertForSequenceClassification.from_pretrained(str(tiny_bert_dir)).parameters())
    counts = panel.parameter_counts()
    assert counts["backbone"] == backbone
    assert sum(counts.values()) == sum(p.numel() for p in panel.model.parameters())
    assert all(0 < t.parameters < backbone / 20 for t in panel.tasks)
    weights = {n: (p.data_ptr(), p.detach().clone()) for n, p in panel.model.named_parameters() if "base_layer" in n}
    switches = panel.switches
    panel.score(DEMO.test.sequences[:4], mode="switch")
    assert panel.switches >= switches + len(panel.tasks) - 1
    for name, param in panel.model.named_parameters():
        if name in weights:
            assert param.data_ptr() == weights[name][0] and torch.equal(param, weights[name][1]), name
    layers = [m for m in panel.model.modules() if isinstance(m, FusedLoraLinear)]
    assert layers and not any(m.merged for m in layers)
    assert set(panel.model.peft_config) == {t.adapter for t in panel.tasks}


def test_threads_sharing_a_panel_get_their_own_tasks_scores(panel):
    """The dashboard's sessions share one cached panel: concurrent scoring must not mix the active adapters."""
    from concurrent.futures import ThreadPoolExecutor

    sequences = DEMO.test.sequences[:6]
    alone = panel.score(sequences)
    with ThreadPoolExecutor(4) as pool:
        frames = list(pool.map(lambda mode: panel.score(sequences, mode=mode), ["switch", "mixed"] * 3))
    for frame in frames:
        for column in panel.columns:
            np.testing.assert_allclose(frame[column.name], alone[column.name], atol=1e-5, rtol=0)


def test_fused_forward_equals_peft_forward(panel_runs):
    unfused = load_panel([panel_runs["lora"], panel_runs["ars"]], fused=False)
    fused = load_panel([panel_runs["lora"], panel_runs["ars"]])
    assert not any(isinstance(m, FusedLoraLinear) for m in unfused.model.modules())
    a, b = unfused.score(DEMO.test.sequences[:8]), fused.score(DEMO.test.sequences[:8])
    for column in fused.columns:
        np.testing.assert_allclose(a[column.name], b[column.name], atol=1e-6, rtol=0)


def test_bf16_panel_agrees_with_predict_within_bf16_rounding(tiny_bert_dir, tmp_path):
    """model.dtype bfloat16 (what auto picks on AMX CPUs and GPUs): predict merges the adapter into the weights before
    autocast rounds them, a panel adds it beside them; the two agree to bf16 rounding."""
    run_dir = train(tiny_config(tiny_bert_dir, tmp_path, "lora", model={"dtype": "bfloat16"}, **STEPS))
    panel = load_panel([run_dir])
    assert panel.precision == "bf16"
    sequences = DEMO.test.sequences[:12]
    frame, alone = panel.score(sequences), predict_alone(run_dir, sequences)
    np.testing.assert_allclose(frame[panel.columns[0].name], alone["prob_positive"], atol=5e-3, rtol=0)


def test_mixed_mode_batches_tasks_together(panel, monkeypatch):
    """Rows of the LoRA and ARS tasks (same output width) share forward passes; the head-only task runs alone."""
    import lingo_core.panel.engine as engine

    seen: list[set] = []
    real = engine.predict_logits

    def spy(*args, **kwargs):
        if kwargs.get("adapter_names") is not None:
            seen.append(set(kwargs["adapter_names"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "predict_logits", spy)
    panel.score(DEMO.test.sequences[:6], mode="mixed")
    assert seen and all(names == {"task0", "task1"} for names in seen)


def test_python_api_streams_chunks_and_checks_options(panel):
    from lingo_core.sequence_input import records_from_sequences

    ids = ["a", "b", "c", "b", "d", "a", "e"]
    chunks = list(panel.score_stream(records_from_sequences(DEMO.test.sequences[:7], ids), chunk_records=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [r.duplicate_id for c in chunks for r in c.rows] == [False, False, False, True, False, True, False]  # across chunks too
    whole = panel.score(DEMO.test.sequences[:7], ids=ids)
    # the same rows and scores; a chunk's batch differs from the whole call's, and on some CPUs (AVX-512, a batch of
    # one) the matmul kernels round differently in the 7th digit, so probabilities are compared to 1e-5
    pd.testing.assert_frame_equal(pd.concat([c.to_frame() for c in chunks], ignore_index=True), whole, rtol=1e-5, atol=1e-6)
    assert [row["column"] for row in whole.attrs["tasks"]] == [c.name for c in panel.columns]
    with pytest.raises(ValueError, match="mode must be one of"):
        panel.score(["ACGT"], mode="fast")
    with pytest.raises(TypeError, match="unknown scoring option"):
        panel.score(["ACGT"], threshold=0.3)
    assert panel.score([]).empty


def test_one_call_reads_a_fasta_file(panel_runs, tmp_path):
    fasta = tmp_path / "in.fa"
    fasta.write_text(f">a\n{DEMO.test.sequences[0]}\n>b\n{DEMO.test.sequences[1]}\n")
    frame = score_panel([panel_runs["lora"], panel_runs["ars"]], fasta=fasta, reverse_complement=True)
    assert frame["id"].tolist() == ["a", "b"] and bool(frame["rc_averaged"].all())


# -- who may join ----------------------------------------------------------------------------------------------
def edited_copy(run_dir: Path, root: Path, name: str, **sections) -> Path:
    """A copy of a finished run whose config.yaml has ``sections`` changed (a run made with other settings)."""
    target = root / name
    shutil.copytree(run_dir, target)
    config = yaml.safe_load((target / runs.CONFIG).read_text())
    for section, values in sections.items():
        config[section].update(values)
    (target / runs.CONFIG).write_text(yaml.safe_dump(config))
    return target


def test_incompatible_runs_are_refused_with_the_reason(panel_runs, tiny_bert_dir, tmp_path):
    other_model = tmp_path / "other_bert"
    shutil.copytree(tiny_bert_dir, other_model)
    lora = panel_runs["lora"]
    cases = {
        edited_copy(lora, tmp_path, "nucleotide", encoding={"sequence": "nucleotide"}): "other vocabulary: the model's tokens + 5 nucleotide tokens",
        edited_copy(lora, tmp_path, "mean", model={"pooling": "mean"}): "other pooling: mean pooling (the panel's: cls pooling)",
        edited_copy(lora, tmp_path, "bf16", model={"dtype": "bfloat16"}): "other precision: bf16 (the panel's: fp32)",
        edited_copy(lora, tmp_path, "model", model={"name": str(other_model)}): f"other base model: {other_model}",
        panel_runs["full"]: "full fine-tuning changed every weight of the backbone",
    }
    unfinished = edited_copy(lora, tmp_path, "unfinished")
    status = json.loads((unfinished / runs.STATUS).read_text())
    (unfinished / runs.STATUS).write_text(json.dumps({**status, "state": "failed"}))
    cases[unfinished] = "not finished (state failed)"
    with pytest.raises(PanelError) as caught:
        load_panel([lora, *cases])
    message = str(caught.value)
    assert f"{len(cases)} of {len(cases) + 1} run(s) cannot join" in message
    for run_dir, reason in cases.items():
        assert f"{run_dir.name}: " in message and reason in message, (reason, message)
    grouping = group_compatible([lora, panel_runs["ars"], *cases])
    assert len(grouping.groups[0].runs) == 2 and len(grouping.groups) == 5  # lora+ars, then one group per other backbone
    assert {r.run.path for r in grouping.refused} == {panel_runs["full"], unfinished}
    assert "other pooling" in grouping.why_not(runs.load_run(tmp_path / "mean"), grouping.groups[0])
    with pytest.raises(PanelError, match="given twice"):
        check_panel([lora, lora])


def test_an_export_that_does_not_fit_the_backbone_is_refused_naming_it(panel_runs, tmp_path):
    """Whole files whose tensors do not fit (another model's adapter): one error naming the export, nothing random."""
    from safetensors.torch import load_file, save_file

    from lingo_core.inference import RunLoadError

    broken = edited_copy(panel_runs["lora"], tmp_path, "other_shapes")
    weights = broken / runs.ADAPTER / "adapter_model.safetensors"
    tensors = {k: torch.zeros(v.shape[0], v.shape[1] + 3) if k.endswith("lora_A.weight") else v for k, v in load_file(str(weights)).items()}
    save_file(tensors, str(weights))
    with pytest.raises(RunLoadError, match=r"other_shapes/adapter: the exported adapter does not load on the panel's backbone"):
        load_panel([panel_runs["ars"], broken])
    missing = edited_copy(panel_runs["lora"], tmp_path, "missing_tensor")
    weights = missing / runs.ADAPTER / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    save_file({k: v for k, v in tensors.items() if ".layer.1.attention.self.query.lora_B" not in k}, str(weights))
    with pytest.raises(RunLoadError, match=r"missing_tensor/adapter: the export does not fill its adapter .*missing \['base_model"):
        load_panel([missing])


def test_nucleotide_token_runs_share_a_panel_unless_the_vocabulary_rows_moved(tiny_bert_dir, tmp_path):
    """LoRA and head-only runs on nucleotide tokens keep their token rows per adapter; a head run whose training moved
    rows of the pretrained vocabulary (as weight decay does) cannot share the backbone's single copy."""
    from safetensors.torch import load_file, save_file

    nucleotide = {"encoding": {"max_length": 256, "sequence": "nucleotide"}, "model": {"dtype": "float32"}, **STEPS}
    lora = train(tiny_config(tiny_bert_dir, tmp_path, "lora", **nucleotide))
    head = train(tiny_config(tiny_bert_dir, tmp_path, "head", **nucleotide))
    panel = load_panel([lora, head])
    sequences = DEMO.test.sequences[:8]
    frame = panel.score(sequences)
    for task in panel.tasks:
        alone = predict_alone(task.run.path, sequences)
        np.testing.assert_allclose(frame[task.columns[0].name], alone["prob_positive"], atol=1e-5, rtol=0)
    moved = tmp_path / "moved"
    shutil.copytree(head, moved)
    weights = runs.export_weights_path(moved / runs.ADAPTER)
    tensors = load_file(str(weights))
    name = next(k for k in tensors if k.endswith("word_embeddings.weight"))
    tensors[name][:3] += 1e-4
    save_file(tensors, str(weights))
    with pytest.raises(PanelError, match=r"nucleotide-token embeddings differ: .* changed 3 rows of the pretrained vocabulary"):
        load_panel([lora, moved])


def test_attention_pooling_runs_share_a_panel_each_with_its_own_scorer(tiny_bert_dir, tmp_path):
    """Each run's trained token scorer travels with its head: switching and mixed batches both equal predict alone."""
    attention = {"model": {"dtype": "float32", "pooling": "attention"}}
    svd = {"train": {"max_steps": 6, "eval_every": 3}, "adapter": {"adalora": {"tinit": 1, "tfinal": 1}}}
    made = [train(tiny_config(tiny_bert_dir, tmp_path, method, **attention, **(svd if method == "ars" else STEPS))) for method in ("lora", "ars", "head")]
    panel = load_panel(made)
    assert "attention pooling" in panel.key.describe()
    sequences = DEMO.test.sequences[:8]
    for mode in ("switch", "mixed"):
        frame = panel.score(sequences, mode=mode)
        for task in panel.tasks:
            alone = predict_alone(task.run.path, sequences)
            np.testing.assert_allclose(frame[task.columns[0].name], alone["prob_positive"], atol=1e-5, rtol=0, err_msg=f"{mode} {task.run.id}")


def test_real_tasks_join_the_demo_task(panel_runs, tiny_bert_dir, data_root, tmp_path):
    """Two GUE tasks (promoters, a TF binding site; their own prompt domains) with the demo task's run."""
    real = {"root": str(data_root), "max_train": 40, "max_eval": 40}
    fp32 = {"dtype": "float32"}
    promoter = train(tiny_config(tiny_bert_dir, tmp_path, "adalora", model=fp32, data={"task": "gue/prom_core_tata", **real},
                                 train={"max_steps": 4, "eval_every": 2}, adapter={"adalora": {"tinit": 1, "tfinal": 1}}))
    binding = train(tiny_config(tiny_bert_dir, tmp_path, "lora", model=fp32, data={"task": "gue/tf/0", **real}, **STEPS))
    panel = load_panel([panel_runs["lora"], promoter, binding])
    assert [t.domain for t in panel.tasks] == ["Synthetic Motifs", "DNA Promoter", "Transcription Factor Binding Site"]
    sequences = DEMO.test.sequences[:6] + [DEMO.test.sequences[6][:70]]
    frame = panel.score(sequences, mode="mixed")
    for task in panel.tasks:
        alone = predict_alone(task.run.path, sequences)
        column = task.columns[0]
        np.testing.assert_allclose(frame[column.name], alone[f"prob_{column.label}"], atol=1e-5, rtol=0)


# -- the command line -------------------------------------------------------------------------------------------
def test_cli_scores_lists_and_refuses(panel, panel_runs, tmp_path, capsys):
    members = [str(panel_runs[m]) for m in ("lora", "ars", "head")]
    out = tmp_path / "table.csv"
    fasta = tmp_path / "in.fa"
    fasta.write_text(f">a\n{DEMO.test.sequences[0]}\n>b\nACGTXX\n")
    assert main(["panel", *members, "--fasta", str(fasta), "--out", str(out), "--rc"]) == 0
    captured = capsys.readouterr()
    assert "not scored:" in captured.err and "against 3 task(s) (6 column(s)), backbone loaded once" in captured.err
    frame = pd.read_csv(out, keep_default_na=False)
    assert frame["id"].tolist() == ["a", "b"] and list(frame.columns[2:8]) == [c.name for c in panel.columns]
    assert frame.loc[1, "error"] and bool(frame.loc[0, "rc_averaged"]) is True

    assert main(["panel", *members, DEMO.test.sequences[1], "acgtacgtacgt"]) == 0  # raw sequences, CSV on stdout
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("id,sequence,demo/motifs:positive,") and len(lines) == 3

    runs_dir = panel_runs["lora"].parent
    assert main(["panel", "--runs-dir", str(runs_dir), "--list"]) == 0
    listing = capsys.readouterr().out
    assert "panel 1: 3 run(s) sharing" in listing and "cannot join any panel: 1 run(s)" in listing and "full fine-tuning" in listing

    missing = tmp_path / "nothing.csv"
    assert main(["panel", *members, "ACGTXX", "--out", str(missing)]) == 1  # nothing scored: exit 1, no file
    assert "no record was scored" in capsys.readouterr().err and not missing.exists()

    assert main(["panel", members[0], str(panel_runs["full"]), "ACGT"]) == 2
    assert "full fine-tuning changed every weight" in capsys.readouterr().err
    assert main(["panel", members[0], "ACGT", "runs/not-there"]) == 2
    assert "runs/not-there: no such run directory" in capsys.readouterr().err
    assert main(["panel", *members, "ACGT", "--out", str(tmp_path / "no" / "such.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_runs_dir_takes_the_largest_compatible_group(panel_runs, tmp_path):
    """As a user runs it: the full run is left out with its reason, the rest scored."""
    done = run_cli("panel", "--runs-dir", str(panel_runs["lora"].parent), DEMO.test.sequences[0])
    assert done.returncode == 0, done.stderr
    assert "panel of 3 run(s) sharing" in done.stderr and "left out" in done.stderr and "full fine-tuning" in done.stderr
    header = done.stdout.splitlines()[0].split(",")
    assert header[:2] == ["id", "sequence"] and len(header) == 2 + 6 + 9  # id, sequence, the columns, the flags
