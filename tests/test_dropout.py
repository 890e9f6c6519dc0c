"""UniformDropout: nn.Dropout's function with a fast CPU mask, installed by the trainer on CPU."""

from __future__ import annotations

import pytest
import torch

from lingo_core.adapters import build_adapter
from lingo_core.config import ModelConfig, config_from_dict
from lingo_core.dropout import UniformDropout, use_uniform_dropout
from lingo_core.models import load_model


def test_same_distribution_and_gradient_as_nn_dropout():
    torch.manual_seed(0)
    x = torch.randn(400, 500, requires_grad=True)
    fast = UniformDropout(0.2).train()
    y = fast(x)
    kept = y != 0
    assert float(kept.float().mean()) == pytest.approx(0.8, abs=0.005)
    torch.testing.assert_close(y[kept], x[kept] / 0.8)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, kept.float() / 0.8)
    # the same mean and variance as torch's own dropout of the same input
    reference = torch.nn.functional.dropout(x.detach(), 0.2, training=True)
    y = y.detach()
    assert float(y.mean()) == pytest.approx(float(reference.mean()), abs=0.01)
    assert float(y.var()) == pytest.approx(float(reference.var()), rel=0.02)


def test_identity_in_eval_and_reproducible_from_the_global_seed():
    x = torch.randn(64, 64)
    layer = UniformDropout(0.5)
    assert torch.equal(layer.eval()(x), x)
    layer.train()
    torch.manual_seed(3)
    first = layer(x)
    torch.manual_seed(3)
    assert torch.equal(layer(x), first)  # checkpointed RNG state makes resumed runs identical
    with pytest.raises(ValueError, match="dropout probability"):
        UniformDropout(1.0)


def test_replaces_the_adapter_dropouts_and_leaves_the_backbone_alone(tiny_bert_dir):
    cfg = config_from_dict({"adapter": {"method": "lora", "lora": {"lora_dropout": 0.1}}}).adapter
    adapted = build_adapter(load_model(ModelConfig(name=str(tiny_bert_dir)), 2), cfg, total_step=10)
    adapter_dropouts = [n for n, m in adapted.model.named_modules() if type(m) is torch.nn.Dropout and ".lora_dropout." in n]
    backbone_dropouts = [n for n, m in adapted.model.named_modules() if type(m) is torch.nn.Dropout and ".lora_dropout." not in n]
    assert adapter_dropouts and backbone_dropouts
    assert use_uniform_dropout(adapted.model) == len(adapter_dropouts)
    modules = dict(adapted.model.named_modules())
    assert all(type(modules[n]) is UniformDropout and modules[n].p == 0.1 for n in adapter_dropouts)
    assert all(type(modules[n]) is torch.nn.Dropout for n in backbone_dropouts)
