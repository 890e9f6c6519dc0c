"""A run's export as one named adapter of a shared peft model, and the forward a panel runs it with.

Every export becomes a peft **LoRA** adapter, so that one ``PeftModel`` holds them all (peft refuses
to mix adapter types in one model) and peft's multi-adapter machinery applies to every one of them:
``set_adapter`` switches tasks, ``adapter_names`` mixes them in one batch, ``modules_to_save`` keeps a
classification head per adapter and ``trainable_token_indices`` the rows of the nucleotide tokens.

- **LoRA** exports attach as they are.
- **AdaLoRA / ARS** exports are already truncated to their rank pattern: module ``m`` keeps ``r_m``
  triplets (P, lambda, Q) and adds ``scaling / (ranknum + 1e-5) * P diag(lambda) Q x``, where peft's
  ``ranknum`` is the initial rank ``init_r`` (kept when peft resizes a loaded adapter). That is exactly
  a rank-``r_m`` LoRA update ``B A x`` with ``B = P`` and ``A = diag(lambda) Q * scaling / (init_r + 1e-5)``
  at LoRA scaling 1 (``lora_alpha = r`` per module). Modules pruned to rank 0 get no LoRA layer.
- **head-only** runs attach as an adapter without LoRA layers (peft's dummy target modules): their
  classifier, and for nucleotide tokens the trained rows of the new tokens. The rows of the
  pretrained vocabulary must be those of the shared backbone (they are unless weight decay moved
  them); otherwise the run is refused.

Tensors are read with safetensors and configs as JSON: nothing is unpickled.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as LoraLinear

from .. import runs
from ..adapters.head.model import is_head_parameter
from ..inference import RunLoadError
from ..models import LoadedModel
from .compat import PanelError

PEFT_PREFIX = "base_model.model."
TOKENS_SUFFIX = ".token_adapter.trainable_tokens_delta"  # peft's key for the rows of trainable tokens


@dataclass
class AdapterParts:
    """A run's export as a peft LoRA adapter: its config and its tensors under peft's state-dict keys."""

    config: Any  # peft.LoraConfig
    state: dict[str, torch.Tensor]
    form: str  # "LoRA", "AdaLoRA (LoRA form)", "ARS (LoRA form)", "head only"


def adapter_parts(run: runs.Run, loaded: LoadedModel, embedding_path: str) -> AdapterParts:
    """The export of ``run`` as LoRA adapter parts for a backbone ``loaded`` (whose input embedding is ``embedding_path``)."""
    from safetensors.torch import load_file

    info = run.export_info() or {}
    method = str(info.get("method"))
    folder = run.adapter_dir
    if info.get("format") != runs.EXPORT_PEFT:
        return _head_parts(run, load_file(str(runs.export_weights_path(folder))), loaded, embedding_path)
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    state = {k: v for k, v in load_file(str(folder / "adapter_model.safetensors")).items() if not runs.is_embedding_weight(k)}
    if config.get("peft_type") == "ADALORA":
        return _svd_parts(config, state, f"{'ARS' if method == 'ars' else 'AdaLoRA'} (LoRA form)")
    from peft import LoraConfig

    lora_config = LoraConfig.from_pretrained(str(folder))  # peft's own reader of adapter_config.json
    lora_config.inference_mode = True
    return AdapterParts(lora_config, state, "LoRA")


def _svd_parts(values: dict[str, Any], state: dict[str, torch.Tensor], form: str) -> AdapterParts:
    """An AdaLoRA/ARS export (P, lambda, Q truncated to the rank pattern) as the equal LoRA adapter."""
    from peft import LoraConfig, TaskType

    init_r, alpha = int(values["init_r"]), float(values["lora_alpha"])
    converted: dict[str, torch.Tensor] = {k: v for k, v in state.items() if ".lora_" not in k}
    ranks: dict[str, int] = {}
    for key, q in state.items():
        if not key.endswith(".lora_A"):
            continue
        stem = key[: -len("lora_A")]
        lam, p = state[stem + "lora_E"], state[stem + "lora_B"]
        rank = int(q.shape[0])
        if rank == 0:  # pruned to nothing: no update at all
            continue
        scaling = alpha if alpha > 0 else float(rank)  # peft's AdaLoraLayer.update_layer
        module = stem[len(PEFT_PREFIX) : -1] if stem.startswith(PEFT_PREFIX) else stem[:-1]
        ranks[module] = rank
        converted[f"{stem}lora_A.weight"] = (q * lam) * (scaling / (init_r + 1e-5))
        converted[f"{stem}lora_B.weight"] = p
    patterns = {re.escape(module): rank for module, rank in ranks.items()}
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=max(ranks.values(), default=1),
        lora_alpha=max(ranks.values(), default=1),
        rank_pattern=patterns,
        alpha_pattern=patterns,  # LoRA scaling alpha / r = 1: the scale is in A
        target_modules=sorted(ranks) or _dummy_targets(),
        lora_dropout=0.0,
        fan_in_fan_out=bool(values.get("fan_in_fan_out", False)),
        modules_to_save=values.get("modules_to_save"),
        trainable_token_indices=values.get("trainable_token_indices"),
        inference_mode=True,
    )
    return AdapterParts(config, converted, form)


def _dummy_targets() -> str:
    from peft.utils.constants import DUMMY_TARGET_MODULES

    return DUMMY_TARGET_MODULES


def _head_parts(run: runs.Run, tensors: dict[str, torch.Tensor], loaded: LoadedModel, embedding_path: str) -> AdapterParts:
    """A head-only export (classifier, and for nucleotide tokens the embedding matrix) as an adapter without LoRA layers."""
    from peft import LoraConfig, TaskType

    state = {PEFT_PREFIX + name: t for name, t in tensors.items() if is_head_parameter(name)}
    heads = sorted({name.rsplit(".", 1)[0] for name in tensors if is_head_parameter(name)})
    token_indices: Optional[list[int]] = None
    embeddings = [name for name in tensors if runs.is_embedding_weight(name)]
    if embeddings:
        token_indices = list(loaded.new_token_ids)
        rows = tensors[embeddings[0]]
        _check_pretrained_rows(run, rows, loaded, token_indices)
        state[PEFT_PREFIX + embedding_path + TOKENS_SUFFIX] = rows[token_indices].clone()
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        target_modules=_dummy_targets(),
        modules_to_save=heads,
        trainable_token_indices=token_indices,
        inference_mode=True,
    )
    return AdapterParts(config, state, "head only")


def _check_pretrained_rows(run: runs.Run, rows: torch.Tensor, loaded: LoadedModel, new_ids: list[int]) -> None:
    """A head-only run may have trained the new tokens' rows only: the shared backbone holds one copy of the rest."""
    weight = loaded.model.get_input_embeddings().weight.detach()
    if not new_ids or rows.shape != weight.shape:
        raise PanelError(
            f"{run.id}: its export holds a word-embedding matrix of shape {tuple(rows.shape)}, but the panel's backbone has "
            f"{tuple(weight.shape)} and {len(new_ids)} nucleotide tokens; it was trained on another vocabulary"
        )
    keep = torch.ones(weight.shape[0], dtype=torch.bool)
    keep[new_ids] = False
    changed = int((rows[keep].to(weight.dtype) != weight[keep].cpu()).any(dim=1).sum())
    if changed:
        raise PanelError(
            f"{run.id}: nucleotide-token embeddings differ: besides the {len(new_ids)} new tokens, its training changed "
            f"{changed:,} rows of the pretrained vocabulary (weight decay moves every row), and the panel's backbone holds "
            "one copy of those rows for every task. Fix: leave it out and score it alone with predict, or retrain it "
            "with train.weight_decay=0"
        )


# -- attaching ----------------------------------------------------------------------------------------------
def attach(model: Optional[torch.nn.Module], base: torch.nn.Module, name: str, parts: AdapterParts, run: runs.Run) -> torch.nn.Module:
    """Add ``parts`` to the shared peft ``model`` as adapter ``name`` (the first one wraps ``base``); returns the peft model.

    Every tensor of the adapter must be filled from the export: a missing or unexpected one raises
    :class:`~lingo_core.inference.RunLoadError` naming the run (a silently random weight would be wrong).
    """
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' deprecation notes inside peft
        warnings.filterwarnings("ignore", message=".*should not be contained in the prefix.*")
        if model is None:
            model = get_peft_model(base, parts.config, adapter_name=name)
        else:
            model.add_adapter(name, parts.config)
        _fit_heads(model, name, parts.state, run)
        set_peft_model_state_dict(model, parts.state, adapter_name=name)
        expected = set(get_peft_model_state_dict(model, adapter_name=name, save_embedding_layers=False))
    missing, unexpected = sorted(expected - set(parts.state)), sorted(set(parts.state) - expected)
    if missing or unexpected:
        raise RunLoadError(
            f"{run.adapter_dir}: the export does not fill its adapter on the panel's backbone (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}); it is damaged or was made for another model. Fix: leave the run out of the panel"
        )
    return model


def _fit_heads(model: torch.nn.Module, name: str, state: dict[str, torch.Tensor], run: runs.Run) -> None:
    """Give adapter ``name`` heads of its own label count (peft copies the backbone's head, made for the first task)."""
    from peft.utils.other import ModulesToSaveWrapper

    modules = dict(model.named_modules())
    for path in sorted({key.rpartition(".")[0] for key in state}):
        wrapper = modules.get(path)
        if not isinstance(wrapper, ModulesToSaveWrapper) or name not in wrapper.modules_to_save:
            continue
        copy, weight = wrapper.modules_to_save[name], state.get(f"{path}.weight")
        if weight is None or getattr(copy, "weight", None) is None or copy.weight.shape == weight.shape:
            continue
        if not isinstance(copy, torch.nn.Linear) or weight.ndim != 2:
            raise PanelError(f"{run.id}: its head {path.removeprefix(PEFT_PREFIX)} has weights of shape {tuple(weight.shape)}, which a panel cannot rebuild")
        out_features, in_features = weight.shape
        wrapper.modules_to_save[name] = torch.nn.Linear(
            in_features, out_features, bias=copy.bias is not None, device=copy.weight.device, dtype=copy.weight.dtype
        )


def adapter_parameter_count(model: torch.nn.Module, name: str) -> int:
    """Parameters that belong to adapter ``name`` alone (LoRA factors, head copy, token rows)."""
    marker = f".{name}."
    return int(sum(p.numel() for n, p in model.named_parameters() if marker in n or n.endswith(f".{name}")))


# -- the forward ---------------------------------------------------------------------------------------------
class FusedLoraLinear(LoraLinear):
    """peft's LoRA ``Linear`` with an inference forward that costs less than peft's, unmerged.

    peft adds ``lora_B(lora_A(dropout(x))) * scaling`` to the base output: three activation-sized
    passes after the base matmul (and a cast of ``x`` to the adapter's dtype under autocast). Here
    the scale is folded into the small ``r x out`` matrix and the update is added inside one
    ``addmm`` (the base output is read once, the sum written once). Used for one active adapter in
    eval mode; training, dropout, merged weights, variants and mixed batches (``adapter_names``) run
    peft's own forward. The same function up to float rounding (``tests/test_panel.py``).
    """

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.training or self.disable_adapters or self.merged or args or kwargs or self.lora_variant:
            return super().forward(x, *args, **kwargs)
        result = self.base_layer(x)
        for active in self.active_adapters:
            if active not in self.lora_A.keys():
                continue
            down = F.linear(x, self.lora_A[active].weight)
            up = (self.lora_B[active].weight * self.scaling[active]).T
            flat = torch.addmm(result.reshape(-1, result.shape[-1]), down.reshape(-1, down.shape[-1]).to(result.dtype), up.to(result.dtype))
            result = flat.view(result.shape)
        return result


def fuse_lora_layers(model: torch.nn.Module) -> int:
    """Give every plain peft LoRA ``Linear`` in ``model`` the fused inference forward; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is LoraLinear:
            module.__class__ = FusedLoraLinear
            count += 1
    return count
