"""Sequences to score, as the user gave them: raw strings, a FASTA file or a CSV/TSV table.

Files are read by :mod:`lingo_core.data.readers`, the reader training data uses. Unlike training,
a bad record (an empty FASTA header, an empty sequence) does not stop the reading: it is kept,
with where it came from, so prediction can report it in its row and score the rest.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

from .data import DataError
from .data.readers import (
    FastaEntry,
    empty_header_error,
    fasta_file_lines,
    iter_fasta_entries,
    iter_table_frames,
    read_fasta_file_text,
    read_table_frame,
    scan_fasta,
)

PathLike = Union[str, Path]
COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
FASTA_EXAMPLE_HEADER = ">seq1"


def reverse_complement(sequence: str) -> str:
    """Reverse complement of an upper-case ACGTN sequence."""
    return sequence.translate(COMPLEMENT)[::-1]


@dataclass
class InputRecord:
    """A sequence to score as given by the user, with where it came from (for error messages)."""

    id: str
    sequence: str
    where: str  # e.g. "scores.fa, record 'seq3' (line 7)"
    error: Optional[str] = None  # a problem found while reading (empty header...)


def records_from_sequences(sequences: Sequence[str], ids: Optional[Sequence[str]] = None) -> list[InputRecord]:
    """Wrap raw sequences; ids default to ``seq1``, ``seq2``..."""
    if ids is not None and len(ids) != len(sequences):
        raise ValueError(f"got {len(ids)} ids for {len(sequences)} sequences; pass one id per sequence or none")
    ids = list(ids) if ids is not None else [f"seq{i + 1}" for i in range(len(sequences))]
    return [InputRecord(str(i), s, f"sequence {n + 1} ('{i}')") for n, (i, s) in enumerate(zip(ids, sequences))]


def parse_fasta_records(text: str, source: str = "<text>") -> list[InputRecord]:
    """FASTA text to records, reporting bad records instead of stopping at the first one.

    Wrapped lines are joined, Windows line endings and a byte-order mark are accepted, the id is the
    first word of the header. (:func:`lingo_core.data.parse_fasta_text` raises at the first empty
    record, as training must; prediction reports it in that record's row and scores the rest.)
    """
    records = [_fasta_record(entry, n, source) for n, entry in enumerate(scan_fasta(text, source, FASTA_EXAMPLE_HEADER))]
    if not records:
        raise DataError(_no_records(source))
    return records


def _fasta_record(entry: FastaEntry, n: int, source: str) -> InputRecord:
    """The ``n``-th (0-based) FASTA entry as a record to score; an empty header is reported in the record."""
    record_id = entry.header.split()[0] if entry.header else f"record{n + 1}"
    record = InputRecord(record_id, entry.sequence, f"{source}, record '{record_id}' (line {entry.line})")
    if not entry.header:
        record.error = empty_header_error(source, entry.line, FASTA_EXAMPLE_HEADER)
    return record


def _no_records(source: str) -> str:
    return f"{source}: no FASTA records (no line starts with '>'). Fix: check the file."


def read_fasta_input(path: PathLike) -> list[InputRecord]:
    """Records of a FASTA file (``.gz`` allowed) to score."""
    return parse_fasta_records(read_fasta_file_text(path), str(path))


def iter_fasta_input(path: PathLike) -> Iterator[InputRecord]:
    """:func:`read_fasta_input` one record at a time (memory bounded by the longest record); the file is opened now."""
    source = str(path)
    lines = fasta_file_lines(path)

    def records() -> Iterator[InputRecord]:
        n = 0
        for n, entry in enumerate(iter_fasta_entries(lines, source, FASTA_EXAMPLE_HEADER), start=1):
            yield _fasta_record(entry, n - 1, source)
        if not n:
            raise DataError(_no_records(source))

    return records()


def count_fasta_records(path: PathLike) -> Optional[int]:
    """How many records a FASTA file holds (lines starting with '>'), read fast for a progress total; None if unreadable."""
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")) as handle:
            return sum(1 for line in handle if line.lstrip(b"\xef\xbb\xbf \t").startswith(b">"))
    except OSError:
        return None


def read_csv_input(path: PathLike, sequence_column: str = "sequence", id_column: Optional[str] = None) -> list[InputRecord]:
    """Records of a CSV/TSV table; ids from ``id_column`` (default: an ``id`` column if present, else ``file:line``)."""
    path = Path(path)
    frame, lines = read_table_frame(path, example_header="id,sequence")
    id_column = _check_columns(path, list(frame.columns), sequence_column, id_column)
    return _table_records(path, frame, lines, sequence_column, id_column)


def iter_csv_input(
    path: PathLike, sequence_column: str = "sequence", id_column: Optional[str] = None, chunk_rows: int = 10_000
) -> Iterator[InputRecord]:
    """:func:`read_csv_input` ``chunk_rows`` rows at a time; the header is read and checked now."""
    path = Path(path)
    columns, frames = iter_table_frames(path, chunk_rows, example_header="id,sequence")
    id_column = _check_columns(path, columns, sequence_column, id_column)

    def records() -> Iterator[InputRecord]:
        for frame, lines in frames:
            yield from _table_records(path, frame, lines, sequence_column, id_column)

    return records()


def _check_columns(path: Path, columns: Sequence[str], sequence_column: str, id_column: Optional[str]) -> Optional[str]:
    """The id column to use (``id`` when present and none was named); a clear error for a missing column."""
    if id_column is None and "id" in columns:
        id_column = "id"
    for column in [sequence_column] + ([id_column] if id_column else []):
        if column not in columns:
            raise DataError(
                f"{path}, line 1 (header): no column '{column}'; columns found: {list(columns)}. "
                "Fix: rename the header or pass the sequence/id column name (--sequence-column / --id-column)."
            )
    return id_column


def _table_records(path: Path, frame, lines, sequence_column: str, id_column: Optional[str]) -> list[InputRecord]:
    ids = frame[id_column].str.strip().tolist() if id_column else [f"{path.name}:{n}" for n in lines]
    return [
        InputRecord(record_id, sequence, f"{path}, line {line} (id '{record_id}')")
        for record_id, sequence, line in zip(ids, frame[sequence_column].tolist(), lines)
    ]


def iter_inputs(
    sequences: Optional[Sequence[str]] = None,
    *,
    ids: Optional[Sequence[str]] = None,
    fasta: Optional[PathLike] = None,
    csv: Optional[PathLike] = None,
    sequence_column: str = "sequence",
    id_column: Optional[str] = None,
) -> Iterator[InputRecord]:
    """:func:`gather_inputs` as a stream: records are read as they are needed (files are opened and checked now)."""
    given = [name for name, value in (("sequences", sequences), ("fasta", fasta), ("csv", csv)) if value]
    if len(given) != 1:
        raise ValueError(f"give exactly one input: raw sequences, a FASTA file or a CSV file (got {given or 'none'})")
    if fasta:
        return iter_fasta_input(fasta)
    if csv:
        return iter_csv_input(csv, sequence_column, id_column)
    return iter(records_from_sequences(list(sequences or []), ids))


def gather_inputs(
    sequences: Optional[Sequence[str]] = None,
    *,
    ids: Optional[Sequence[str]] = None,
    fasta: Optional[PathLike] = None,
    csv: Optional[PathLike] = None,
    sequence_column: str = "sequence",
    id_column: Optional[str] = None,
) -> list[InputRecord]:
    """Records from exactly one source: raw sequences, a FASTA file or a CSV file."""
    return list(
        iter_inputs(sequences, ids=ids, fasta=fasta, csv=csv, sequence_column=sequence_column, id_column=id_column)
    )


def as_records(inputs: Union[Sequence[str], Sequence[InputRecord]], ids: Optional[Sequence[str]] = None) -> list[InputRecord]:
    """Raw sequences (with optional ids) or :class:`InputRecord` s, as records."""
    inputs = list(inputs)
    if inputs and all(isinstance(x, InputRecord) for x in inputs):
        if ids is not None:
            raise ValueError("pass ids only with raw sequences; InputRecords carry their own ids")
        return inputs
    if any(isinstance(x, InputRecord) for x in inputs):
        raise TypeError("pass either raw sequence strings or InputRecords, not a mix")
    return records_from_sequences([str(x) for x in inputs], ids)
