"""Dropout that costs what it should on a CPU.

``torch.nn.functional.dropout`` in training mode goes through ``native_dropout``, whose CPU kernel
draws every Bernoulli variable on a slow per-element path: on a 960 x 384 activation it took ~10x
as long as drawing the same mask with ``Tensor.bernoulli_(1 - p)`` (bench/bench_bf16.py), and more
than the bf16 matmuls around it. LoRA applies its own dropout to the input of every adapted module
(30 on MiniLM), so on a CPU the masks were the largest single cost of a training step.

:class:`BernoulliDropout` computes the same function, inverted dropout with keep probability
``1 - p`` and scale ``1 / (1 - p)``, drawing the mask with ``bernoulli_`` from the same global
generator (so checkpointed RNG state still makes resumed runs identical). Only the random stream
differs from ``nn.Dropout``'s. Used while training on CPU; evaluation never draws masks.
"""

from __future__ import annotations

import torch


class BernoulliDropout(torch.nn.Module):
    """Inverted dropout with the mask drawn by ``Tensor.bernoulli_``; ``nn.Dropout``'s semantics."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = torch.empty_like(x).bernoulli_(1.0 - self.p)
        mask.mul_(1.0 / (1.0 - self.p))
        return x.mul_(mask) if self.inplace else x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_bernoulli_dropout(model: torch.nn.Module) -> int:
    """Replace every ``nn.Dropout`` in ``model`` (backbone and adapters) by :class:`BernoulliDropout`.

    Returns how many were replaced. Dropout inside fused attention kernels is not a module and is
    left as it is.
    """
    replaced = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                setattr(parent, name, BernoulliDropout(child.p, child.inplace))
                replaced += 1
    return replaced
