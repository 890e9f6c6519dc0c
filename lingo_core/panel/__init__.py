"""One backbone, many tasks: score sequences with every trained adapter at once.

A **panel** is a set of finished runs that share a base model and the way it runs
(:class:`BackboneKey`: model, vocabulary, pooling, precision, device). The backbone is loaded once;
each run's adapter (LoRA, AdaLoRA, ARS in LoRA form, or a head-only run's classifier) is attached to
it under its own name with peft's multi-adapter support, and the active adapter is switched per
task: nothing is merged into the weights and nothing is reloaded.

- :func:`group_compatible` groups runs by backbone and says why the others cannot join;
- :func:`load_panel` loads a panel (a :class:`PanelError` names each refused run and why);
- :meth:`Panel.score` returns one row per sequence and one probability column per task (and label),
  with the windows, reverse complement and validation of ``predict``;
- ``python -m lingo_core panel RUN_DIR... SEQ...`` (or ``--runs-dir DIR``, ``--fasta``, ``--csv``):
  :mod:`lingo_core.panel.cli`.
"""

from .compat import BackboneKey, Grouping, PanelError, PanelGroup, Refusal, check_panel, group_compatible, member_problem
from .engine import Panel, PanelColumn, PanelScores, PanelTask, TaskPredictor, label_columns, load_panel, score_panel

__all__ = [
    "BackboneKey", "Grouping", "Panel", "PanelColumn", "PanelError", "PanelGroup", "PanelScores", "PanelTask",
    "Refusal", "TaskPredictor", "check_panel", "group_compatible", "label_columns", "load_panel", "member_problem",
    "score_panel",
]
