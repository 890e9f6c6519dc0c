"""``full``: full fine-tuning (a baseline without adapter weights)."""

from ..registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="full",
        summary="Full fine-tuning (baseline; slow on CPU)",
        model="lingo_core.adapters.full.model:FullFineTune",
    )
)
