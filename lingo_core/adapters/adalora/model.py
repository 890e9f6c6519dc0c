"""AdaLoRA through peft, with every budget allocation recorded for ``ranks.jsonl``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch

from ..base import short_module_name
from ..lora.model import PeftAdapted, peft_common_kwargs
from ...plan import budget_schedule
from .allocator import BatchedRankAllocator
from .config import resolve_schedule
from .layer import fuse_svd_layers

if TYPE_CHECKING:
    from ...config import AdapterConfig
    from ...models import LoadedModel

LAMBDA_PARAMETER = ".lora_E."  # peft's name for the singular values of AdaLoRA/ARS adapters


class AdaLoRA(PeftAdapted):
    """peft AdaLoRA: SVD-form adapters whose total rank shrinks on a cubic schedule by importance."""

    method = "adalora"

    def __init__(self, loaded: "LoadedModel", cfg: "AdapterConfig", total_step: int, seed: int = 0) -> None:
        from peft import AdaLoraConfig, get_peft_model

        if total_step < 2:
            raise ValueError(f"AdaLoRA needs total_step >= 2 optimizer steps, got {total_step}")
        settings = cfg.adalora
        tinit, tfinal = resolve_schedule(settings, total_step)
        peft_config = AdaLoraConfig(
            init_r=settings.init_r,
            target_r=settings.target_r,
            tinit=tinit,
            tfinal=tfinal,
            deltaT=settings.deltaT,
            beta1=settings.beta1,
            beta2=settings.beta2,
            orth_reg_weight=settings.orth_reg_weight,
            total_step=total_step,
            **peft_common_kwargs(cfg, loaded),
        )
        super().__init__(get_peft_model(loaded.model, peft_config), loaded.new_token_ids)
        fuse_svd_layers(self.model)
        for name, param in self.model.named_parameters():
            if ".ranknum." in name:  # peft's rank constant; it must stay frozen on meta-device skeletons too
                param.requires_grad = False
        self.cfg = cfg
        self.tuner = self.model.base_model  # peft's AdaLoraModel
        self.peft_config = self.tuner.peft_config["default"]
        self.total_step = total_step
        self.seed = seed
        self.lambda_lr_scale = settings.lambda_lr_scale
        self.schedule = budget_schedule(cfg, total_step, len(self.lora_e()))  # the run's b(t), as planned
        self.install_allocator()
        self._previous: dict[str, torch.Tensor] = {}
        self._orth_groups: Optional[list[list[tuple[torch.nn.Parameter, bool]]]] = None

    @classmethod
    def load_export(cls, loaded: "LoadedModel", directory) -> torch.nn.Module:
        """peft's loader, with the fused forward the adapter was trained and evaluated with."""
        model = super().load_export(loaded, directory)
        fuse_svd_layers(model)
        return model

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The singular values lambda in their own group at ``lr * lambda_lr_scale`` (one group at scale 1).

        The learning-rate schedule multiplies every group's lr alike.
        """
        if self.lambda_lr_scale == 1.0:
            return super().param_groups(lr)
        trainable = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        lambdas = [p for n, p in trainable if LAMBDA_PARAMETER in n]
        others = [p for n, p in trainable if LAMBDA_PARAMETER not in n]
        return [{"params": others, "lr": lr}, {"params": lambdas, "lr": lr * self.lambda_lr_scale}]

    def regularizer(self) -> Optional[torch.Tensor]:
        """peft AdaLoRA's orthogonal regulariser, ``orth_reg_weight * mean ||P P^T - I||_F``.

        Same value as peft adds when the model computes the loss itself, but batched: the A (and
        transposed B) matrices of equal shape are stacked and multiplied in one ``bmm`` instead of
        one small matmul per matrix, which keeps AdaLoRA/ARS steps as fast as LoRA's.
        """
        weight = self.peft_config.orth_reg_weight
        if weight == 0:
            return None
        if self._orth_groups is None:
            groups: dict[tuple[int, ...], list[tuple[torch.nn.Parameter, bool]]] = {}
            for name, param in self.tuner.model.named_parameters():
                if (".lora_A." in name or ".lora_B." in name) and param.requires_grad:
                    transpose = ".lora_B." in name
                    shape = tuple(param.T.shape if transpose else param.shape)
                    groups.setdefault(shape, []).append((param, transpose))
            self._orth_groups = list(groups.values())
        total, count = None, 0
        for group in self._orth_groups:
            stacked = torch.stack([p.T if transpose else p for p, transpose in group])  # (n, r, d)
            gram = stacked @ stacked.transpose(1, 2)
            eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
            norms = torch.linalg.matrix_norm(gram - eye, ord="fro").sum()
            total = norms if total is None else total + norms
            count += len(group)
        return weight * total / count

    def install_allocator(self) -> None:
        """Replace peft's RankAllocator (peft documents it as replaceable) by the batched one."""
        self.tuner.rankallocator = BatchedRankAllocator(
            self.tuner.model, self.peft_config, self.tuner.trainable_adapter_name
        )

    @property
    def allocator(self):
        return self.tuner.rankallocator

    def after_optimizer_step(self, global_step: int) -> Optional[dict[str, Any]]:
        self.tuner.update_and_allocate(global_step)
        if not self.schedule.is_allocation_step(global_step):
            return None
        return self.allocation_record(global_step)

    def lora_e(self) -> dict[str, torch.nn.Parameter]:
        """The singular values, keyed like peft's rank patterns (names inside the tuner's model)."""
        return {n: p for n, p in self.tuner.model.named_parameters() if LAMBDA_PARAMETER in n}

    def budget_modules(self) -> list[str]:
        return list(self.lora_e())

    def rank_pattern(self) -> Optional[dict[str, list[bool]]]:
        pattern = self.peft_config.rank_pattern
        return {k: list(v) for k, v in pattern.items()} if pattern else None

    def apply_rank_pattern(self, pattern: Optional[dict[str, list[bool]]]) -> None:
        """Set the pattern and zero the pruned singular values: the model then computes exactly what
        the truncated export computes (lambda that regrew since the last allocation is dropped)."""
        self.peft_config.rank_pattern = pattern
        if pattern:
            self.allocator.mask_using_rank_pattern(self.tuner.model, pattern)

    def allocation_record(self, step: int) -> dict[str, Any]:
        """What the last allocation did, per module: active rank, |lambda|, pruned and reintroduced."""
        budget = self.schedule.at(step)
        pattern = self.peft_config.rank_pattern or {}
        record: dict[str, Any] = {
            "step": step,
            "budget": int(budget),
            "active": {},
            "lambdas": {},
            "pruned": {},
            "reintroduced": {},
        }
        for name, param in self.lora_e().items():
            mask = torch.tensor(pattern.get(name, [True] * param.shape[0]), dtype=torch.bool)
            previous = self._previous.get(name, torch.ones_like(mask))
            module = short_module_name(name)
            record["active"][module] = int(mask.sum())
            record["lambdas"][module] = [round(float(v), 6) for v in param.detach().abs().view(-1).cpu()]
            record["pruned"][module] = torch.nonzero(previous & ~mask).view(-1).tolist()
            record["reintroduced"][module] = torch.nonzero(~previous & mask).view(-1).tolist()
            self._previous[name] = mask
        record["update_norms"] = {module: round(value, 6) for module, value in self.update_norms().items()}
        record.update(self.extra_record())
        return record

    def extra_record(self) -> dict[str, Any]:
        return {}

    def allocator_state(self) -> dict[str, Any]:
        alloc = self.allocator
        return {
            "ipt": alloc.ipt,
            "exp_avg_ipt": alloc.exp_avg_ipt,
            "exp_avg_unc": alloc.exp_avg_unc,
            "rank_pattern": self.rank_pattern(),
            "previous": self._previous,
        }

    def load_allocator_state(self, state: dict[str, Any]) -> None:
        alloc = self.allocator
        alloc.ipt = state["ipt"]
        alloc.exp_avg_ipt = state["exp_avg_ipt"]
        alloc.exp_avg_unc = state["exp_avg_unc"]
        self.peft_config.rank_pattern = state["rank_pattern"]
        self._previous = state["previous"]

    def export(self, directory) -> None:
        """Export the truncated adapter for the current rank pattern (peft resizes the tensors)."""
        if self.peft_config.rank_pattern is None:
            # before the first allocation every rank is in use
            self.peft_config.rank_pattern = {n: [True] * p.shape[0] for n, p in self.lora_e().items()}
        super().export(directory)
