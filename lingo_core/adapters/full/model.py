"""Full fine-tuning: every parameter of the backbone and head trains (a baseline)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base import AdaptedModel

if TYPE_CHECKING:
    from ...config import AdapterConfig
    from ...models import LoadedModel


class FullFineTune(AdaptedModel):
    """Train every parameter of the backbone and head."""

    method = "full"

    def __init__(self, loaded: "LoadedModel", cfg: "AdapterConfig", total_step: int = 0, seed: int = 0) -> None:
        super().__init__(loaded.model, loaded.new_token_ids)
        for param in self.model.parameters():
            param.requires_grad = True
