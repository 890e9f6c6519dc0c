"""The classification head only (plus the rows of new nucleotide tokens, if any): a baseline."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ...models import HEAD_NAMES, POOLER_PARAMETERS
from ..base import AdaptedModel

if TYPE_CHECKING:
    from ...config import AdapterConfig
    from ...models import LoadedModel


def is_head_parameter(name: str) -> bool:
    """The classification head's parameters, and the pooler's scorer where the pooling has one (``attention``)."""
    return any(name == head or name.startswith(head + ".") or f".{head}." in name for head in HEAD_NAMES + POOLER_PARAMETERS)


class HeadOnly(AdaptedModel):
    """Train the classification head only (plus the rows of new nucleotide tokens, if any)."""

    method = "head"

    def __init__(self, loaded: "LoadedModel", cfg: "AdapterConfig", total_step: int = 0, seed: int = 0) -> None:
        model = loaded.model
        super().__init__(model, loaded.new_token_ids)
        for name, param in model.named_parameters():
            param.requires_grad = is_head_parameter(name)
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError(f"no classification head ({', '.join(HEAD_NAMES)}) found in {type(model).__name__}")
        self._embedding_rows = 0
        if self.new_token_ids:
            embedding = model.get_input_embeddings().weight
            embedding.requires_grad = True
            row_mask = torch.zeros(embedding.shape[0], 1, dtype=embedding.dtype)
            row_mask[self.new_token_ids] = 1.0
            # only the new tokens' rows learn; the pretrained vocabulary stays frozen
            embedding.register_hook(lambda grad: grad * row_mask.to(grad.device))
            self._embedding_rows = embedding.shape[0]
            self._embedding_dim = embedding.shape[1]

    def _extra_trainable(self) -> int:
        if not self._embedding_rows:
            return 0
        return (len(self.new_token_ids) - self._embedding_rows) * self._embedding_dim
