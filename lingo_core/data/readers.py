"""Reading FASTA and CSV/TSV files: one reader for training data (:mod:`.loaders`) and prediction inputs.

What a record means (a label in the header, a labels table, an id column) is the caller's business:
these functions only read, join wrapped lines, number lines and say where a file is malformed.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

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
    return list(iter_fasta_entries(text.lstrip("\ufeff").splitlines(), source, example_header))


def iter_fasta_entries(lines: Iterable[str], source: str = "<text>", example_header: str = ">seq1|0") -> Iterator[FastaEntry]:
    """The entries of FASTA ``lines`` (without line ends), each as soon as it is complete: :func:`scan_fasta` for streams."""
    entry: FastaEntry | None = None
    chunks: list[str] = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if line.startswith(">"):
            if entry is not None:
                entry.sequence = "".join(chunks)
                yield entry
            entry = FastaEntry(line[1:].strip(), "", number)
            chunks = []
        elif line:
            if entry is None:
                raise DataError(
                    f"{source}, line {number}: sequence data before the first '>' header; this is not FASTA. "
                    f"Fix: start each record with a header line such as '{example_header}'."
                )
            chunks.append(line)
    if entry is not None:
        entry.sequence = "".join(chunks)
        yield entry


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
    except (UnicodeDecodeError, OSError, EOFError, zlib.error) as exc:  # EOFError, zlib.error: a cut or damaged .gz
        raise DataError(
            f"{path}: cannot read as UTF-8 FASTA text ({exc}). Fix: pass a plain or gzipped FASTA file."
        ) from None


def fasta_file_lines(path: str | Path) -> Iterator[str]:
    """The lines of a FASTA file (``.gz`` allowed), read as they are needed; the file is opened now.

    Lines are split as :func:`read_fasta_file_text` followed by ``str.splitlines`` would split them,
    and read errors become the same :class:`DataError` s.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".gz":
            handle = gzip.open(path, "rt", encoding="utf-8-sig")
        else:
            handle = open(path, encoding="utf-8-sig")  # noqa: SIM115 - closed by the generator
    except FileNotFoundError:
        raise DataError(f"{path}: FASTA file not found. Fix: check the path.") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read as UTF-8 FASTA text ({exc}). Fix: pass a plain or gzipped FASTA file.") from None

    def lines() -> Iterator[str]:
        with handle:
            try:
                first = True
                for line in handle:
                    if first:
                        line, first = line.lstrip("\ufeff"), False
                    yield from line.splitlines()
            except (UnicodeDecodeError, OSError, EOFError, zlib.error) as exc:
                raise DataError(
                    f"{path}: cannot read as UTF-8 FASTA text ({exc}). Fix: pass a plain or gzipped FASTA file."
                ) from None

    return lines()


def read_fasta(path: str | Path) -> list[tuple[str, str]]:
    """Read a FASTA file (``.gz`` allowed) into ``(header, sequence)`` pairs."""
    return parse_fasta_text(read_fasta_file_text(path), str(path))


# --------------------------------------------------------------------------------------- tables


def read_table_frame(path: Path, example_header: str = "sequence,label") -> tuple[pd.DataFrame, np.ndarray]:
    """Read a CSV/TSV (by suffix; ``.gz`` allowed) as strings: its non-blank rows and their line numbers (header = 1).

    Column names are stripped; blank lines are dropped but still count for the line numbers.
    """
    return _non_blank(_read_csv(path, example_header), path)


def iter_table_frames(
    path: Path, chunk_rows: int = 10_000, example_header: str = "sequence,label"
) -> tuple[list[str], Iterator[tuple[pd.DataFrame, np.ndarray]]]:
    """:func:`read_table_frame` in pieces of ``chunk_rows`` rows: the column names (read now) and the pieces (as needed)."""
    columns = [str(column).strip() for column in _read_csv(path, example_header, nrows=0).columns]

    def frames() -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        reader = _read_csv(path, example_header, chunksize=chunk_rows)
        with reader:
            while True:
                try:
                    frame = next(reader)
                except StopIteration:
                    return
                except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError, zlib.error) as exc:
                    raise DataError(
                        f"{path}: cannot parse as a table ({exc}). Fix: check quoting and the number of fields per line."
                    ) from None
                yield _non_blank(frame, path)

    return columns, frames()


def _read_csv(path: Path, example_header: str, **options):
    """``pandas.read_csv`` with every value a string, blank lines kept, and its errors as :class:`DataError`."""
    separator = TABLE_SUFFIXES.get(data_suffix(path), ",")
    try:
        return pd.read_csv(
            path, sep=separator, dtype=str, keep_default_na=False, encoding="utf-8-sig", skip_blank_lines=False, **options
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
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, or a cut or damaged .gz
        raise DataError(f"{path}: cannot read the file ({exc}). Fix: pass a plain or gzipped CSV/TSV file.") from None


def _non_blank(frame: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    if not isinstance(frame.index, pd.RangeIndex):  # pandas made the first field an index: one field too many
        raise DataError(
            f"{path}, line 2: the rows have one field more than the header line {list(frame.columns)}. "
            "Fix: name every column in the header, or remove the extra field (often a trailing comma or tab)."
        )
    frame.columns = [str(column).strip() for column in frame.columns]
    frame = frame[~(frame == "").all(axis=1)]
    return frame, frame.index.to_numpy() + 2
