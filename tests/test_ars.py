"""The adaptive rank sampling allocator: hard budget, sampling share, determinism, restore, paper mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lingo_core.adapters import build_adapter
from lingo_core.config import ModelConfig, config_from_dict
from lingo_core.models import load_model


def _ars(tiny_bert_dir, total_step: int = 100, **settings):
    budget = {"init_r": 4, "target_r": 2, "tinit": 10, "tfinal": 20, "deltaT": 5}
    cfg = config_from_dict({"adapter": {"method": "ars", "adalora": budget, "ars": settings}}).adapter
    loaded = load_model(ModelConfig(name=str(tiny_bert_dir)), 2)
    return build_adapter(loaded, cfg, total_step=total_step, seed=3)


def test_exactly_budget_active_and_rho_share_sampled(tiny_bert_dir):
    allocator = _ars(tiny_bert_dir, reintroduce_rate=0.2).allocator
    generator = torch.Generator().manual_seed(0)
    sampled_share = []
    for budget in range(5, 40):
        scores = torch.rand(40, generator=generator)
        active, sampled = allocator.select(scores, budget, rho=0.2)
        assert int(active.sum()) == budget
        top = torch.zeros(40, dtype=torch.bool)
        top[torch.argsort(scores, descending=True)[:budget]] = True
        outside_top = int((active & ~top).sum())
        assert outside_top <= int(sampled.sum()) == round(0.2 * budget)
        sampled_share.append(float(sampled.sum()) / budget)
        # every triplet kept deterministically is among the highest scores
        assert bool((active & ~sampled).sum() == budget - round(0.2 * budget))
    assert np.mean(sampled_share) == pytest.approx(0.2, abs=0.02)


def test_rho_zero_is_deterministic_top_b(tiny_bert_dir):
    allocator = _ars(tiny_bert_dir, reintroduce_rate=0.0).allocator
    scores = torch.randn(50)
    active, sampled = allocator.select(scores, 17, rho=0.0)
    expected = torch.zeros(50, dtype=torch.bool)
    expected[torch.topk(scores, 17).indices] = True
    assert torch.equal(active, expected) and not sampled.any()


def test_temperature_prefers_high_scores_and_uniform_does_not(tiny_bert_dir):
    scores = torch.linspace(0, 1, 200)
    counts = {}
    for temperature in (0.1, "uniform"):
        allocator = _ars(tiny_bert_dir, reintroduce_rate=0.5, temperature=temperature).allocator
        picked_rank = []
        for _ in range(100):
            _, sampled = allocator.select(scores, 40, rho=0.5)
            picked_rank.extend(torch.nonzero(sampled).view(-1).tolist())
        counts[temperature] = float(np.mean(picked_rank))
    # candidates are indices 0..179 (top 20 kept); uniform averages ~90, low temperature near the top
    assert counts["uniform"] == pytest.approx(89.5, abs=8)
    assert counts[0.1] > 150


def test_same_seed_same_draws(tiny_bert_dir):
    scores = torch.rand(60)
    first = [_ars(tiny_bert_dir, reintroduce_rate=0.3).allocator.select(scores, 30, 0.3)[1] for _ in range(2)]
    assert torch.equal(first[0], first[1])


def test_rho_decays_to_zero_and_final_phase_is_top_b(tiny_bert_dir):
    adapted = _ars(tiny_bert_dir, reintroduce_rate=0.2)
    allocator = adapted.allocator
    allocator._final = False
    assert allocator.reintroduce_rate_at(10) == pytest.approx(0.2)
    assert allocator.reintroduce_rate_at(45) == pytest.approx(0.1)
    assert allocator.reintroduce_rate_at(80) == pytest.approx(0.0)
    allocator._final = True
    assert allocator.reintroduce_rate_at(50) == 0.0


def test_rho_min_keeps_sampling_through_the_final_allocation(tiny_bert_dir):
    allocator = _ars(tiny_bert_dir, reintroduce_rate=0.2, rho_min=0.1).allocator
    allocator._final = False
    assert allocator.reintroduce_rate_at(10) == pytest.approx(0.2)
    assert allocator.reintroduce_rate_at(45) == pytest.approx(0.15)
    assert allocator.reintroduce_rate_at(80) == pytest.approx(0.1)
    allocator._final = True
    assert allocator.reintroduce_rate_at(80) == pytest.approx(0.1)  # the exported pattern is sampled too


def test_paper_mode_flips_coins_at_a_constant_rate_up_to_the_final_allocation(tiny_bert_dir):
    allocator = _ars(tiny_bert_dir, reintroduce_rate=0.1, mode="paper").allocator  # rho_decay is on by default
    for final in (False, True):
        allocator._final = final
        assert allocator.reintroduce_rate_at(10) == allocator.reintroduce_rate_at(79) == pytest.approx(0.1)


def test_rho_min_must_not_exceed_the_rate():
    from lingo_core.config import ConfigError

    with pytest.raises(ConfigError, match=r"adapter\.ars\.rho_min must be in \[0, reintroduce_rate=0.1\]"):
        config_from_dict({"adapter": {"ars": {"reintroduce_rate": 0.1, "rho_min": 0.2}}})


def _prime_scores(adapted, generator):
    """Give every lora parameter a random importance history, as after some training."""
    alloc = adapted.allocator
    for name, param in adapted.tuner.model.named_parameters():
        if "lora_" in name and "default" in name:
            alloc.exp_avg_ipt[name] = torch.rand(param.shape, generator=generator)
            alloc.exp_avg_unc[name] = torch.rand(param.shape, generator=generator)


def test_sampled_reintroduction_restores_the_last_nonzero_lambda(tiny_bert_dir):
    adapted = _ars(tiny_bert_dir, reintroduce_rate=0.5, temperature="uniform", rho_decay=False)
    alloc = adapted.allocator
    lora_e = adapted.lora_e()
    with torch.no_grad():
        for i, param in enumerate(lora_e.values()):
            param.copy_(torch.arange(1, param.numel() + 1, dtype=param.dtype).view_as(param) + 10 * i)
    original = {n: p.detach().clone().view(-1) for n, p in lora_e.items()}
    generator = torch.Generator().manual_seed(1)
    restored_seen = 0
    for step in range(15, 80, 5):
        _prime_scores(adapted, generator)
        alloc._step, alloc._final = step, False
        budget = 20
        pattern = alloc.mask_to_budget(adapted.tuner.model, budget)
        assert sum(sum(v) for v in pattern.values()) == budget
        for name, param in lora_e.items():
            values = param.detach().view(-1)
            mask = torch.tensor(pattern[name])
            assert torch.all(values[~mask] == 0)  # pruned singular values are zeroed
            sampled = alloc.last_sampled[name]
            for index in sampled:
                if values[index] != 0:
                    # a reintroduced value comes back with the value it had when it was pruned
                    assert values[index] == original[name][index]
                    restored_seen += 1
    assert restored_seen > 0


def test_regrow_keeps_the_current_value(tiny_bert_dir):
    adapted = _ars(tiny_bert_dir, reintroduce_rate=0.5, temperature="uniform", rho_decay=False, reintroduce="regrow")
    alloc = adapted.allocator
    generator = torch.Generator().manual_seed(2)
    for param in adapted.lora_e().values():
        torch.nn.init.ones_(param)
    reintroduced_nonzero = 0
    for step in range(15, 60, 5):
        _prime_scores(adapted, generator)
        alloc._step, alloc._final = step, False
        previous = {n: m.clone() for n, m in alloc.active.items()}
        pattern = alloc.mask_to_budget(adapted.tuner.model, 20)
        for name, param in adapted.lora_e().items():
            values = param.detach().view(-1)
            back = torch.tensor(pattern[name]) & ~previous.get(name, torch.ones(len(pattern[name]), dtype=torch.bool))
            reintroduced_nonzero += int((values[back] != 0).sum())
    # without gradient steps between allocations, regrown values start from zero
    assert reintroduced_nonzero == 0


def test_paper_mode_has_a_soft_budget(tiny_bert_dir):
    alloc = _ars(tiny_bert_dir, reintroduce_rate=0.1, mode="paper").allocator
    generator = torch.Generator().manual_seed(0)
    counts = []
    for _ in range(200):
        scores = torch.rand(100, generator=generator)
        active, zeroed = alloc.select_paper(scores, 50, rho=0.1)
        top = torch.zeros(100, dtype=torch.bool)
        top[torch.argsort(scores, descending=True)[:50]] = True
        assert torch.all(zeroed[~top])  # every pruned value is zeroed before the coin
        counts.append(int((~zeroed).sum()))
    # ~10% of the budget is lost at random: the published code keeps about 0.9 b nonzero values
    assert np.mean(counts) == pytest.approx(45, abs=1.0)
    assert len(set(counts)) > 3


def test_batched_orthogonal_regulariser_equals_peft(tiny_bert_dir):
    adapted = _ars(tiny_bert_dir)
    with torch.no_grad():
        for name, param in adapted.model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.normal_()
    batch = {"input_ids": torch.tensor([[101, 2054, 2003, 102]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    labels = torch.tensor([1])
    with torch.no_grad():
        adapted.model.eval()
        outputs = adapted.model(**batch, labels=labels)  # peft adds its own regulariser to this loss
        plain = torch.nn.functional.cross_entropy(outputs.logits, labels)
        ours = adapted.regularizer()
    assert float(outputs.loss - plain) == pytest.approx(float(ours), rel=1e-5)


@pytest.mark.parametrize("method", ["adalora", "ars"])
def test_batched_importance_scores_and_masks_equal_peft(tiny_bert_dir, method):
    """The batched allocator's EMAs are bit-identical to peft's RankAllocator over several steps,
    and its cached final-phase masks zero exactly what peft's list-built masks zero."""
    from peft.tuners.adalora import RankAllocator

    from lingo_core.adapters.adalora.allocator import BatchedRankAllocator

    budget = {"init_r": 4, "target_r": 2, "tinit": 10, "tfinal": 20, "deltaT": 5}
    cfg = config_from_dict({"adapter": {"method": method, "adalora": budget}}).adapter
    adapted = build_adapter(load_model(ModelConfig(name=str(tiny_bert_dir)), 2), cfg, total_step=100, seed=3)
    assert isinstance(adapted.allocator, BatchedRankAllocator)
    model = adapted.tuner.model
    reference = RankAllocator(model, adapted.peft_config, adapted.tuner.trainable_adapter_name)
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.grad = torch.randn(param.shape, generator=generator)
        adapted.allocator.update_ipt(model)
        reference.update_ipt(model)
    for table in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
        ours, peft = getattr(adapted.allocator, table), getattr(reference, table)
        assert ours.keys() == peft.keys() and len(ours) > 0
        for name in peft:
            assert torch.equal(ours[name], peft[name]), (table, name)

    with torch.no_grad():
        for param in adapted.lora_e().values():
            param.uniform_(0.5, 1.0)
    pattern = {name: [i % 2 == 0 for i in range(p.shape[0])] for name, p in adapted.lora_e().items()}
    for _ in range(2):  # the second call reuses the cached masks
        adapted.allocator.mask_using_rank_pattern(model, pattern)
        for name, param in adapted.lora_e().items():
            expected_zero = torch.tensor([not keep for keep in pattern[name]])
            assert torch.equal(param.view(-1) == 0, expected_zero), name
        with torch.no_grad():
            for param in adapted.lora_e().values():
                param.uniform_(0.5, 1.0)


def test_fused_svd_forward_equals_peft_and_export_uses_it(tiny_bert_dir, tmp_path):
    """The fused SVD layer computes peft's SVDLinear function (up to rounding), gradients included,
    and an exported AdaLoRA/ARS adapter is loaded back with the same fused layers."""
    from peft.tuners.adalora.layer import SVDLinear

    from lingo_core.adapters.adalora.layer import FusedSVDLinear
    from lingo_core.adapters.registry import get_method

    adapted = _ars(tiny_bert_dir)
    layers = [m for m in adapted.model.modules() if isinstance(m, SVDLinear)]
    assert layers and all(type(m) is FusedSVDLinear for m in layers)
    layer = layers[0]
    with torch.no_grad():
        for p in (layer.lora_A["default"], layer.lora_B["default"], layer.lora_E["default"]):
            p.normal_()
    layer.eval()
    x = torch.randn(3, 5, layer.in_features, requires_grad=True)
    fused = layer(x)
    (grad_fused,) = torch.autograd.grad(fused.square().sum(), x)
    layer.__class__ = SVDLinear  # peft's own forward on the same weights
    try:
        reference = layer(x)
        (grad_reference,) = torch.autograd.grad(reference.square().sum(), x)
    finally:
        layer.__class__ = FusedSVDLinear
    adapter_part = reference - layer.base_layer(x)
    assert adapter_part.abs().max() > 1e-3  # the adapter contributes, so the comparison means something
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_fused, grad_reference, rtol=1e-4, atol=1e-4)

    adapted.export(tmp_path / "adapter")
    reloaded = get_method("ars").model_class().load_export(
        load_model(ModelConfig(name=str(tiny_bert_dir)), 2), tmp_path / "adapter"
    )
    reloaded_layers = [m for m in reloaded.modules() if isinstance(m, SVDLinear)]
    assert reloaded_layers and all(type(m) is FusedSVDLinear for m in reloaded_layers)
