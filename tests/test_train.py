"""End-to-end training on real code paths: every method, run directory format, export, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from lingo_core import runs
from lingo_core.config import load_config, save_config
from lingo_core.data import DataError
from lingo_core.inference import evaluate_run, load_trained
from lingo_core.train import train
from tests.conftest import PROJECT_ROOT
from tests.helpers import cli_dying_after_checkpoint, run_cli, tiny_config




@pytest.mark.parametrize("method", ["lora", "adalora", "ars", "head", "full"])
def test_each_method_trains_into_a_complete_run_directory(tiny_bert_dir, tmp_path, method):
    run_dir = train(tiny_config(tiny_bert_dir, tmp_path, method))
    run = runs.load_run(run_dir)
    assert run.state == "done"
    for name in (runs.CONFIG, runs.STATUS, runs.METRICS, runs.REPORT, runs.DATA_REPORT):
        assert (run_dir / name).is_file(), name
    assert run.has_checkpoint and (run_dir / runs.CHECKPOINT / runs.STATE_FILE).is_file()
    assert run.has_adapter and run.export_info()["method"] == method
    resolved = yaml.safe_load((run_dir / runs.CONFIG).read_text())
    assert resolved["adapter"]["method"] == method and resolved["train"]["seed"] == 42  # every default filled in

    report = run.report()
    assert report["total_step"] == 16 and report["steps_done"] == 16
    assert set(report["test"]) >= {"mcc", "f1", "accuracy", "auroc", "auprc", "confusion_matrix"}
    assert np.array(report["test"]["confusion_matrix"]).sum() == report["test"]["n"] == 64
    dev_records = [m for m in run.metrics() if "dev_mcc" in m]
    assert [m["step"] for m in dev_records] == [4, 8, 12, 16]
    best_dev = max(m["dev_mcc"] for m in dev_records)
    assert report["dev_at_selection"]["mcc"] == pytest.approx(best_dev, abs=1e-6)  # the dev-selected state
    if method not in ("adalora", "ars"):  # nothing is masked at export: the reported dev is the selected one
        assert report["dev"]["mcc"] == pytest.approx(best_dev, abs=1e-6)
    exported = report["parameters"].pop("exported")
    assert report["plan"]["total_step"] == 16 and report["plan"]["parameters"] == report["parameters"]
    if method in ("adalora", "ars"):  # the export is truncated to the final rank pattern
        assert 0 < exported < report["parameters"]["trainable"]
    elif method != "full":
        assert exported == report["parameters"]["trainable"]
    percent = report["parameters"]["percent"]
    if method in ("lora", "adalora", "ars"):
        assert 0 < percent < 100
    if method == "full":
        assert percent == pytest.approx(100.0)

    ranks = run.ranks()
    if method in ("adalora", "ars"):
        assert ranks, "budgeted methods log every allocation"
        for record in ranks:
            assert set(record) >= {"step", "budget", "active", "lambdas", "pruned", "reintroduced"}
            if method == "ars":
                assert sum(record["active"].values()) == record["budget"]
        assert ranks[-1]["budget"] == 2 * len(ranks[-1]["active"])  # target_r x modules at the end
    else:
        assert ranks == []


def test_exported_adapter_loads_with_peft_and_reproduces_the_report(tiny_bert_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    run_dir = train(tiny_config(tiny_bert_dir, tmp_path, "ars"))
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    peft_model = PeftModel.from_pretrained(base, str(run_dir / runs.ADAPTER))
    ranks = {n: p.shape[0] for n, p in peft_model.named_parameters() if "lora_E" in n}
    final = runs.load_run(run_dir).report()["final_ranks"]
    assert sorted(ranks.values()) == sorted(final.values())  # truncated to the selected rank pattern

    results = evaluate_run(run_dir)
    report = runs.load_run(run_dir).report()
    assert results["test"]["mcc"] == pytest.approx(report["test"]["mcc"], abs=1e-6)
    assert results["test"]["loss"] == pytest.approx(report["test"]["loss"], abs=1e-4)


@pytest.mark.parametrize("method", ["lora", "ars", "head", "full"])
def test_attention_pooling_trains_its_scorer_and_the_export_reproduces_the_report(tiny_bert_dir, tmp_path, method):
    """The pooler's token scorer trains with the head, is exported with it, and the export computes the report."""
    from safetensors.torch import load_file

    run_dir = train(tiny_config(tiny_bert_dir, tmp_path, method, model={"pooling": "attention", "dtype": "float32"}))
    run = runs.load_run(run_dir)
    assert run.state == "done" and run.report()["pooling"] == "attention"
    files = list((run_dir / runs.ADAPTER).glob("*.safetensors"))
    scorer = {k: v for f in files for k, v in load_file(str(f)).items() if "token_score" in k}
    assert any(k.endswith("token_score.weight") for k in scorer), sorted(scorer)
    assert all(v.abs().sum() > 0 for k, v in scorer.items() if k.endswith("weight")), "the scorer starts at zero and must move"

    results = evaluate_run(run_dir)
    report = run.report()
    assert results["test"]["mcc"] == pytest.approx(report["test"]["mcc"], abs=1e-6)
    assert results["test"]["loss"] == pytest.approx(report["test"]["loss"], abs=1e-5)
    trained = load_trained(run_dir)
    pooler = trained.model.get_base_model().bert.pooler if hasattr(trained.model, "get_base_model") else trained.model.bert.pooler
    loaded_scorer = pooler.token_score
    weight = getattr(loaded_scorer, "weight", None)
    if weight is None:  # peft's ModulesToSaveWrapper (unmerged): the trained copy is active
        weight = loaded_scorer.modules_to_save["default"].weight
    assert weight.abs().sum() > 0, "inference must read the trained scorer, not a fresh zero one"


def test_ars_with_rho_zero_makes_the_same_masks_as_peft_adalora(tiny_bert_dir, tmp_path):
    adalora = train(tiny_config(tiny_bert_dir, tmp_path / "a", "adalora"))
    ars = train(tiny_config(tiny_bert_dir, tmp_path / "b", "ars", adapter={"ars": {"reintroduce_rate": 0.0}}))
    ranks_a, ranks_b = runs.load_run(adalora).ranks(), runs.load_run(ars).ranks()
    assert [r["step"] for r in ranks_a] == [r["step"] for r in ranks_b]
    for ra, rb in zip(ranks_a, ranks_b):
        assert ra["active"] == rb["active"]
        assert ra["pruned"] == rb["pruned"]
        assert ra["reintroduced"] == rb["reintroduced"]
        for module in ra["lambdas"]:
            np.testing.assert_allclose(ra["lambdas"][module], rb["lambdas"][module], atol=1e-6)


def test_lambda_lr_scale_puts_the_singular_values_in_their_own_group_and_they_move_faster(tiny_bert_dir, tmp_path):
    from lingo_core.adapters import build_adapter
    from lingo_core.config import config_from_dict
    from lingo_core.models import load_model

    def adapted_with(scale: float):
        adapter = {"method": "adalora", "adalora": {"init_r": 4, "target_r": 2, "tinit": 1, "tfinal": 2, "deltaT": 2, "lambda_lr_scale": scale}}
        return build_adapter(load_model(ModelConfig(name=str(tiny_bert_dir)), 2), config_from_dict({"adapter": adapter}).adapter, total_step=10, seed=0)

    from lingo_core.config import ModelConfig

    adapted = adapted_with(1.0)
    trainable = {id(p) for p in adapted.model.parameters() if p.requires_grad}
    one = adapted.param_groups(1e-3)
    assert len(one) == 1 and {id(p) for p in one[0]["params"]} == trainable
    adapted = adapted_with(10.0)
    trainable = {id(p) for p in adapted.model.parameters() if p.requires_grad}
    lambdas = {id(p) for n, p in adapted.model.named_parameters() if ".lora_E." in n}
    others, lam = adapted.param_groups(1e-3)
    assert {id(p) for p in lam["params"]} == lambdas and lam["lr"] == pytest.approx(1e-2) and others["lr"] == 1e-3
    assert {id(p) for p in others["params"]} == trainable - lambdas
    lora = build_adapter(load_model(ModelConfig(name=str(tiny_bert_dir)), 2), config_from_dict({"adapter": {"method": "lora", "adalora": {"lambda_lr_scale": 10.0}}}).adapter, 10)
    assert len(lora.param_groups(1e-3)) == 1  # the setting belongs to the SVD adapters' section; LoRA never reads it

    # end to end: with the scale, the singular values end up larger (same seed, same data, same steps)
    def max_lambda(run_dir):
        last = runs.load_run(run_dir).ranks()[0]  # before pruning has zeroed most of them
        return max(max(v) for v in last["lambdas"].values())

    base = train(tiny_config(tiny_bert_dir, tmp_path / "1", "adalora"))
    scaled = train(tiny_config(tiny_bert_dir, tmp_path / "10", "adalora", adapter={"adalora": {"lambda_lr_scale": 10.0}}))
    assert max_lambda(scaled) > 3 * max_lambda(base)
    assert yaml.safe_load((scaled / "config.yaml").read_text())["adapter"]["adalora"]["lambda_lr_scale"] == 10.0


def test_same_seed_same_masks_and_other_seed_other_masks(tiny_bert_dir, tmp_path):
    first = runs.load_run(train(tiny_config(tiny_bert_dir, tmp_path / "1", "ars", adapter={"ars": {"reintroduce_rate": 0.3}}))).ranks()
    second = runs.load_run(train(tiny_config(tiny_bert_dir, tmp_path / "2", "ars", adapter={"ars": {"reintroduce_rate": 0.3}}))).ranks()
    assert [r["active"] for r in first] == [r["active"] for r in second]
    assert [r["sampled"] for r in first] == [r["sampled"] for r in second]
    other = runs.load_run(
        train(tiny_config(tiny_bert_dir, tmp_path / "3", "ars", adapter={"ars": {"reintroduce_rate": 0.3}}, train={"seed": 7}))
    ).ranks()
    assert [r["sampled"] for r in first] != [r["sampled"] for r in other]


def test_killed_run_resumes_to_the_same_masks_and_metrics(tiny_bert_dir, tmp_path):
    cfg = tiny_config(tiny_bert_dir, tmp_path / "reference", "ars", adapter={"ars": {"reintroduce_rate": 0.3}})
    reference = runs.load_run(train(cfg))

    config_file = tmp_path / "config.yaml"
    cfg.output_dir = str(tmp_path / "killed")
    config_file.write_text(save_config(cfg))
    # die like kill -9 right after the checkpoint of step 8 has been written
    die_after_checkpoint = cli_dying_after_checkpoint(8)
    killed = subprocess.run(
        [sys.executable, "-c", die_after_checkpoint, "train", str(config_file)],
        cwd=PROJECT_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600,
    )
    assert killed.returncode == 137, killed.stderr[-2000:]
    (run_dir,) = list((tmp_path / "killed").iterdir())
    run = runs.load_run(run_dir)
    assert run.state == "interrupted" and run.resumable
    assert max(r["step"] for r in run.metrics()) == 8

    resumed = run_cli("train", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.strip().splitlines()[-1] == str(run_dir)
    run = runs.load_run(run_dir)
    assert run.state == "done" and run.status["resumed_from_step"] == 8
    assert [r["active"] for r in run.ranks()] == [r["active"] for r in reference.ranks()]
    assert [r["sampled"] for r in run.ranks()] == [r["sampled"] for r in reference.ranks()]
    losses = [m["loss"] for m in run.metrics() if "loss" in m and "dev_loss" not in m]
    reference_losses = [m["loss"] for m in reference.metrics() if "loss" in m and "dev_loss" not in m]
    np.testing.assert_allclose(losses, reference_losses, rtol=1e-5)
    assert run.report()["test"]["mcc"] == pytest.approx(reference.report()["test"]["mcc"], abs=1e-9)
    assert run.report()["test"]["auroc"] == pytest.approx(reference.report()["test"]["auroc"], abs=1e-6)


def test_opt_code_path_with_byte_level_bpe(tiny_opt_dir, tmp_path):
    for sequence in ("native", "nucleotide", "kmer"):
        run_dir = train(tiny_config(tiny_opt_dir, tmp_path / sequence, "ars", encoding={"sequence": sequence, "k": 4}))
        run = runs.load_run(run_dir)
        assert run.state == "done", run.status.get("error")
        trained = load_trained(run_dir)
        assert trained.loaded.family == "opt"
        encoded = trained.encoder.encode_with_spans("ACGTACGTTTGA")
        covered = sorted({i for span in encoded.spans if span for i in range(*span)})
        assert covered == list(range(12))
    # nucleotide tokens are new vocabulary rows and count as trainable parameters
    report = runs.load_run(tmp_path / "nucleotide" / os.listdir(tmp_path / "nucleotide")[0]).report()
    native = runs.load_run(tmp_path / "native" / os.listdir(tmp_path / "native")[0]).report()
    assert report["parameters"]["trainable"] - native["parameters"]["trainable"] == 5 * 32
    # the exported adapter restores the trained nucleotide rows exactly
    nucleotide_dir = tmp_path / "nucleotide" / os.listdir(tmp_path / "nucleotide")[0]
    assert evaluate_run(nucleotide_dir)["test"]["loss"] == pytest.approx(report["test"]["loss"], abs=1e-5)


def test_a_decoder_reading_every_token_trains_and_its_export_reproduces_the_report(tiny_opt_dir, tmp_path):
    """LoRA on a decoder with attention pooling over every token: the run records the pooling, the pooler's
    scorer trains with the head, and the exported adapter (scorer included) reproduces the reported test metrics."""
    run_dir = train(tiny_config(tiny_opt_dir, tmp_path, "lora", model={"pooling": "attention"}))
    run = runs.load_run(run_dir)
    assert run.state == "done", run.status.get("error")
    report = run.report()
    assert report["pooling"] == "attention"
    trained = load_trained(run_dir)
    assert trained.loaded.pooling == "attention"
    scorer = [p for n, p in trained.model.named_parameters() if "token_score.modules_to_save" in n and n.endswith("weight")]
    assert len(scorer) == 1 and float(scorer[0].abs().sum()) > 0  # trained away from its zero start, and exported
    reloaded = evaluate_run(run_dir)["test"]
    assert reloaded["loss"] == pytest.approx(report["test"]["loss"], abs=1e-5)
    assert reloaded["mcc"] == pytest.approx(report["test"]["mcc"], abs=1e-9)


def test_bad_input_raises_before_any_run_directory_exists(tiny_bert_dir, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("sequence,label\nACGTACGT,0\nACGTXCGT,1\nACGTTTGA,0\n")
    cfg = tiny_config(tiny_bert_dir, tmp_path / "runs", "ars", data={"task": str(bad)})
    with pytest.raises(DataError, match=r"bad\.csv.*line 3"):
        train(cfg)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())

    result = run_cli("train", "configs/quickstart.yaml", "--set", f"data.task={bad}", "--set", f"output_dir={tmp_path / 'cli'}")
    assert result.returncode == 2
    assert "bad.csv" in result.stderr and "line 3" in result.stderr
    assert not (tmp_path / "cli").exists() or not any((tmp_path / "cli").iterdir())


def test_failed_run_records_error_and_traceback(tiny_bert_dir, tmp_path):
    # a schedule that cannot fit in the steps fails inside the run: the run says why
    cfg = tiny_config(tiny_bert_dir, tmp_path, "adalora", adapter={"adalora": {"tinit": 10, "tfinal": 10}})
    with pytest.raises(ValueError, match="rank budget schedule is empty"):
        train(cfg)
    (run_dir,) = list(tmp_path.iterdir())
    status = runs.load_run(run_dir).status
    assert status["state"] == "failed"
    assert "rank budget schedule is empty" in status["error"] and "Traceback" in status["traceback"]


def test_cancel_request_before_the_start_trains_nothing(tiny_bert_dir, tmp_path):
    cfg = tiny_config(tiny_bert_dir, tmp_path, "lora")
    writer = runs.RunWriter.create(tmp_path, save_config(cfg), "lora", "demo")
    runs.request_cancel(writer.path)
    from lingo_core.train import train_queued

    train_queued(writer.path)
    assert runs.load_run(writer.path).state == "cancelled"


def test_cancel_writes_a_checkpoint_and_resume_ends_where_an_uncancelled_run_ends(tiny_bert_dir, tmp_path, monkeypatch):
    """Cancelling keeps the work: the trainer checkpoints the step where it stops (here step 3, before
    the first scheduled checkpoint), and resuming from it gives the uncancelled run's result."""
    from lingo_core.train import resume

    cfg = tiny_config(tiny_bert_dir, tmp_path / "reference", "ars", adapter={"ars": {"reintroduce_rate": 0.3}})
    reference = runs.load_run(train(cfg))
    log_metrics = runs.RunWriter.log_metrics

    def cancel_at_step_3(self, record):
        log_metrics(self, record)
        if record.get("step") == 3 and "loss" in record:
            runs.request_cancel(self.path)  # as the dashboard's Cancel button does, mid-run

    monkeypatch.setattr(runs.RunWriter, "log_metrics", cancel_at_step_3)
    cfg.output_dir = str(tmp_path / "cancelled")
    train(cfg)  # returns the cancelled run
    monkeypatch.setattr(runs.RunWriter, "log_metrics", log_metrics)
    (run_dir,) = list((tmp_path / "cancelled").iterdir())
    run = runs.load_run(run_dir)
    assert run.state == "cancelled" and run.resumable
    assert runs.RunWriter(run_dir).load_state()["loop"]["step"] == 3
    resume(run_dir)
    run = runs.load_run(run_dir)
    assert run.state == "done" and run.status["resumed_from_step"] == 3
    assert [r["active"] for r in run.ranks()] == [r["active"] for r in reference.ranks()]
    assert run.report()["test"] == reference.report()["test"]


def test_quickstart_config_and_gue_configs_load():
    for name in ("quickstart", "gue_prom_core_tata_lora", "gue_prom_core_tata_adalora", "gue_prom_core_tata_ars"):
        cfg = load_config(PROJECT_ROOT / "configs" / f"{name}.yaml")
        assert cfg.model.name == "minilm-l6"
    budgets = {m: load_config(PROJECT_ROOT / "configs" / f"gue_prom_core_tata_{m}.yaml").adapter for m in ("lora", "adalora", "ars")}
    assert budgets["lora"].lora.r == budgets["ars"].adalora.init_r == budgets["adalora"].adalora.init_r


def test_readme_tf_recipe_is_the_study_setting_whose_numbers_it_quotes():
    """The README's TF-binding command (the LoRA config with --set overrides) quotes the medium study's cells:
    on each TF task exactly seeds 0-2 of the committed cell records have its config (bar the seed), and
    their test MCCs are the ones the README gives."""
    import re
    import shlex

    from lingo_core.config import config_values

    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    [command] = [b for b in re.findall(r"```bash\n(.*?)```", readme, re.S) if "data.task=gue/tf/4" in b]
    words = shlex.split(command.replace("\\\n", " "))
    assert words[:4] == ["python", "-m", "lingo_core", "train"]
    overrides = [words[i + 1] for i, word in enumerate(words) if word == "--set"]

    def setting(values: dict) -> dict:
        values = json.loads(json.dumps(values))
        for key in ("seed", "progress_bar"):
            values["train"].pop(key)
        for key in ("output_dir", "run_name"):
            values.pop(key, None)
        return values

    recipe = config_values(load_config(PROJECT_ROOT / words[4], overrides))
    records = [json.loads(p.read_text()) for p in sorted((PROJECT_ROOT / "results" / "medium_study" / "cells").glob("tf_*-lora-*.json"))]
    for task in ("gue/tf/4", "gue/tf/0"):
        wanted = setting({**recipe, "data": {**recipe["data"], "task": task}})
        same = sorted((r["seed"], r["test"]["mcc"]) for r in records if setting(r["config"]) == wanted)
        assert [seed for seed, _ in same] == [0, 1, 2], task
        quoted = " / ".join(f"{mcc:.3f}" for _, mcc in same)
        assert f"{task.removeprefix('gue/')} " in readme and quoted in " ".join(readme.split()), (task, quoted)


def test_two_process_training_makes_identical_masks_on_every_process(tiny_bert_dir, tmp_path):
    """Multi-process (torchrun, gloo on CPU): one run directory, masks checked equal at every allocation."""
    cfg = tiny_config(tiny_bert_dir, tmp_path / "runs", "ars", adapter={"ars": {"reintroduce_rate": 0.3}}, train={"batch_size": 5})
    config_file = tmp_path / "config.yaml"
    config_file.write_text(save_config(cfg))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "lingo_core", "train", str(config_file)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = list((tmp_path / "runs").iterdir())
    report = runs.load_run(run_dir).report()
    assert report["num_processes"] == 2
    allocations = len(runs.load_run(run_dir).ranks())
    assert allocations > 0 and report["allocations_checked_identical_across_processes"] == allocations
    for record in runs.load_run(run_dir).ranks():
        assert sum(record["active"].values()) == record["budget"]


def test_restored_selection_computes_what_the_export_computes(tiny_bert_dir, tmp_path):
    """A state selected between allocations has regrown pruned lambdas: restoring it masks them, as the export does."""
    from lingo_core.adapters import get_method
    from lingo_core.inference import attach_adapter, collate, load_backbone, restore_selected, run_task_info

    run_dir = train(tiny_config(tiny_bert_dir, tmp_path / "runs", "ars"))
    run = runs.load_run(run_dir)
    best = run.load_best()
    pattern = best["rank_pattern"]
    assert pattern and not all(all(mask) for mask in pattern.values()), "the selected state has pruned triplets"
    for name, mask in pattern.items():  # what training does between allocations: pruned lambdas regrow
        key = next(k for k in best["trainable"] if k.endswith(name.split("base_model.model.")[-1]) or name in k)
        regrown = best["trainable"][key].clone()
        regrown[~torch.tensor(mask)] = 100.0
        best["trainable"][key] = regrown

    cfg, info = run.typed_config(), run_task_info(run)
    batch = collate(load_backbone(cfg, info).encoder.encode_batch(["ACGTTATAAAAGGCCAATCG" * 3, "GGGCCCAAATTT" * 4])[0], 0)

    def logits(model):
        model.eval()
        with torch.no_grad():
            return model(**batch).logits

    selected = attach_adapter(load_backbone(cfg, info).loaded, cfg, best["total_step"])
    selected.load_trainable_state(best["trainable"])
    unmasked = logits(selected.model)
    restore_selected(selected, best)
    restored = logits(selected.model)
    selected.export(tmp_path / "export")
    exported = get_method("ars").model_class().load_export(load_backbone(cfg, info).loaded, tmp_path / "export")
    torch.testing.assert_close(restored, logits(exported), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(unmasked, restored, atol=1e-4), "regrown lambdas must not reach the evaluated model"


def test_checkpoints_that_could_run_code_are_refused(tiny_bert_dir, tmp_path):
    """Run directories are shared: a best.pt holding an arbitrary object is never unpickled."""
    from lingo_core.inference import load_trained

    run_dir = train(tiny_config(tiny_bert_dir, tmp_path / "runs", "lora"))
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import shutil

    shutil.rmtree(run_dir / runs.ADAPTER)  # no export: loading falls back to the best checkpoint
    torch.save({"step": 1, "trainable": {}, "payload": Exploit()}, run_dir / runs.CHECKPOINT / runs.BEST_FILE)
    with pytest.raises(runs.RunFileError, match="not loaded"):
        load_trained(run_dir)
    assert not marker.exists()


def test_ars_with_rho_min_exports_a_sampled_pattern_and_records_update_norms(tiny_bert_dir, tmp_path):
    cfg = tiny_config(tiny_bert_dir, tmp_path / "runs", "ars", adapter={"ars": {"reintroduce_rate": 0.5, "rho_min": 0.25}})
    run = runs.load_run(train(cfg))
    final = run.ranks()[-1]
    assert final["step"] == 12 and final["rho"] == pytest.approx(0.25)  # the last allocation (16 - tfinal 4)
    assert sum(len(v) for v in final["sampled"].values()) == round(0.25 * final["budget"])
    assert sum(final["active"].values()) == final["budget"]
    assert set(final["update_norms"]) == set(final["active"]) and all(v >= 0 for v in final["update_norms"].values())
    report = run.report()
    assert set(report["update_norms"]) == set(final["active"]) and report["pooling"] == "cls"


@pytest.mark.parametrize("method", ["lora", "ars"])
def test_nucleotide_tokens_start_at_their_letters_train_and_are_exported(tiny_bert_dir, tmp_path, method):
    from lingo_core.models import load_model

    cfg = tiny_config(tiny_bert_dir, tmp_path, method, encoding={"sequence": "nucleotide"})
    run_dir = train(cfg)
    trained = load_trained(run_dir)
    start = load_model(cfg.model, 2, False, cfg.encoding)
    new_ids = start.new_token_ids
    start_rows = start.model.get_input_embeddings().weight[new_ids].detach()
    vocab = start.tokenizer.get_vocab()
    letters = start.model.get_input_embeddings().weight[[vocab[b] for b in "acgtn"]].detach()
    torch.testing.assert_close(start_rows, letters, rtol=0, atol=0)  # the letters' own embeddings
    exported_rows = trained.model.get_input_embeddings().weight[new_ids].detach().float()
    assert not torch.allclose(exported_rows[:4], start_rows[:4])  # the rows trained, and the export carries them
    # the export is what was evaluated: reloading it reproduces the reported test metrics
    report = runs.load_run(run_dir).report()
    assert evaluate_run(run_dir)["test"]["loss"] == pytest.approx(report["test"]["loss"], abs=1e-4)


@pytest.mark.parametrize("method", ["lora", "ars"])
def test_skipping_peft_input_casts_under_bf16_autocast_changes_no_training_step(tiny_bert_dir, tmp_path, method, monkeypatch):
    from lingo_core import train as train_module
    from lingo_core.adapters import build_adapter
    from lingo_core.dropout import use_uniform_dropout
    from lingo_core.inference import seed_everything
    from lingo_core.models import load_model, skip_adapter_input_casts, store_frozen_weights

    cfg = tiny_config(tiny_bert_dir, tmp_path, method, model={"dtype": "bfloat16"})
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randint(5, 90, (8, 24), generator=generator), torch.randint(0, 2, (8,), generator=generator)) for _ in range(4)]

    def trained_parameters(skip: bool) -> dict[str, torch.Tensor]:
        seed_everything(0)
        adapted = build_adapter(load_model(cfg.model, 2, False, cfg.encoding), cfg.adapter, total_step=16, seed=0)
        model = adapted.model
        use_uniform_dropout(model, backbone=True)
        store_frozen_weights(model, torch.bfloat16)
        if skip:
            assert skip_adapter_input_casts(model) > 0
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        model.train()
        seed_everything(1)  # the same dropout masks in both
        for ids, labels in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            torch.nn.functional.cross_entropy(logits.float(), labels).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    with_casts, without = trained_parameters(False), trained_parameters(True)
    assert with_casts.keys() == without.keys()
    for name, value in with_casts.items():
        assert torch.equal(value, without[name]), name  # bit-identical, dropout included

    # the trainer skips them exactly when it trains under bf16 autocast
    calls = []
    monkeypatch.setattr(train_module, "skip_adapter_input_casts", lambda model: calls.append(skip_adapter_input_casts(model)))
    train(tiny_config(tiny_bert_dir, tmp_path / "bf16", method, model={"dtype": "bfloat16"}, train={"max_steps": 8}))
    train(tiny_config(tiny_bert_dir, tmp_path / "fp32", method, model={"dtype": "float32"}, train={"max_steps": 8}))
    assert len(calls) == 1 and calls[0] > 0


def _train_reading_batches(cfg, prepared, tmp_path, monkeypatch, name: str):
    """Train ``cfg`` from ``prepared`` into a new run and return the run with every training batch's
    (token ids, label) in the order the loop read them."""
    import lingo_core.train as train_module

    seen: list[tuple[list[int], int]] = []
    collate = train_module.collate

    def spy(ids, pad_id, labels):
        seen.extend((list(i), int(label)) for i, label in zip(ids, labels))
        return collate(ids, pad_id, labels)

    monkeypatch.setattr(train_module, "collate", spy)
    writer = runs.RunWriter.create(tmp_path / "runs", save_config(cfg), cfg.adapter.method, cfg.data.task, name)
    return runs.load_run(train_module.Trainer(cfg, writer, prepared=prepared).run()), seen


def test_reverse_complement_augmentation_reads_each_sequence_on_a_seeded_random_strand(tiny_bert_dir, tmp_path, monkeypatch):
    from lingo_core.sequence_input import reverse_complement
    from lingo_core.train import prepare, strand_flips

    cfg = tiny_config(tiny_bert_dir, tmp_path, "lora", data={"augment": "reverse_complement"})
    prepared = prepare(cfg)
    forward, reverse = prepared.splits["train"], prepared.splits["train_reverse_complement"]
    sequences = prepared.task.train.sequences
    assert len(reverse) == len(forward)
    assert reverse.input_ids[0] == prepared.encoder.encode_batch([reverse_complement(sequences[0])])[0][0]  # same prompt, other strand
    flips = [strand_flips(len(forward), cfg.train.seed, epoch) for epoch in range(2)]
    assert 0.3 < flips[0].mean() < 0.7 and (flips[0] != flips[1]).any()  # a coin per sequence and epoch
    np.testing.assert_array_equal(strand_flips(len(forward), cfg.train.seed, 0), flips[0])  # seeded: a resumed run agrees

    run, seen = _train_reading_batches(cfg, prepared, tmp_path, monkeypatch, "rc")
    assert run.state == "done" and run.data_report()["augment"]["method"] == "reverse_complement"
    by_ids = {tuple(forward.input_ids[i]): ("+", i) for i in range(len(forward))}
    by_ids.update({tuple(reverse.input_ids[i]): ("-", i) for i in range(len(reverse))})
    strands = [by_ids[tuple(ids)] for ids, _ in seen]
    assert {s for s, _ in strands} == {"+", "-"}
    for (ids, label), (_, i) in zip(seen, strands):
        assert label == int(forward.labels[i])  # the label travels with its sequence on either strand
    # the first epoch's batches read exactly the strands its coins chose
    first_epoch = strands[: len(forward)]
    assert all((strand == "-") == bool(flips[0][i]) for strand, i in first_epoch)


def test_crop_reads_each_training_sequence_in_a_seeded_window_per_epoch(tiny_bert_dir, tmp_path, monkeypatch):
    from lingo_core.sequence_input import reverse_complement
    from lingo_core.train import crop_windows, prepare, strand_flips

    # the windows: up to `crop` bases off each end, at most a quarter of the sequence per end, seeded per epoch
    lengths = np.array([8, 40, 101, 101, 3000] * 40)
    starts, ends = crop_windows(lengths, 5, seed=0, epoch=0)
    assert (starts >= 0).all() and (starts <= np.minimum(5, lengths // 4)).all()
    assert (lengths - ends >= 0).all() and (lengths - ends <= np.minimum(5, lengths // 4)).all()
    assert {int(a) for a in starts[lengths == 101]} == set(range(6))  # every amount from 0 to 5 is drawn
    again, other = crop_windows(lengths, 5, seed=0, epoch=0), crop_windows(lengths, 5, seed=0, epoch=1)
    np.testing.assert_array_equal(again[0], starts)  # a resumed run reads the same windows
    assert (other[0] != starts).any()
    assert (crop_windows(lengths, 0, 0, 0)[0] == 0).all() and (crop_windows(lengths, 0, 0, 0)[1] == lengths).all()

    cfg = tiny_config(tiny_bert_dir, tmp_path, "lora", data={"augment": "reverse_complement", "crop": 4})
    prepared = prepare(cfg)
    sequences, labels = prepared.task.train.sequences, prepared.task.train.labels
    assert "train_reverse_complement" not in prepared.splits  # each epoch encodes its own strands and windows
    run, seen = _train_reading_batches(cfg, prepared, tmp_path, monkeypatch, "crop")
    assert run.state == "done" and run.data_report()["crop"]["bases"] == 4

    # the first epoch read each sequence on its coin's strand, cut to its window, with its own label
    flips = strand_flips(len(sequences), cfg.train.seed, 0)
    read = [reverse_complement(s) if flips[i] else s for i, s in enumerate(sequences)]
    starts, ends = crop_windows([len(s) for s in read], 4, cfg.train.seed, 0)
    windows = [s[a:b] for s, a, b in zip(read, starts, ends)]
    expected = {tuple(ids): i for i, ids in enumerate(prepared.encoder.encode_batch(windows)[0])}
    first_epoch = seen[: len(sequences)]
    assert all(tuple(ids) in expected and label == int(labels[expected[tuple(ids)]]) for ids, label in first_epoch)
    assert sorted(expected[tuple(ids)] for ids, _ in first_epoch) == list(range(len(sequences)))
    assert sum(len(w) < len(s) for w, s in zip(windows, read)) > len(read) / 2  # most sequences were cut
    # dev and test are read whole: the exported model's metrics are those of the uncropped splits
    assert prepared.splits["dev"].input_ids == prepared.encoder.encode_batch(prepared.task.dev.sequences)[0]


def test_scoring_both_strands_selects_reports_and_predicts_on_the_mean_over_strands(tiny_bert_dir, tmp_path):
    from lingo_core.data import load_task
    from lingo_core.predict import load_predictor
    from lingo_core.sequence_input import reverse_complement

    run_dir = train(tiny_config(  # fp32: the comparisons below are closer than bf16 rounding
        tiny_bert_dir, tmp_path, "ars", data={"augment": "reverse_complement", "eval_strands": "both"}, model={"dtype": "float32"}))
    run = runs.load_run(run_dir)
    report = run.report()
    assert run.state == "done" and report["eval_strands"] == "both" and run.eval_strands == "both"
    assert "reverse complement" in run.data_report()["eval_strands"]
    # the dev metrics logged at the selected step (what chose it) are those of the exported model on both strands
    logged = next(m for m in run.metrics() if m.get("step") == report["selected_step"] and "dev_mcc" in m)
    assert logged["dev_mcc"] == pytest.approx(report["dev"]["mcc"], abs=1e-6)

    # the saved test probabilities are the mean of each sequence's and its reverse complement's, as predict gives them
    sequences = list(load_task(run.typed_config().data).test.sequences)
    saved = run.predictions("test").filter(like="p_").to_numpy()
    predictor = load_predictor(run_dir)
    assert predictor.scores_both_strands
    by_default = predictor.predict(sequences)
    assert by_default.reverse_complement and by_default.to_frame()["rc_averaged"].all()
    forward = predictor.predict(sequences, reverse_complement=False).probabilities
    other = predictor.predict([reverse_complement(s) for s in sequences], reverse_complement=False).probabilities
    np.testing.assert_allclose((forward + other) / 2, by_default.probabilities, atol=1e-6)
    # (the tiny model barely moves from 0.5, so the strands differ by ~1e-5: the saved table is written to 6 decimals)
    off_by_default, off_forward = np.abs(by_default.probabilities - saved).max(), np.abs(forward - saved).max()
    assert off_by_default < 2e-6 and off_forward > 5 * off_by_default  # one strand alone is not what the run reported

    # the command line follows the run too, unless told otherwise
    import pandas as pd

    from lingo_core.cli import main

    for flags, averaged in (([], True), (["--no-rc"], False), (["--rc"], True)):
        out = tmp_path / f"cli{len(flags)}{averaged}.csv"
        assert main(["predict", str(run_dir), *sequences[:3], "--out", str(out), *flags]) == 0
        frame = pd.read_csv(out)
        assert frame["rc_averaged"].tolist() == [averaged] * 3
        np.testing.assert_allclose(frame.filter(like="prob_").to_numpy(), (by_default.probabilities if averaged else forward)[:3], atol=1e-5)

    # re-evaluating the exported adapter reproduces the report, on both strands
    results = evaluate_run(run_dir)
    assert results["test"]["mcc"] == pytest.approx(report["test"]["mcc"], abs=1e-6)
    assert results["test"]["loss"] == pytest.approx(report["test"]["loss"], abs=1e-4)
