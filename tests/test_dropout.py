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
    assert fast.scale == pytest.approx(1 / 0.8, rel=1e-4)  # p is rounded to 1/65536 and the scale follows it
    torch.testing.assert_close(y[kept], x[kept] * fast.scale)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, kept.float() * fast.scale)
    # the same mean and variance as torch's own dropout of the same input
    reference = torch.nn.functional.dropout(x.detach(), 0.2, training=True)
    y = y.detach()
    assert float(y.mean()) == pytest.approx(float(reference.mean()), abs=0.01)
    assert float(y.var()) == pytest.approx(float(reference.var()), rel=0.02)


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_every_element_of_odd_shapes_is_dropped_independently_at_rate_p(p):
    torch.manual_seed(1)
    layer = UniformDropout(p).train()
    x = torch.ones(3, 1001, 333)  # not a multiple of four elements: the last 64-bit draw is partly used
    y = layer(x)
    dropped = (y == 0).float()
    assert float(dropped.mean()) == pytest.approx(p, abs=0.002)
    # the four 16-bit lanes of one draw are independent: neighbours are dropped together at rate p^2
    pairs = dropped.flatten()[:-1] * dropped.flatten()[1:]
    assert float(pairs.mean()) == pytest.approx(p * p, abs=0.002)
    assert float(y[dropped == 0].mean()) == pytest.approx(1 / (1 - p), rel=1e-4)


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
    assert use_uniform_dropout(adapted.model, backbone=True) == len(backbone_dropouts)  # under an adapter: all
    modules = dict(adapted.model.named_modules())
    assert not any(type(m) is torch.nn.Dropout for m in modules.values())
