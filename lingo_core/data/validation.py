"""Vectorised validation of DNA sequences and labels with errors that say where and how to fix.

Every check works on whole columns with numpy/pandas; a per-record scan only runs once a
problem is known, to name the first offending record and character.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

NUCLEOTIDES = "ACGTN"
AMBIGUITY_CODES = "RYSWKMBDHV"  # IUPAC codes other than A C G T N; mapped to N or rejected
# A training record longer than this is refused at load: far more than any model window holds (512 tokens read
# ~1 kb; 8,192 tokens, the longest supported, ~16 kb), so it is a whole contig or chromosome by mistake.
MAX_TRAINING_SEQUENCE_NT = 20_000

_VALID, _AMBIGUOUS, _INVALID = 0, 1, 2
_CHAR_CLASS = np.full(128, _INVALID, dtype=np.uint8)
for _letter in NUCLEOTIDES + NUCLEOTIDES.lower():
    _CHAR_CLASS[ord(_letter)] = _VALID
for _letter in AMBIGUITY_CODES + AMBIGUITY_CODES.lower():
    _CHAR_CLASS[ord(_letter)] = _AMBIGUOUS
_TO_N = str.maketrans({c: "N" for c in AMBIGUITY_CODES})

Locator = Callable[[int], str]  # record index -> "file, line 7" / "file, record 'seq3'"


class DataError(ValueError):
    """Invalid or missing data; the message names the file, the line or record, the problem and the fix."""


def _char_classes(text: str) -> np.ndarray:
    """Class (_VALID, _AMBIGUOUS, _INVALID) of every character of ``text``."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    classes = np.full(codes.shape, _INVALID, dtype=np.uint8)
    ascii_mask = codes < 128
    classes[ascii_mask] = _CHAR_CLASS[codes[ascii_mask]]
    return classes


def check_sequences(
    sequences: Sequence[str] | pd.Series, locate: Locator, iupac: str = "n"
) -> tuple[list[str], np.ndarray]:
    """Strip, upper-case and validate sequences.

    Returns the cleaned sequences and, per record, how many IUPAC ambiguity codes were mapped
    to ``N``. Raises :class:`DataError` for an empty sequence, a character outside IUPAC, or
    any ambiguity code when ``iupac="reject"``.
    """
    if iupac not in ("n", "reject"):
        raise ValueError(f"iupac must be 'n' or 'reject', got {iupac!r}")
    column = pd.Series(sequences, dtype="str").fillna("").str.strip()
    lengths = column.str.len().to_numpy(dtype=np.int64)
    if len(lengths) == 0:
        return [], np.zeros(0, dtype=np.int64)
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise DataError(
            f"{locate(int(empty[0]))}: empty sequence. Fix: fill in the sequence or delete this record."
        )
    raw = column.tolist()
    classes = _char_classes("".join(raw))
    bad = classes == _INVALID
    if iupac == "reject":
        bad |= classes == _AMBIGUOUS
    if bad.any():
        ends = np.cumsum(lengths)
        record = int(np.searchsorted(ends, int(np.argmax(bad)), side="right"))
        raise DataError(_bad_character_message(raw[record], locate(record), iupac))
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    ambiguous_per_record = np.add.reduceat((classes == _AMBIGUOUS).astype(np.int64), offsets)
    cleaned = column.str.upper().tolist()
    for record in np.flatnonzero(ambiguous_per_record):
        cleaned[record] = cleaned[record].translate(_TO_N)
    return cleaned, ambiguous_per_record


def check_training_lengths(sequences: Sequence[str], locate: Locator, limit: int = MAX_TRAINING_SEQUENCE_NT) -> None:
    """Refuse training records longer than ``limit`` nt, naming the first one, its length and the fix."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    too_long = np.flatnonzero(lengths > limit)
    if not too_long.size:
        return
    first = int(too_long[0])
    others = f" ({too_long.size} records of this file are; the longest has {int(lengths.max()):,} nt)" if too_long.size > 1 else ""
    raise DataError(
        f"{locate(first)}: the sequence has {int(lengths[first]):,} nt, more than the {limit:,} nt a training record "
        f"may have{others}. A model reads at most encoding.max_length tokens of a record (about 1 kb at the default "
        "512) and would never see the rest. Fix: cut such records into the regions that carry the label (windows of "
        "a few kb at most, each with the record's label), or score long sequences with 'python -m lingo_core "
        "predict', which reads them in sliding windows."
    )


def _bad_character_message(sequence: str, where: str, iupac: str) -> str:
    """Describe the first character of ``sequence`` that is not accepted under ``iupac``."""
    for position, char in enumerate(sequence, start=1):
        char_class = _CHAR_CLASS[ord(char)] if char.isascii() else _INVALID
        if char_class == _VALID or (char_class == _AMBIGUOUS and iupac == "n"):
            continue
        if char_class == _AMBIGUOUS:
            return (
                f"{where}: IUPAC ambiguity code {char!r} at position {position} of the sequence, "
                "but data.iupac=reject allows only A, C, G, T, N. Fix: set data.iupac=n to map "
                "ambiguity codes to N, or correct/remove this record."
            )
        return (
            f"{where}: invalid character {char!r} at position {position} of the sequence; a DNA "
            f"sequence may contain only A, C, G, T, N (any case) and the IUPAC codes "
            f"{' '.join(AMBIGUITY_CODES)}. Fix: correct or remove this record."
        )
    raise AssertionError("no invalid character found")  # callers only pass a failing sequence


def clean_sequence(seq: str, where: str, iupac: str = "n") -> tuple[str, int]:
    """Validate one sequence; return it upper-cased and the number of IUPAC codes mapped to N."""
    cleaned, replaced = check_sequences([seq], lambda _: where, iupac)
    return cleaned[0], int(replaced[0])


def parse_class_labels(
    values: pd.Series, locate: Locator, column: str, num_classes: Optional[int] = None
) -> np.ndarray:
    """Integer class labels (int64); with ``num_classes`` they must lie in ``0..num_classes-1``."""
    numbers = pd.to_numeric(pd.Series(values, dtype="str").str.strip(), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    not_integer = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    if not_integer.any():
        record = int(np.argmax(not_integer))
        raise DataError(
            f"{locate(record)}: label {values.iloc[record]!r} in column '{column}' is not an integer. "
            "Fix: class labels must be integers (0, 1, ...); correct this value."
        )
    labels = numbers.astype(np.int64)
    if num_classes is not None:
        outside = (labels < 0) | (labels >= num_classes)
        if outside.any():
            record = int(np.argmax(outside))
            raise DataError(
                f"{locate(record)}: label {labels[record]} in column '{column}' is outside "
                f"0..{num_classes - 1} for this task. Fix: correct the label or use the right task."
            )
    return labels


def parse_binary_labels(frame: pd.DataFrame, columns: list[str], locate: Locator) -> np.ndarray:
    """Multi-label matrix (float32, shape (n, len(columns))) whose values must all be 0 or 1."""
    matrix = np.empty((len(frame), len(columns)), dtype=np.float32)
    for j, column in enumerate(columns):
        text = pd.Series(frame[column], dtype="str").str.strip()
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        not_binary = ~np.isin(numbers, (0.0, 1.0))
        if not_binary.any():
            record = int(np.argmax(not_binary))
            raise DataError(
                f"{locate(record)}: value {text.iloc[record]!r} in label column '{column}' is not 0 or 1. "
                "Fix: multi-label columns must hold only 0 and 1."
            )
        matrix[:, j] = numbers
    return matrix


def require_two_classes(
    labels: np.ndarray, split: str, sources: list[str], label_names: Optional[Sequence[str]] = None
) -> None:
    """Raise :class:`DataError` when a single-label split holds fewer than two classes.

    ``labels`` may be class indices into ``label_names``: pass the names, and the message names the
    class as the data writes it (a file whose only label is 1 says "only class 1", not its index 0).
    """
    if labels.ndim != 1:
        return
    present = np.unique(labels)
    if present.size < 2:
        if not present.size:
            found = "no records"
        elif label_names is not None and 0 <= int(present[0]) < len(label_names):
            found = f"only class {label_names[int(present[0])]}"  # the label as the data writes it
        else:  # without the names, the class index (callers that map labels to indices should pass label_names)
            found = f"only class {present[0]}"
        raise DataError(
            f"{', '.join(sources)}: the {split} split has {found} ({labels.size} records), so it "
            "cannot train or evaluate a classifier. Fix: check the label column, or enlarge the split "
            "(data.split fractions, data.max_train / data.max_eval)."
        )
