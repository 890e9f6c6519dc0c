"""Dropout whose mask costs a third of ``nn.Dropout``'s on a CPU.

On a CPU, ``nn.Dropout`` draws its mask with the Bernoulli kernel, one random draw per element
(7.5 ms for a 16 x 60 x 1536 activation on one core of an AMX Xeon). LoRA applies its own dropout to
the input of every adapted module (30 on MiniLM), and the backbone has ~20 more, so under bf16,
where the matmuls are cheap, the masks were ~40 % of a training step's CPU time (torch profiler,
prom_core_tata, batch 16).

:class:`UniformDropout` computes the same function, inverted dropout with keep probability
``1 - p`` and scale ``1 / (1 - p)``, from a quarter as many random draws: every 64-bit integer
drawn from the global generator gives the uniform 16-bit numbers of four elements, and an element
is kept when its number is at or above ``p`` (in units of 1 / 65536, so ``p`` is rounded to the
nearest 1 / 65536: 0.05 becomes 0.050003, and the scale uses that value, keeping the expectation
exact). The draws come from the same global generator, so checkpointed RNG state still makes resumed
runs identical; only the random stream differs from ``nn.Dropout``'s. Used while training on CPU;
evaluation never draws masks.
"""

from __future__ import annotations

import torch


LEVELS = 1 << 16  # a mask number is one of 65,536 levels: 16 random bits


class UniformDropout(torch.nn.Module):
    """Inverted dropout with a mask from 16 random bits per element; ``nn.Dropout``'s semantics."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.inplace = inplace
        self.dropped_levels = min(round(self.p * LEVELS), LEVELS - 1)  # p in units of 1 / 65536
        self.scale = LEVELS / (LEVELS - self.dropped_levels)

    def drop_mask(self, x: torch.Tensor) -> torch.Tensor:
        """True where an element of ``x`` is dropped: 16 uniform bits per element, four per 64-bit draw."""
        n = x.numel()
        draws = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
        numbers = draws.view(torch.int16)[:n].view(x.shape)  # uniform over [-32768, 32767]
        return numbers < self.dropped_levels - LEVELS // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropped_levels == 0:
            return x
        dropped = self.drop_mask(x)
        if self.inplace:
            return x.masked_fill_(dropped, 0.0).mul_(self.scale)
        return x.masked_fill(dropped, 0.0).mul_(self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_uniform_dropout(model: torch.nn.Module, backbone: bool = False) -> int:
    """Replace the adapter's dropouts (peft's ``lora_dropout``, one per adapted module) by
    :class:`UniformDropout`, and with ``backbone`` every other ``nn.Dropout`` too; returns how many
    were replaced.

    The trainer replaces the backbone's dropouts only under an adapter (LoRA, AdaLoRA, ARS), whose
    backbone is frozen; head-only and full fine-tuning compute exactly what they did.
    """
    replaced = 0
    for parent_name, parent in model.named_modules():
        if not (backbone or parent_name.endswith("lora_dropout")):
            continue
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                setattr(parent, name, UniformDropout(child.p, child.inplace))
                replaced += 1
    return replaced
