"""LoRA through peft, and the peft plumbing AdaLoRA and ARS share (like peft, where AdaLoRA extends LoRA)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import torch

from ... import runs
from ...models import POOLER_PARAMETERS, TRAINABLE_POOLINGS
from ..base import AdaptedModel, short_module_name

if TYPE_CHECKING:
    from ...config import AdapterConfig
    from ...models import LoadedModel


def peft_common_kwargs(cfg: "AdapterConfig", loaded: "LoadedModel") -> dict[str, Any]:
    """Arguments shared by peft's LoraConfig and AdaLoraConfig, from the ``adapter.lora`` section."""
    from peft import TaskType

    lora = cfg.lora
    kwargs: dict[str, Any] = {
        "task_type": TaskType.SEQ_CLS,
        "lora_alpha": lora.lora_alpha,
        "lora_dropout": lora.lora_dropout,
        "target_modules": lora.target_modules or loaded.target_modules,
        "fan_in_fan_out": loaded.family == "gpt2",  # GPT-2 uses Conv1D layers
    }
    if loaded.new_token_ids:
        kwargs["trainable_token_indices"] = list(loaded.new_token_ids)
    if loaded.pooling in TRAINABLE_POOLINGS:  # the pooler's scorer trains with the head (peft adds the head itself)
        kwargs["modules_to_save"] = list(POOLER_PARAMETERS)
    return kwargs


class PeftAdapted(AdaptedModel):
    """Any peft-wrapped model; exports in peft format (``PeftModel.from_pretrained`` loads it)."""

    def adapted_modules(self) -> list[str]:
        names = {short_module_name(n) for n, _ in self.model.named_parameters() if ".lora_A." in n}
        return sorted(names, key=_natural_key)

    def update_norms(self) -> dict[str, float]:
        """‖ΔW‖_F per module: ``scaling · ‖B A‖`` for LoRA, ``scaling / ranknum · ‖B diag(λ) A‖`` for
        AdaLoRA's SVD form; pruned (zero) λ contribute nothing. Computed from r x r Gram matrices."""
        norms: dict[str, float] = {}
        with torch.no_grad():
            for name, module in self.model.named_modules():
                update = _low_rank_factors(module)
                if update is None:
                    continue
                left, right, scale = update  # delta W = scale * left @ right
                gram = (left.T.float() @ left.float()) * (right.float() @ right.T.float())
                norms[short_module_name(name)] = float(scale * gram.sum().clamp_min(0).sqrt())
        return norms

    def export(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # The embedding matrix is never trained here (new nucleotide rows are saved by peft's
        # trainable-token layer), so it is not copied into every adapter (48 MB for MiniLM).
        with warnings.catch_warnings():
            # AdaLoRA modules pruned to rank 0 have (0, d) tensors, which peft mistakes for
            # unsharded ZeRO-3/FSDP parameters; they load back correctly
            warnings.filterwarnings("ignore", message=".*LoRA tensor\\(s\\) have invalid shape")
            self.model.save_pretrained(str(directory), save_embedding_layers=False)
        runs.write_export_info(directory, self.method, runs.EXPORT_PEFT)

    @classmethod
    def load_export(cls, loaded: "LoadedModel", directory: Path) -> torch.nn.Module:
        from peft import PeftModel

        with warnings.catch_warnings():
            # AdaLoRA's rank_pattern is applied by its own layers; peft's generic LoRA check
            # warns that the keys match no module, which is expected here
            warnings.filterwarnings("ignore", message="The following rank_pattern keys")
            return PeftModel.from_pretrained(loaded.model, str(directory))


class LoRA(PeftAdapted):
    """Plain LoRA of rank ``r`` on the target modules."""

    method = "lora"

    def __init__(self, loaded: "LoadedModel", cfg: "AdapterConfig", total_step: int = 0, seed: int = 0) -> None:
        from peft import LoraConfig, get_peft_model

        peft_config = LoraConfig(r=cfg.lora.r, **peft_common_kwargs(cfg, loaded))
        super().__init__(get_peft_model(loaded.model, peft_config), loaded.new_token_ids)


def _low_rank_factors(module: torch.nn.Module) -> "Optional[tuple[torch.Tensor, torch.Tensor, float]]":
    """(B, A', scale) with ``delta W = scale * B @ A'`` for a peft LoRA or AdaLoRA layer, else None."""
    lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
    if not isinstance(lora_a, (torch.nn.ModuleDict, torch.nn.ParameterDict)) or "default" not in lora_a:
        return None
    a, b = lora_a["default"], lora_b["default"]
    scale = float(module.scaling["default"])
    if isinstance(a, torch.nn.Linear):  # LoRA: A (r x in), B (out x r) as Linear layers
        return b.weight, a.weight, scale
    lam = module.lora_E["default"]  # AdaLoRA/ARS: P (out x r), lambda (r x 1), Q (r x in)
    ranknum = float(module.ranknum["default"]) + 1e-5
    return b, a * lam, scale / ranknum


def _natural_key(name: str) -> list[Union[int, str]]:
    """``2.attention`` before ``10.attention``."""
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
