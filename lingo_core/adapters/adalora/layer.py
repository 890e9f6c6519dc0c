"""peft's AdaLoRA ``SVDLinear`` with a forward that costs what LoRA's costs.

peft computes ``result += (dropout(x) @ (A * E).T @ B.T) * scaling / (ranknum + 1e-5)``: two
activation-sized elementwise ops more than LoRA (the scaling and the division), and an in-place add
on the base layer's output, whose backward allocates and copies an activation-sized buffer per
module. Here the scale ``scaling / (ranknum + 1e-5)`` is folded into the small ``r x d`` matrix
``A * E`` and the update is added out of place, as peft's LoRA does. The same function up to float
rounding (``tests/test_ars.py``); merging, unmerging and the delta weight stay peft's.
"""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.adalora.layer import SVDLinear


class FusedSVDLinear(SVDLinear):
    """``SVDLinear`` whose adapter scale is applied to the rank-r factor, not to the activations."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.disable_adapters or self.merged:
            return super().forward(x, *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        for active_adapter in self.active_adapters:
            if active_adapter not in self.lora_A.keys():
                continue
            lora_A = self.lora_A[active_adapter]
            scale = self.scaling[active_adapter] / (self.ranknum[active_adapter] + 1e-5)
            x = self._cast_input_dtype(x, lora_A.dtype)
            scaled_a = lora_A * self.lora_E[active_adapter] * scale  # (r, in): tiny
            result = result + self.lora_dropout[active_adapter](x) @ scaled_a.T @ self.lora_B[active_adapter].T
        return result


def fuse_svd_layers(model: torch.nn.Module) -> int:
    """Give every peft ``SVDLinear`` in ``model`` the fused forward; returns how many were changed."""
    count = 0
    for module in model.modules():
        if type(module) is SVDLinear:
            module.__class__ = FusedSVDLinear
            count += 1
    return count
