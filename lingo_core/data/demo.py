"""``demo/motifs``: a small synthetic task with planted motifs, for demos and smoke tests.

Label 1 sequences carry a TATA-box-like motif (``TATA[AT]A[AT]``) in the window at 20-40 % of
the sequence AND a CCAAT box in the window at 60-80 %. Label 0 sequences are i.i.d. background
(GC 0.45) with neither motif anywhere, or hard negatives: only one of the two motifs, or both
motifs swapped into each other's window. Every planted motif is recorded in ``Split.motifs``;
motifs in negatives are named ``decoy_<name>``. It is synthetic data, not genomic data.
"""

from __future__ import annotations

import copy
import functools
import re

import numpy as np

from lingo_core.config import DataConfig
from lingo_core.data.loaders import Motif, RecordSet, Split, TaskData, TaskInfo, assemble_task

DEMO_NAME = "demo/motifs"
TATA_BOX, CCAAT_BOX = "TATA-box", "CCAAT-box"
MOTIF_PATTERNS = {TATA_BOX: re.compile("(?=TATA[AT]A[AT])"), CCAAT_BOX: re.compile("(?=CCAAT)")}
MOTIF_LENGTHS = {TATA_BOX: 7, CCAAT_BOX: 5}
GC_CONTENT = 0.45
HARD_NEGATIVE_SHARE = 0.3  # of the negatives; split evenly over the three hard kinds
HARD_KINDS = ("tata_only", "ccaat_only", "swapped")
_LETTERS = np.frombuffer(b"ACGT", dtype=np.uint8)
_PROBABILITIES = np.array([1 - GC_CONTENT, GC_CONTENT, GC_CONTENT, 1 - GC_CONTENT]) / 2


def motif_windows(length: int) -> dict[str, tuple[int, int]]:
    """The ``[start, end)`` window each motif of a positive lies in."""
    return {
        TATA_BOX: (round(0.2 * length), round(0.4 * length)),
        CCAAT_BOX: (round(0.6 * length), round(0.8 * length)),
    }


def _motif_text(name: str, rng: np.random.Generator) -> str:
    if name == CCAAT_BOX:
        return "CCAAT"
    first, second = rng.choice(["A", "T"], size=2)
    return f"TATA{first}A{second}"


def _plan(kind: str, windows: dict[str, tuple[int, int]], rng: np.random.Generator) -> list[Motif]:
    """Where to plant which motif for one sequence of ``kind``."""
    placements = {
        "positive": [(TATA_BOX, TATA_BOX, ""), (CCAAT_BOX, CCAAT_BOX, "")],
        "tata_only": [(TATA_BOX, TATA_BOX, "decoy_")],
        "ccaat_only": [(CCAAT_BOX, CCAAT_BOX, "decoy_")],
        "swapped": [(TATA_BOX, CCAAT_BOX, "decoy_"), (CCAAT_BOX, TATA_BOX, "decoy_")],
        "background": [],
    }[kind]
    plan = []
    for motif, window_of, prefix in placements:
        low, high = windows[window_of]
        start = int(rng.integers(low, high - MOTIF_LENGTHS[motif] + 1))
        plan.append((start, start + MOTIF_LENGTHS[motif], prefix + motif))
    return plan


def _occurrences(sequence: str) -> set[tuple[int, str]]:
    return {(m.start(), name) for name, pattern in MOTIF_PATTERNS.items() for m in pattern.finditer(sequence)}


def _make_sequence(kind: str, length: int, windows: dict, rng: np.random.Generator) -> tuple[str, list[Motif]]:
    """Background with the planned motifs; redrawn until no other motif occurrence exists."""
    while True:
        plan = _plan(kind, windows, rng)
        letters = bytearray(_LETTERS[rng.choice(4, size=length, p=_PROBABILITIES)].tobytes())
        for start, end, name in plan:
            letters[start:end] = _motif_text(name.removeprefix("decoy_"), rng).encode()
        sequence = letters.decode()
        if _occurrences(sequence) == {(start, name.removeprefix("decoy_")) for start, _, name in plan}:
            return sequence, plan


def _make_split(split: str, n: int, length: int, rng: np.random.Generator) -> RecordSet:
    n_positive = n // 2
    n_negative = n - n_positive
    n_per_hard_kind = round(HARD_NEGATIVE_SHARE * n_negative / len(HARD_KINDS))
    kinds = (
        ["positive"] * n_positive
        + [kind for kind in HARD_KINDS for _ in range(n_per_hard_kind)]
        + ["background"] * (n_negative - len(HARD_KINDS) * n_per_hard_kind)
    )
    kinds = [str(kind) for kind in rng.permutation(kinds)]
    windows = motif_windows(length)
    sequences, motifs = [], []
    for kind in kinds:
        sequence, plan = _make_sequence(kind, length, windows, rng)
        sequences.append(sequence)
        motifs.append(plan)
    labels = np.array([int(kind == "positive") for kind in kinds], dtype=np.int64)
    ids = [f"demo-{split}-{i:05d}" for i in range(n)]
    no_replacements = np.zeros(n, dtype=np.int64)
    return RecordSet(Split(ids, sequences, labels, motifs), no_replacements, [f"synthetic:{DEMO_NAME}"])


def demo_parts(
    n_train: int = 2000, n_dev: int = 300, n_test: int = 300, length: int = 100, seed: int = 0
) -> dict[str, RecordSet]:
    """The three synthetic splits, generated deterministically from ``seed``.

    Generated once per process and argument set (about 0.5 s for the default 2,600 sequences, which every
    demo run, preview and test would otherwise pay again); each call returns its own copy to change freely.
    """
    if length < 40:
        raise ValueError(f"demo sequences need length >= 40 to hold both motif windows, got {length}")
    return copy.deepcopy(_generated_parts(n_train, n_dev, n_test, length, seed))


@functools.lru_cache(maxsize=4)
def _generated_parts(n_train: int, n_dev: int, n_test: int, length: int, seed: int) -> dict[str, RecordSet]:
    rng = np.random.default_rng(seed)
    sizes = {"train": n_train, "dev": n_dev, "test": n_test}
    return {split: _make_split(split, n, length, rng) for split, n in sizes.items()}


def demo_info(length: int = 100) -> TaskInfo:
    windows = motif_windows(length)
    (t0, t1), (c0, c1) = windows[TATA_BOX], windows[CCAAT_BOX]
    return TaskInfo(
        domain="Synthetic Motifs",
        species=None,
        description=(
            f"Synthetic data, not genomic: label 1 means the {length} bp sequence has a TATA-box-like motif "
            f"TATA[AT]A[AT] within positions {t0}-{t1} and a CCAAT box within positions {c0}-{c1}; label 0 "
            "sequences are random background or decoys with one motif or with the two motifs swapped."
        ),
        label_names=("negative", "positive"),
        synthetic=True,
    )


def demo_recipe(n_train: int = 2000, n_dev: int = 300, n_test: int = 300, length: int = 100, seed: int = 0) -> str:
    return (
        f"Synthetic demo generated in memory (lingo_core.data.demo, seed={seed}, length={length}): "
        f"train/dev/test = {n_train}/{n_dev}/{n_test}; half positives; negatives are background "
        f"(GC {GC_CONTENT}) with {HARD_NEGATIVE_SHARE:.0%} hard decoys (one motif only, or motifs swapped)."
    )


def make_demo_task(
    n_train: int = 2000, n_dev: int = 300, n_test: int = 300, length: int = 100, seed: int = 0
) -> TaskData:
    """The synthetic ``demo/motifs`` task (deterministic by ``seed``)."""
    parts = demo_parts(n_train, n_dev, n_test, length, seed)
    recipe = demo_recipe(n_train, n_dev, n_test, length, seed)
    return assemble_task(DEMO_NAME, parts, DataConfig(task=DEMO_NAME), demo_info(length), recipe)
