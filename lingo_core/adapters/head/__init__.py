"""``head``: train the classification head only (a baseline without adapter weights)."""

from ..registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="head",
        summary="Head only: train the classification head (baseline)",
        model="lingo_core.adapters.head.model:HeadOnly",
        recommended_lr=0.008,
        recommended_lr_source="chosen on dev in the studies (docs/results.md): only the classifier trains",
    )
)
