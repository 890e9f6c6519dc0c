"""``full``: full fine-tuning (a baseline without adapter weights)."""

from ..registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="full",
        summary="Full fine-tuning (baseline; slow on CPU)",
        model="lingo_core.adapters.full.model:FullFineTune",
        recommended_lr=0.0001,
        recommended_lr_source="the usual rate for fine-tuning every weight of a BERT-size model (the medium study's setting; not chosen on dev)",
    )
)
