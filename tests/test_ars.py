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
