"""What a run will do, computed once from a config and a task: steps, warm-up, evaluations, the rank
budget schedule b(t), the adapted modules and the trainable parameters.

The trainer, the Train page's preview and the Runs page's schedule curve all use this module.
The budget schedule is peft's own (``RankAllocator.budget_schedule``), never a copy of it; the
module and parameter counts come from the method applied to an empty (meta-device) copy of the
architecture, so planning loads no weights.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, field
from typing import Any, Optional

from .adapters import has_rank_budget
from .config import AdapterConfig, LingoConfig


@dataclass(frozen=True)
class BudgetSchedule:
    """An AdaLoRA-style total rank budget over a run: ``init_budget`` until ``tinit``, cubic decay,
    ``target_budget`` for the last ``tfinal`` steps."""

    init_budget: int
    target_budget: int
    tinit: int
    tfinal: int
    total_step: int
    delta_t: int = 1  # steps between allocations inside the schedule

    def at(self, step: int) -> int:
        """b(t) at ``step``, by peft's ``RankAllocator.budget_schedule``."""
        from peft.tuners.adalora import RankAllocator

        allocator = types.SimpleNamespace(
            peft_config=types.SimpleNamespace(
                tinit=self.tinit, tfinal=self.tfinal, total_step=self.total_step, deltaT=self.delta_t
            ),
            init_bgt=self.init_budget,
            target_bgt=self.target_budget,
        )
        budget, _ = RankAllocator.budget_schedule(allocator, step)
        return int(budget)

    def curve(self) -> tuple[list[int], list[int]]:
        """Steps ``0..total_step`` and b(t) at each."""
        steps = list(range(self.total_step + 1))
        return steps, [self.at(s) for s in steps]

    def is_allocation_step(self, step: int) -> bool:
        """Whether peft masks to a new budget at ``step`` (every ``delta_t`` inside the schedule, and at its end)."""
        final = self.total_step - self.tfinal
        return step == final or (self.tinit < step < final and step % self.delta_t == 0)


def budget_schedule(adapter: AdapterConfig, total_step: int, n_modules: int) -> Optional[BudgetSchedule]:
    """The schedule of a method with a rank budget over ``n_modules`` modules; None for other methods.

    Raises ``ValueError`` when the schedule is empty (tinit and tfinal leave no steps).
    """
    if not has_rank_budget(adapter.method) or n_modules < 1:
        return None
    from .adapters.adalora import resolve_schedule

    settings = adapter.adalora
    tinit, tfinal = resolve_schedule(settings, total_step)
    return BudgetSchedule(
        settings.init_r * n_modules, settings.target_r * n_modules, tinit, tfinal, total_step, settings.deltaT
    )


def schedule_of_run(config: dict[str, Any], total_step: Optional[int], n_modules: int) -> Optional[BudgetSchedule]:
    """The schedule of a recorded run (its config.yaml dict), or None when it has none or it cannot be read."""
    from .config import ConfigError, config_from_dict

    if not total_step:
        return None
    try:
        adapter = config_from_dict({"adapter": dict(config.get("adapter") or {})}).adapter
        return budget_schedule(adapter, int(total_step), n_modules)
    except (ConfigError, ValueError, TypeError):
        return None


@dataclass
class RunPlan:
    """What a run will do."""

    n_train: int
    world: int
    steps_per_epoch: int
    total_step: int
    warmup_steps: int
    eval_every: int
    checkpoint_every: int
    schedule: Optional[BudgetSchedule] = None  # methods with a rank budget, once the modules are known
    modules: list[str] = field(default_factory=list)  # adapted modules (short names)
    budget_modules: int = 0  # modules sharing the rank budget
    parameters: Optional[dict[str, float]] = None  # trainable, total, percent

    def summary(self) -> dict[str, Any]:
        """Plain values, for reports and the Train page."""
        out = {k: getattr(self, k) for k in ("n_train", "total_step", "steps_per_epoch", "warmup_steps", "eval_every", "checkpoint_every")}
        out["adapted_modules"] = len(self.modules)
        out["parameters"] = self.parameters
        if self.schedule is not None:
            out["schedule"] = {
                "tinit": self.schedule.tinit,
                "tfinal": self.schedule.tfinal,
                "init_budget": self.schedule.init_budget,
                "target_budget": self.schedule.target_budget,
            }
        return out


def steps_per_epoch(n_train: int, batch_size: int, grad_accum: int, world: int) -> int:
    batches = math.ceil(math.ceil(n_train / world) / batch_size)
    return max(1, math.ceil(batches / grad_accum))


def plan_steps(cfg: LingoConfig, n_train: int, world: int = 1) -> RunPlan:
    """The step plan: optimizer steps (epochs x steps per epoch, capped by ``train.max_steps``),
    warm-up, evaluation and checkpoint intervals. No model needed."""
    t = cfg.train
    per_epoch = steps_per_epoch(n_train, t.batch_size, t.grad_accum, world)
    total = max(1, math.ceil(t.epochs * per_epoch))
    if t.max_steps is not None:
        total = min(total, t.max_steps)
    eval_every = min(t.eval_every or max(1, per_epoch // 4), total)
    return RunPlan(
        n_train=n_train,
        world=world,
        steps_per_epoch=per_epoch,
        total_step=total,
        warmup_steps=int(round(t.warmup_ratio * total)),
        eval_every=eval_every,
        checkpoint_every=t.checkpoint_every or eval_every,
    )


def with_adapted(plan: RunPlan, cfg: LingoConfig, adapted) -> RunPlan:
    """Complete ``plan`` from an adapted model (real or empty): modules, parameters, the budget schedule."""
    plan.modules = adapted.adapted_modules()
    plan.budget_modules = len(adapted.budget_modules())
    plan.parameters = adapted.parameter_counts()
    plan.schedule = budget_schedule(cfg.adapter, plan.total_step, plan.budget_modules)
    return plan


def plan_run(cfg: LingoConfig, n_train: int, label_names: list[str], multi_label: bool = False, world: int = 1) -> RunPlan:
    """The whole plan of ``cfg`` on a task with ``n_train`` training sequences.

    The method is applied to an empty copy of the architecture (no weights are loaded), so this
    costs a tokenizer load and a model skeleton. Raises ``ValueError`` for an empty budget schedule.
    """
    from .inference import attach_adapter, load_backbone

    plan = plan_steps(cfg, n_train, world)
    info = {"label_names": list(label_names), "multi_label": multi_label}
    backbone = load_backbone(cfg, info, empty=True)
    adapted = attach_adapter(backbone.loaded, cfg, max(plan.total_step, 2))
    return with_adapted(plan, cfg, adapted)
