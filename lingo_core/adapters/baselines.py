"""Baselines without a low-rank adapter: ``head`` (classifier only) and ``full`` fine-tuning."""

from __future__ import annotations

from typing import Optional

import torch

from ..models import HEAD_NAMES
from .base import AdaptedModel


def _is_head(name: str) -> bool:
    return any(name == head or name.startswith(head + ".") or f".{head}." in name for head in HEAD_NAMES)


class HeadOnly(AdaptedModel):
    """Train the classification head only (plus the rows of new nucleotide tokens, if any)."""

    method = "head"

    def __init__(self, model: torch.nn.Module, new_token_ids: Optional[list[int]] = None) -> None:
        super().__init__(model, new_token_ids)
        for name, param in model.named_parameters():
            param.requires_grad = _is_head(name)
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


class FullFineTune(AdaptedModel):
    """Train every parameter of the backbone and head."""

    method = "full"

    def __init__(self, model: torch.nn.Module, new_token_ids: Optional[list[int]] = None) -> None:
        super().__init__(model, new_token_ids)
        for param in model.parameters():
            param.requires_grad = True
