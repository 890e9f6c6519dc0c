"""The method registry: a method registered from outside the package trains end to end; old config keys load."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import pytest
import torch

from lingo_core import runs
from lingo_core.adapters import MethodSpec, has_rank_budget, method_names, register_method, sections_of, unregister_method
from lingo_core.adapters.base import AdaptedModel
from lingo_core.config import ConfigError, ConfigWarning, config_from_dict, load_config
from lingo_core.inference import evaluate_run, load_trained
from lingo_core.plan import plan_run
from lingo_core.train import train
from tests.conftest import PROJECT_ROOT
from tests.helpers import tiny_config


@dataclass
class BiasSettings:
    with_layer_norm: bool = field(default=False, metadata={"label": "Train LayerNorm weights too"})

    def validate(self) -> None:
        if not isinstance(self.with_layer_norm, bool):
            raise ValueError(f"with_layer_norm must be true or false, got {self.with_layer_norm!r}")


class BiasOnly(AdaptedModel):
    """BitFit-like toy: train every bias (and the head), nothing else."""

    method = "bias"

    def __init__(self, loaded, cfg, total_step=0, seed=0):
        super().__init__(loaded.model, loaded.new_token_ids)
        for name, param in self.model.named_parameters():
            is_norm = cfg.bias.with_layer_norm and "LayerNorm" in name
            param.requires_grad = name.endswith(".bias") or "classifier" in name or is_norm


@pytest.fixture
def bias_method():
    register_method(MethodSpec(name="bias", summary="Bias only: train every bias (toy)", model=BiasOnly, settings=BiasSettings))
    yield
    unregister_method("bias")


def test_a_method_registered_from_outside_trains_end_to_end(bias_method, tiny_bert_dir, tmp_path):
    assert "bias" in method_names() and sections_of("bias") == ["bias"] and not has_rank_budget("bias")
    cfg = tiny_config(tiny_bert_dir, tmp_path, "bias", adapter={"bias": {"with_layer_norm": True}})
    assert cfg.adapter.bias.with_layer_norm is True
    planned = plan_run(cfg, 160, ["no motif", "motif"])
    run = runs.load_run(train(cfg))
    report = run.report()
    assert run.state == "done" and run.export_info() == {"method": "bias", "format": runs.EXPORT_TRAINABLE}
    assert report["parameters"]["trainable"] == planned.parameters["trainable"]  # the plan is what the run does
    assert 0 < report["parameters"]["percent"] < 10
    assert run.ranks() == []  # no rank budget, no allocations
    # the export is what was evaluated: reloading it reproduces the reported test metrics
    again = evaluate_run(run.path)
    assert again["test"]["loss"] == pytest.approx(report["test"]["loss"], abs=1e-5)
    trained = load_trained(run.path)
    biases = {n: p for n, p in trained.model.named_parameters() if n.endswith("attention.self.query.bias")}
    assert biases and any(p.abs().sum() > 0 for p in biases.values())
    with pytest.raises(ConfigError, match="adapter.bias.with_layer_norm"):
        config_from_dict({"adapter": {"method": "bias", "bias": {"with_layer_norm": "sometimes"}}})


def test_unregistered_method_is_rejected_with_the_registered_names():
    with pytest.raises(ConfigError, match=r"adapter.method must be one of \['lora', 'adalora', 'ars', 'head', 'full'"):
        config_from_dict({"adapter": {"method": "bias"}})


def test_old_flat_adapter_keys_load_into_their_sections_with_a_warning(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("adapter:\n  method: ars\n  init_r: 6\n  target_r: 3\n  reintroduce_rate: 0.2\n  r: 5\n")
    with pytest.warns(ConfigWarning, match=r"adapter.init_r -> adapter.adalora.init_r.*adapter.reintroduce_rate -> adapter.ars.reintroduce_rate"):
        cfg = load_config(old)
    assert (cfg.adapter.adalora.init_r, cfg.adapter.adalora.target_r, cfg.adapter.ars.reintroduce_rate, cfg.adapter.lora.r) == (6, 3, 0.2, 5)
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['adapter.rank'\].*adalora.init_r"):
        load_config(old, ["adapter.rank=4"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the shipped configs use the new names
        for path in sorted((PROJECT_ROOT / "configs").glob("*.yaml")):
            load_config(path)


def test_plan_matches_the_trained_run_for_every_built_in_method(tiny_bert_dir, tmp_path):
    for method in ("lora", "adalora", "ars", "head", "full"):
        cfg = tiny_config(tiny_bert_dir, tmp_path / method, method)
        planned = plan_run(cfg, 160, ["no motif", "motif"])
        report = runs.load_run(train(cfg)).report()
        assert planned.total_step == report["total_step"] == 16
        assert planned.parameters == {k: v for k, v in report["parameters"].items() if k != "exported"}, method
        if has_rank_budget(method):
            records = runs.load_run(tmp_path / method / next((tmp_path / method).iterdir()).name).ranks()
            assert [r["budget"] for r in records] == [planned.schedule.at(r["step"]) for r in records]
            assert planned.budget_modules == len(records[0]["active"]) == len(planned.modules)
        else:
            assert planned.schedule is None
    assert torch.__version__.startswith("2.13")
