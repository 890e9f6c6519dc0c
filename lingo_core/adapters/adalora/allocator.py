"""peft's RankAllocator with its per-step work batched: same numbers, fewer Python-level ops.

peft updates the importance EMAs with ~8 tensor ops per adapter matrix per step (30 modules x 3
matrices = ~700 small ops) and, after the final allocation, rebuilds every mask from Python lists
at every step. Here the EMAs live in flat buffers updated with ~8 ops per step for all matrices
(peft's tables hold views into them), and the masks are built once per rank pattern. The
arithmetic is peft's, operation for operation, so the scores are bit-identical
(``tests/test_ars.py``); AdaLoRA and ARS both use this class, so their comparison stays like for
like.
"""

from __future__ import annotations

from typing import Optional

import torch
from peft.tuners.adalora import RankAllocator


class BatchedRankAllocator(RankAllocator):
    """A drop-in replacement for ``AdaLoraModel.rankallocator`` (peft's scores and schedule)."""

    def __init__(self, model, peft_config, adapter_name: str) -> None:
        super().__init__(model, peft_config, adapter_name)
        self._scored: Optional[list[tuple[str, torch.nn.Parameter]]] = None
        self._flat: tuple[torch.Tensor, ...] = ()
        self._views: Optional[list[list[torch.Tensor]]] = None
        self._masks: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        self._masked_pattern: Optional[dict] = None  # the rank-pattern dict the masks were built from

    def _scored_parameters(self, model) -> list[tuple[str, torch.nn.Parameter]]:
        """The adapter matrices peft scores (A, E, B), in peft's order; found once."""
        if self._scored is None:
            self._scored = [(n, p) for n, p in model.named_parameters() if "lora_" in n and self.adapter_name in n]
        return self._scored

    def update_ipt(self, model) -> None:
        """peft's sensitivity and uncertainty EMAs, computed on one flat buffer for all matrices.

        The per-matrix tensors in ``ipt``/``exp_avg_ipt``/``exp_avg_unc`` (what peft's
        ``mask_to_budget`` and checkpoints read) are views into the flat buffers.
        """
        scored = self._scored_parameters(model)
        names = [n for n, _ in scored]
        if not self._tables_are_views(names):
            self._rebuild_flat_tables(scored)
        with torch.no_grad():
            params = torch.cat([p.detach().reshape(-1) for _, p in scored])
            grads = torch.cat([p.grad.detach().reshape(-1) for _, p in scored])
            ipt, avg, unc = self._flat
            torch.mul(params, grads, out=ipt)
            ipt.abs_()
            avg.mul_(self.beta1).add_(ipt * (1 - self.beta1))  # peft: beta1 * avg + (1 - beta1) * ipt
            unc.mul_(self.beta2).add_((ipt - avg).abs() * (1 - self.beta2))

    def _tables_are_views(self, names: list[str]) -> bool:
        """False after ``reset_ipt``, a checkpoint restore or at the start: the tables hold other tensors."""
        views = self._views
        return views is not None and all(
            self.ipt.get(n) is views[0][i] and self.exp_avg_ipt.get(n) is views[1][i] and self.exp_avg_unc.get(n) is views[2][i]
            for i, n in enumerate(names)
        )

    def _rebuild_flat_tables(self, scored: list[tuple[str, torch.nn.Parameter]]) -> None:
        """Flat buffers holding the current tables (zeros where a matrix has none yet: after
        ``reset_ipt`` or at the start), and the per-matrix views that replace the tables' tensors."""
        tables = (self.ipt, self.exp_avg_ipt, self.exp_avg_unc)
        flats = []
        for table in tables:
            parts = [table[n].detach().reshape(-1) if n in table else torch.zeros(p.numel(), dtype=p.dtype, device=p.device) for n, p in scored]
            flats.append(torch.cat(parts).clone())
        views: list[list[torch.Tensor]] = [[], [], []]
        for flat, table, view_list in zip(flats, tables, views):
            offset = 0
            for n, p in scored:
                view = flat[offset : offset + p.numel()].view(p.shape)
                table[n] = view
                view_list.append(view)
                offset += p.numel()
        self._flat = tuple(flats)
        self._views = views

    def mask_using_rank_pattern(self, model, rank_pattern) -> None:
        """Zero the pruned singular values; the masks are built once per rank pattern."""
        if self._masked_pattern is not rank_pattern:  # a new allocation assigns a new dict
            truncated = self.adapter_name not in next(iter(rank_pattern.keys()))
            masks = []
            for n, p in model.named_parameters():
                if f"lora_E.{self.adapter_name}" in n:
                    key = n.replace(f".{self.adapter_name}", "") if truncated else n
                    keep = torch.tensor(rank_pattern[key], dtype=torch.bool, device=p.device).unsqueeze(-1)
                    masks.append((p, ~keep))
            self._masked_pattern, self._masks = rank_pattern, masks
        with torch.no_grad():
            for param, pruned in self._masks:
                param.masked_fill_(pruned, 0.0)
