"""ARS: AdaLoRA's peft layers with the adaptive rank sampling allocator installed."""

from __future__ import annotations

from typing import Any

from ..adalora.model import AdaLoRA
from ..base import short_module_name
from .allocator import AdaptiveRankSampler


class ARS(AdaLoRA):
    """Adaptive rank sampling (see :mod:`lingo_core.adapters.ars.allocator`)."""

    method = "ars"

    def install_allocator(self) -> None:
        # peft documents the allocator as replaceable: assign a RankAllocator subclass instance.
        self.tuner.rankallocator = AdaptiveRankSampler(
            self.tuner.model, self.peft_config, self.tuner.trainable_adapter_name, self.cfg.ars, self.seed
        )

    def extra_record(self) -> dict[str, Any]:
        alloc = self.allocator
        return {
            "rho": round(alloc.last_rho, 6),
            "sampled": {short_module_name(n): idx for n, idx in alloc.last_sampled.items()},
        }

    def allocator_state(self) -> dict[str, Any]:
        return {**super().allocator_state(), "sampler": self.allocator.state()}

    def load_allocator_state(self, state: dict[str, Any]) -> None:
        super().load_allocator_state(state)
        self.allocator.load_state(state["sampler"])
