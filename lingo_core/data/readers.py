"""Reading FASTA and CSV/TSV files: one reader for training data (:mod:`.loaders`) and prediction inputs.

What a record means (a label in the header, a labels table, an id column) is the caller's business:
these functions only read, join wrapped lines, number lines and say where a file is malformed.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lingo_core.data.validation import DataError

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
FASTA_SUFFIXES = (".fa", ".fasta", ".fna")


def data_suffix(path: Path) -> str:
    """The format suffix, ignoring a trailing ``.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


# --------------------------------------------------------------------------------------- FASTA


@dataclass
class FastaEntry:
    """One FASTA record as written: the caller decides what an empty header or sequence means."""

    header: str  # the header line without '>', stripped ("" when empty)
    sequence: str  # its sequence lines joined ("" when it has none)
    line: int  # line number of the header (1-based)


def scan_fasta(text: str, source: str = "<text>", example_header: str = ">seq1|0") -> list[FastaEntry]:
    """Split FASTA text into entries; wrapped lines are joined, Windows line endings and a byte-order mark accepted.

    Raises :class:`DataError` only when there is sequence data before the first header (not FASTA).
    """
    entries: list[FastaEntry] = []
    chunks: list[str] = []
    for number, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        line = line.strip()
        if line.startswith(">"):
            if entries:
                entries[-1].sequence = "".join(chunks)
            entries.append(FastaEntry(line[1:].strip(), "", number))
            chunks = []
        elif line:
            if not entries:
                raise DataError(
                    f"{source}, line {number}: sequence data before the first '>' header; this is not FASTA. "
                    f"Fix: start each record with a header line such as '{example_header}'."
                )
            chunks.append(line)
    if entries:
        entries[-1].sequence = "".join(chunks)
    return entries


def empty_header_error(source: str, line: int, example_header: str = ">seq1|0") -> str:
    return f"{source}, line {line}: empty FASTA header '>'. Fix: give every record an id, e.g. '{example_header}'."


def parse_fasta_text(text: str, source: str = "<text>") -> list[tuple[str, str]]:
    """Parse FASTA text into ``(header without '>', sequence)``; raises at the first empty header or record."""
    entries = scan_fasta(text, source)
    for entry in entries:
        if not entry.header:
            raise DataError(empty_header_error(source, entry.line))
        if not entry.sequence:
            raise DataError(
                f"{source}: record '{entry.header}' (line {entry.line}) has no sequence. "
                "Fix: add its sequence below the header or delete the header."
            )
    return [(entry.header, entry.sequence) for entry in entries]


def read_fasta_file_text(path: str | Path) -> str:
    """The text of a FASTA file (``.gz`` allowed, a UTF-8 byte-order mark dropped)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".gz":
            with gzip.open(path, "rt", encoding="utf-8-sig") as handle:
                return handle.read()
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: FASTA file not found. Fix: check the path.") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise DataError(
            f"{path}: cannot read as UTF-8 FASTA text ({exc}). Fix: pass a plain or gzipped FASTA file."
        ) from None


def read_fasta(path: str | Path) -> list[tuple[str, str]]:
    """Read a FASTA file (``.gz`` allowed) into ``(header, sequence)`` pairs."""
    return parse_fasta_text(read_fasta_file_text(path), str(path))


# --------------------------------------------------------------------------------------- tables


def read_table_frame(path: Path, example_header: str = "sequence,label") -> tuple[pd.DataFrame, np.ndarray]:
    """Read a CSV/TSV (by suffix; ``.gz`` allowed) as strings: its non-blank rows and their line numbers (header = 1).

    Column names are stripped; blank lines are dropped but still count for the line numbers.
    """
    separator = TABLE_SUFFIXES.get(data_suffix(path), ",")
    try:
        frame = pd.read_csv(
            path, sep=separator, dtype=str, keep_default_na=False, encoding="utf-8-sig", skip_blank_lines=False
        )
    except FileNotFoundError:
        raise DataError(f"{path}: file not found. Fix: check the path.") from None
    except pd.errors.EmptyDataError:
        raise DataError(
            f"{path}: the file is empty. Fix: add a header line such as '{example_header}' and data rows."
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: cannot parse as a table ({exc}). Fix: check quoting and the number of fields per line."
        ) from None
    frame.columns = [str(column).strip() for column in frame.columns]
    frame = frame[~(frame == "").all(axis=1)]
    return frame, frame.index.to_numpy() + 2
