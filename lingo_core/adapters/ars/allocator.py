"""The adaptive rank sampling allocator: peft's RankAllocator with a sampling selector.

Scores, EMA smoothing and the cubic budget schedule are peft's (batched: ``BatchedRankAllocator``). Only the choice of which
singular-value triplets stay active changes:

``sampling`` (this project): at an allocation with budget ``b`` and reintroduction rate ``rho``,
keep the top ``b - k`` triplets by score, ``k = round(rho * b)``, and fill the other ``k`` slots by
sampling without replacement from the remaining triplets with probability proportional to
``exp(z / temperature)`` (``z``: the score standardised over all triplets) or uniformly. Exactly
``b`` triplets stay active. A sampled triplet that was pruned gets its last non-zero lambda back
(``restore``) or keeps the value its gradient has grown since (``regrow``). With ``rho = 0`` this
is AdaLoRA's deterministic top-``b`` rule. The final allocation samples at ``rho_min`` (0 by
default, i.e. top-``b``; above 0 the exported pattern keeps sampled triplets).

``paper``: the published LINGO code's semantics, for comparison: top-``b`` by score, then each kept
triplet is pruned with probability ``rho``; the matching coin that would "retain" a pruned triplet
comes after its lambda was zeroed, so it has no effect. The active count is random (soft budget).
The rate is constant and the final allocation flips coins too, so the last random pattern carries
into the final phase, as in the published code.
"""

from __future__ import annotations

from typing import Any

import torch

from ..adalora.allocator import BatchedRankAllocator
from .config import ARSSettings


class AdaptiveRankSampler(BatchedRankAllocator):
    """A drop-in replacement for ``AdaLoraModel.rankallocator``."""

    def __init__(self, model, peft_config, adapter_name: str, settings: ARSSettings, seed: int) -> None:
        super().__init__(model, peft_config, adapter_name)
        self.settings = settings
        self.generator = torch.Generator().manual_seed(int(seed))
        self.active: dict[str, torch.Tensor] = {}  # lora_E name -> bool mask after the last allocation
        self.saved_lambdas: dict[str, torch.Tensor] = {}  # lambda values at the moment they were pruned
        self.last_sampled: dict[str, list[int]] = {}
        self.last_rho = 0.0
        self._step = 0
        self._final = False

    # -- schedule -----------------------------------------------------------------------------
    def update_and_allocate(self, model, global_step, force_mask=False):
        cfg = self.peft_config
        self._step = global_step
        self._final = force_mask or global_step >= cfg.total_step - cfg.tfinal
        return super().update_and_allocate(model, global_step, force_mask)

    def reintroduce_rate_at(self, step: int) -> float:
        """rho at ``step``.

        ``sampling``: from ``reintroduce_rate``, decaying linearly to ``rho_min`` over the budget
        schedule when ``rho_decay`` is on; ``rho_min`` at the final allocation (0 by default: the
        exported pattern is then the deterministic top-b). ``paper``: the published code's constant
        rate, the final allocation included (its last random pattern carries into the final phase).
        """
        s = self.settings
        if s.mode == "paper":
            return s.reintroduce_rate
        if self._final:
            return s.rho_min
        if not s.rho_decay:
            return s.reintroduce_rate
        cfg = self.peft_config
        span = max(1, cfg.total_step - cfg.tfinal - cfg.tinit)
        progress = min(max((step - cfg.tinit) / span, 0.0), 1.0)
        return s.rho_min + (s.reintroduce_rate - s.rho_min) * (1.0 - progress)

    # -- scores ----------------------------------------------------------------------------
    def triplet_scores(self, model) -> dict[str, torch.Tensor]:
        """Importance of each (P column, lambda, Q row) triplet, keyed by lora_E parameter name.

        Same combination as peft's ``mask_to_budget``: lambda's score plus the mean scores of its
        rows of A and columns of B.
        """
        value_ipt: dict[str, torch.Tensor] = {}
        vector_ipt: dict[str, list[torch.Tensor]] = {}
        for n, _ in model.named_parameters():
            if f"lora_A.{self.adapter_name}" in n:
                vector_ipt.setdefault(n.replace("lora_A", "%s"), []).append(
                    torch.mean(self._element_score(n), dim=1, keepdim=True)
                )
            elif f"lora_B.{self.adapter_name}" in n:
                vector_ipt.setdefault(n.replace("lora_B", "%s"), []).append(
                    torch.mean(self._element_score(n), dim=0, keepdim=False).view(-1, 1)
                )
            elif f"lora_E.{self.adapter_name}" in n:
                value_ipt[n.replace("lora_E", "%s")] = self._element_score(n)
        return {
            name_m % "lora_E": self._combine_ipt(value_ipt[name_m], torch.cat(vectors, dim=1)).view(-1)
            for name_m, vectors in vector_ipt.items()
        }

    # -- selection -----------------------------------------------------------------------------
    def select(self, scores: torch.Tensor, budget: int, rho: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Boolean masks (active, sampled) over the flattened triplets for a hard budget."""
        n = scores.numel()
        budget = max(0, min(int(budget), n))
        active = torch.zeros(n, dtype=torch.bool)
        sampled = torch.zeros(n, dtype=torch.bool)
        k = int(round(rho * budget))
        order = torch.argsort(scores, descending=True, stable=True)
        active[order[: budget - k]] = True
        if k > 0:
            candidates = order[budget - k :]
            if self.settings.temperature == "uniform":
                weights = torch.ones(candidates.numel(), dtype=torch.float64)
            else:
                std = scores.std()
                z = (scores - scores.mean()) / std if std > 0 else torch.zeros_like(scores)
                logits = z[candidates].double() / float(self.settings.temperature)
                weights = torch.exp(logits - logits.max()).clamp_min(1e-300)
            picked = candidates[torch.multinomial(weights, k, replacement=False, generator=self.generator)]
            active[picked] = True
            sampled[picked] = True
        return active, sampled

    def select_paper(self, scores: torch.Tensor, budget: int, rho: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The published code's coin flips: returns (active, lambda_zeroed) masks."""
        n = scores.numel()
        order = torch.argsort(scores, descending=True, stable=True)
        top = torch.zeros(n, dtype=torch.bool)
        top[order[: max(0, min(int(budget), n))]] = True
        coins = torch.rand(n, generator=self.generator) < rho
        zeroed = ~top | (top & coins)  # pruned first, then 10% of the important ones pruned at random
        active = (top & ~coins) | (~top & coins)  # the "retained" pruned ones keep a zero lambda
        return active, zeroed

    def mask_to_budget(self, model, budget):
        scores = self.triplet_scores(model)
        names = list(scores)
        sizes = [scores[n].numel() for n in names]
        flat = torch.cat([scores[n].detach().float().cpu() for n in names])
        rho = self.reintroduce_rate_at(self._step)
        self.last_rho = rho
        if self.settings.mode == "paper":
            active, zeroed = self.select_paper(flat, budget, rho)
            sampled = torch.zeros_like(active)
        else:
            active, sampled = self.select(flat, budget, rho)
            zeroed = ~active

        params = dict(model.named_parameters())
        rank_pattern: dict[str, list[bool]] = {}
        self.last_sampled = {}
        with torch.no_grad():
            for name, module_active, module_zeroed, module_sampled in zip(
                names, active.split(sizes), zeroed.split(sizes), sampled.split(sizes)
            ):
                lam = params[name]
                previous = self.active.get(name, torch.ones_like(module_active))
                values = lam.detach().view(-1).cpu()
                newly_pruned = previous & module_zeroed
                saved = self.saved_lambdas.setdefault(name, torch.zeros_like(values))
                saved[newly_pruned] = values[newly_pruned]
                restore = module_sampled & ~previous
                if self.settings.reintroduce == "restore" and restore.any():
                    values = values.clone()
                    values[restore] = saved[restore]
                    lam.copy_(values.view_as(lam).to(lam.device))
                lam.masked_fill_(module_zeroed.view_as(lam).to(lam.device), 0.0)
                self.active[name] = module_active.clone()
                self.last_sampled[name] = torch.nonzero(module_sampled).view(-1).tolist()
                rank_pattern[name] = module_active.tolist()
        return rank_pattern

    # -- checkpointing -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "active": self.active,
            "saved_lambdas": self.saved_lambdas,
            "last_rho": self.last_rho,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.active = state["active"]
        self.saved_lambdas = state["saved_lambdas"]
        self.last_rho = state["last_rho"]
