"""Score new sequences with a trained run: probabilities, predicted labels and per-sequence flags.

    >>> from lingo_core.predict import load_predictor
    >>> predictor = load_predictor("runs/20261125-...")          # cached: cheap to call again
    >>> result = predictor.predict(["ACGT...", "TTGA..."], ids=["a", "b"])
    >>> result.to_frame()           # id, sequence, prob_<label>..., predicted, flags
    >>> result.to_csv("scores.csv"); result.to_json("scores.json")

The run is restored exactly as trained (:func:`lingo_core.inference.load_trained`: base model,
adapter, encoding and language prefix). Sequences are validated like training data (upper-cased,
IUPAC codes mapped to N or rejected as the run's ``data.iupac`` says); a bad record is reported in
its row and the rest are still scored, unless ``strict=True``. A sequence whose encoding does not
fit the model window (``encoding.max_length`` tokens) is scored in sliding windows whose
probabilities are aggregated (``mean`` or ``max``); shorter ones are right-padded in the batch as
in training. Inference is batched by token length under ``torch.inference_mode``.

Many records stream through in bounded memory: :meth:`Predictor.predict_stream` scores them chunk
by chunk (at most :data:`STREAM_CHUNK_RECORDS` records or :data:`STREAM_CHUNK_NT` nucleotides at a
time, and the windows of a long sequence :data:`WINDOW_BLOCK` at a time), and
:class:`PredictionWriter` writes each chunk's rows as they come, under a temporary name that becomes
the output file only when every record was written::

    >>> with PredictionWriter("scores.csv") as writer:
    ...     for chunk in predictor.predict_stream(iter_inputs(fasta="genome.fa")):
    ...         writer.write(chunk)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Generator, Iterable, Iterator, Optional, Protocol, Sequence, Union

import numpy as np
import pandas as pd
import torch

from . import runs
from .config import ConfigError
from .data import DataError, clean_sequence
from .data.validation import check_sequences
from .inference import TrainedModel, load_trained, logits_to_probs, predict_logits
from .sequence_input import InputRecord, as_records, count_fasta_records, gather_inputs, iter_inputs, reverse_complement

PathLike = Union[str, Path]
AGGREGATIONS = ("mean", "max")
WINDOW_MARGIN = 0.9  # windows of long sequences use 90 % of what a typical sequence fits, so they are rarely cut
CPU_BATCH_SIZE = 64  # at most this many sequences per forward pass on CPU ...
CPU_MAX_TOKENS = 4096  # ... and at most this many tokens (rows x length): batches that stay in cache run faster
GPU_BATCH_SIZE = 256
STREAM_CHUNK_RECORDS = 512  # predict_stream scores at most this many records at a time ...
STREAM_CHUNK_NT = 2_000_000  # ... holding at most about this many nucleotides (one longer record is a chunk of its own)
WINDOW_BLOCK = 4096  # windows encoded and scored at a time, so a chromosome-long sequence stays in bounded memory
OUTPUT_FORMATS = {".csv": "csv", ".tsv": "csv", "": "csv", ".json": "json"}  # .tsv is written comma-separated, as before


def default_batch_size(device: torch.device) -> int:
    """Sequences per forward pass: small on CPU (bigger batches do not go faster), large on a GPU."""
    return GPU_BATCH_SIZE if device.type == "cuda" else CPU_BATCH_SIZE


def default_max_tokens(device: torch.device) -> Optional[int]:
    """Tokens per forward pass (rows x padded length): bounded on CPU, unbounded on a GPU."""
    return None if device.type == "cuda" else CPU_MAX_TOKENS


# --------------------------------------------------------------------------------------- outputs


@dataclass
class SequencePrediction:
    """The prediction for one input record; ``error`` is set (and probabilities are None) when it failed validation."""

    id: str
    sequence: str
    probabilities: Optional[np.ndarray]
    predicted: str  # label name ("" on error; for multi-label the labels at or above the threshold, ';'-joined)
    length: int
    n_fraction: float  # share of N (including IUPAC codes mapped to N)
    n_windows: int  # windows scored (per strand)
    windows_truncated: int = 0  # windows whose encoding still did not fit and lost their tail
    iupac_replaced: int = 0
    duplicate_id: bool = False
    error: Optional[str] = None


@dataclass
class Predictions:
    """Predictions for a batch of records, in input order, with how they were made."""

    rows: list[SequencePrediction]
    label_names: list[str]
    multi_label: bool
    aggregation: str
    reverse_complement: bool
    window_nt: int
    stride_nt: int
    run_dir: str
    source: str
    threshold: float = 0.5
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def errors(self) -> list[str]:
        """Error messages of the records that could not be scored (each names its record)."""
        return [r.error for r in self.rows if r.error]

    @property
    def probabilities(self) -> np.ndarray:
        """(n, num_labels) array in input order; NaN rows for records that failed."""
        out = np.full((len(self.rows), len(self.label_names)), np.nan)
        for i, row in enumerate(self.rows):
            if row.probabilities is not None:
                out[i] = row.probabilities
        return out

    def to_frame(self) -> pd.DataFrame:
        """Columns ``id``, ``sequence``, ``prob_<label>``..., ``predicted`` and the flags."""
        probs = self.probabilities
        frame = pd.DataFrame({"id": [r.id for r in self.rows], "sequence": [r.sequence for r in self.rows]})
        for j, name in enumerate(self.label_names):
            frame[f"prob_{name}"] = probs[:, j]
        frame["predicted"] = [r.predicted for r in self.rows]
        frame["length"] = [r.length for r in self.rows]
        frame["n_fraction"] = [round(r.n_fraction, 6) for r in self.rows]
        frame["n_windows"] = [r.n_windows for r in self.rows]
        frame["windows_truncated"] = [r.windows_truncated for r in self.rows]
        frame["aggregation"] = self.aggregation
        frame["rc_averaged"] = self.reverse_complement
        frame["iupac_replaced"] = [r.iupac_replaced for r in self.rows]
        frame["duplicate_id"] = [r.duplicate_id for r in self.rows]
        frame["error"] = [r.error or "" for r in self.rows]
        return frame

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, then one entry per record with ``probabilities`` keyed by label name."""
        return {
            **self.header(),
            "n_records": len(self.rows),
            "n_errors": len(self.errors),
            "predictions": [self.entry(row) for row in self.rows],
        }

    def header(self) -> dict[str, Any]:
        """The JSON export's settings: the same for every chunk of one :meth:`Predictor.predict_stream`."""
        return {
            "run_dir": self.run_dir,
            "source": self.source,
            "label_names": self.label_names,
            "multi_label": self.multi_label,
            "probability": "sigmoid per label" if self.multi_label else "softmax over classes",
            "threshold": self.threshold if self.multi_label else None,
            "aggregation": self.aggregation_text(),
            "reverse_complement_averaged": self.reverse_complement,
            "window_nt": self.window_nt,
            "stride_nt": self.stride_nt,
            **self.settings,
        }

    def entry(self, row: SequencePrediction) -> dict[str, Any]:
        """One record of the JSON export."""
        return {
            "id": row.id,
            "sequence": row.sequence,
            "probabilities": None
            if row.probabilities is None
            else {name: float(p) for name, p in zip(self.label_names, row.probabilities)},
            "predicted": row.predicted,
            "flags": {
                "length": row.length,
                "n_fraction": row.n_fraction,
                "n_windows": row.n_windows,
                "windows_truncated": row.windows_truncated,
                "iupac_replaced": row.iupac_replaced,
                "duplicate_id": row.duplicate_id,
            },
            "error": row.error,
        }

    def aggregation_text(self) -> str:
        how = {
            "mean": "mean of the window probabilities",
            "max": "per-label maximum over windows" + ("" if self.multi_label else " (does not sum to 1)"),
        }[self.aggregation]
        return f"{self.aggregation}: {how}; windows of {self.window_nt} nt, stride {self.stride_nt} nt, for sequences that do not fit one window"

    def to_csv(self, path: PathLike) -> Path:
        path = Path(path)
        self.to_frame().to_csv(path, index=False)
        return path

    def to_json(self, path: PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def save(self, path: PathLike) -> Path:
        """Write CSV or JSON, chosen by the file suffix; the file appears only once complete."""
        with PredictionWriter(path) as writer:
            writer.write(self)
        return Path(path)


# --------------------------------------------------------------------------------------- streaming output


class ScoredChunk(Protocol):
    """What :class:`PredictionWriter` writes: :class:`Predictions`, or a panel's :class:`lingo_core.panel.PanelScores`."""

    rows: list[Any]

    def __len__(self) -> int: ...

    @property
    def errors(self) -> list[str]: ...

    def to_frame(self) -> pd.DataFrame: ...

    def header(self) -> dict[str, Any]: ...

    def entry(self, row: Any) -> dict[str, Any]: ...


def output_format(path: PathLike) -> str:
    """``csv`` or ``json`` by the file suffix; a :class:`ConfigError` for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"{path}: unknown output format '{suffix}'. Fix: name the output file .csv or .json")
    return OUTPUT_FORMATS[suffix]


def _open_partial(path: Path) -> IO[str]:
    """A new temporary file next to ``path`` (proves the folder is writable), or a clear error."""
    folder = path.parent
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder. Fix: give a file name for the predictions, e.g. {path / 'predictions.csv'}")
    if not folder.is_dir():
        raise ConfigError(f"{path}: the folder {folder} does not exist. Fix: create it first, or write the predictions elsewhere")
    try:
        return tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", newline="", dir=folder, prefix=f".{path.name}.", suffix=".partial", delete=False
        )
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write in {folder} ({exc.strerror or exc}). Fix: choose a writable place") from None


class PredictionWriter:
    """Writes predictions chunk by chunk: to a .csv/.json file, or as CSV to a stream (stdout).

    A file is written under a temporary name next to it (``.NAME.*.partial``) and moved into place
    with ``os.replace`` only by :meth:`close`, once every record is in it; a failure (an exception
    inside ``with``, or :meth:`abort`) removes the temporary file and leaves any earlier file at
    ``path`` as it was. The format is checked and the temporary file created at construction, so a
    bad path fails before anything is scored. CSV and JSON are the same, byte for byte, as
    :meth:`Predictions.to_csv` / :meth:`Predictions.to_json` of all rows at once.
    """

    def __init__(self, path: Optional[PathLike] = None, stream: Optional[IO[str]] = None) -> None:
        if (path is None) == (stream is None):
            raise ValueError("give exactly one of path and stream")
        self.path = None if path is None else Path(path).expanduser()
        self.format = "csv" if self.path is None else output_format(self.path)
        self._handle: Optional[IO[str]] = None if self.path is None else _open_partial(self.path)
        self._out: IO[str] = stream if stream is not None else self._handle  # type: ignore[assignment]
        self._body: Optional[IO[str]] = None  # JSON: the entries, until the counts for the header are known
        self._header: Optional[dict[str, Any]] = None
        self.rows = 0
        self.errors = 0
        self.closed = False

    @property
    def partial_path(self) -> Optional[Path]:
        """Where the rows go until :meth:`close` (None when writing to a stream)."""
        return None if self._handle is None else Path(self._handle.name)

    def write(self, chunk: ScoredChunk) -> None:
        """Append the rows of one chunk (in order)."""
        if self.format == "csv":
            chunk.to_frame().to_csv(self._out, index=False, header=self._header is None)
            self._out.flush()
        else:
            if self._body is None:
                self._body = tempfile.TemporaryFile("w+", encoding="utf-8", dir=self.path.parent)  # type: ignore[union-attr]
            for k, row in enumerate(chunk.rows):
                separator = ",\n" if self.rows + k else ""
                self._body.write(separator + textwrap.indent(json.dumps(chunk.entry(row), indent=2), "    "))
        if self._header is None:
            self._header = chunk.header()
        self.rows += len(chunk)
        self.errors += len(chunk.errors)

    def close(self) -> Optional[Path]:
        """Finish the output; a file is moved into place now. Returns its path (None for a stream)."""
        if self.closed:
            return self.path
        if self._header is None:
            raise ValueError("nothing was written: PredictionWriter needs at least one chunk (an empty one is fine)")
        if self.format == "json":
            self._finish_json()
        self.closed = True
        if self._handle is None:
            self._out.flush()
            return None
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._handle.name, self.path)  # type: ignore[arg-type]
        return self.path

    def _finish_json(self) -> None:
        head = json.dumps({**self._header, "n_records": self.rows, "n_errors": self.errors, "predictions": []}, indent=2)
        assert head.endswith("[]\n}")
        if not self.rows:
            self._out.write(head + "\n")
            return
        self._out.write(head[: -len("[]\n}")] + "[\n")
        self._body.seek(0)  # type: ignore[union-attr]
        while block := self._body.read(1 << 20):  # type: ignore[union-attr]
            self._out.write(block)
        self._out.write("\n  ]\n}\n")
        self._body.close()  # type: ignore[union-attr]

    def abort(self) -> None:
        """Drop everything written so far (the temporary file is removed; ``path`` is left untouched)."""
        self.closed = True
        if self._body is not None:
            self._body.close()
        if self._handle is not None:
            self._handle.close()
            Path(self._handle.name).unlink(missing_ok=True)

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif not self.closed:
            self.abort()


# --------------------------------------------------------------------------------------- the predictor


@dataclass
class _Window:
    record: int  # row in the output
    start: int
    end: int


class Predictor:
    """A trained run ready to score sequences (build it with :func:`load_predictor`, which caches)."""

    def __init__(self, trained: TrainedModel, merge: bool = True) -> None:
        """Take ownership of ``trained``: with ``merge`` a peft adapter is merged into the base weights.

        Merging gives the same logits (to float rounding) and removes the adapter's extra small
        matmuls from every layer: inference and attribution run ~1.3x faster on CPU (bench/).
        """
        self.trained = trained
        self.merged = False
        if merge:
            from peft import PeftModel

            if isinstance(trained.model, PeftModel):
                trained.model = trained.model.merge_and_unload()
                self.merged = True
        trained.model.eval()
        for param in trained.model.parameters():  # inference only: no weight gradients, ever
            param.requires_grad_(False)
        self._max_nucleotides: Optional[int] = None

    # -- properties -------------------------------------------------------------------------
    @property
    def scores_both_strands(self) -> bool:
        """Whether the run scored dev and test on both strands (``data.eval_strands: both``): predictions do by default."""
        return self.trained.cfg.data.eval_strands == "both"

    @property
    def model(self) -> torch.nn.Module:
        return self.trained.model

    @property
    def encoder(self):
        return self.trained.encoder

    @property
    def label_names(self) -> list[str]:
        return self.trained.label_names

    @property
    def multi_label(self) -> bool:
        return self.trained.multi_label

    @property
    def device(self) -> torch.device:
        return self.trained.device

    @property
    def pad_id(self) -> int:
        return self.trained.tokenizer.pad_token_id

    @property
    def iupac(self) -> str:
        return self.trained.cfg.data.iupac

    @property
    def default_batch_size(self) -> int:
        return default_batch_size(self.device)

    @property
    def window_nt(self) -> int:
        """Nucleotides per sliding window: a margin below what a typical sequence fits in ``max_length`` tokens."""
        if self._max_nucleotides is None:
            self._max_nucleotides = self.encoder.max_nucleotides()
        return max(1, int(self._max_nucleotides * WINDOW_MARGIN))

    # -- scoring ----------------------------------------------------------------------------
    def logits(self, sequences: Sequence[str], batch_size: Optional[int] = None) -> np.ndarray:
        """Raw logits of clean upper-case sequences, one window each (cut to fit if longer)."""
        ids, _ = self.encoder.encode_batch(list(sequences))
        return self.logits_of_ids(ids, batch_size)

    def logits_of_ids(
        self, input_ids: Sequence[list[int]], batch_size: Optional[int] = None, precision: Optional[str] = None
    ) -> np.ndarray:
        """Logits of already-encoded sequences (length-bucketed batches, inference mode).

        An explicit ``batch_size`` is used as given; by default batches are sized for the device.
        ``precision`` defaults to the run's (bf16 autocast on CPUs and GPUs that have it); ``"no"``
        computes in fp32, as attributions do (their small differences need it).
        """
        if not input_ids:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        return predict_logits(
            self.model, input_ids, self.pad_id, batch_size or self.default_batch_size, self.device,
            self.trained.loaded.precision if precision is None else precision,
            max_tokens=None if batch_size else default_max_tokens(self.device),
        )

    def probabilities(self, sequences: Sequence[str], batch_size: Optional[int] = None) -> np.ndarray:
        """Class (or per-label) probabilities of clean sequences, one window each."""
        return logits_to_probs(self.logits(sequences, batch_size), self.multi_label)

    def predict(
        self,
        inputs: Union[Sequence[str], Sequence[InputRecord]],
        ids: Optional[Sequence[str]] = None,
        *,
        aggregate: str = "mean",
        stride: Optional[int] = None,
        window: Optional[int] = None,
        reverse_complement: Optional[bool] = None,
        strict: bool = False,
        batch_size: Optional[int] = None,
        threshold: float = 0.5,
    ) -> Predictions:
        """Score raw sequences or :class:`InputRecord` s; see the module docstring.

        ``window``/``stride`` (nt) set the sliding windows used for sequences whose encoding does not
        fit the model (default: :attr:`window_nt`, stride half a window). ``strict`` raises a
        :class:`DataError` at the first invalid record instead of reporting it in its row. All
        records are scored together; for many records use :meth:`predict_stream`.
        """
        options = self.scoring_options(aggregate, stride, window, reverse_complement, strict, batch_size, threshold)
        return self._predict_chunk(as_records(inputs, ids), {}, 0, options)

    def predict_stream(
        self,
        records: Iterable[InputRecord],
        *,
        chunk_records: int = STREAM_CHUNK_RECORDS,
        chunk_nt: int = STREAM_CHUNK_NT,
        aggregate: str = "mean",
        stride: Optional[int] = None,
        window: Optional[int] = None,
        reverse_complement: Optional[bool] = None,
        strict: bool = False,
        batch_size: Optional[int] = None,
        threshold: float = 0.5,
    ) -> Iterator[Predictions]:
        """Score ``records`` (any iterable, read lazily) chunk by chunk: one :class:`Predictions` per chunk, in input order.

        A chunk holds at most ``chunk_records`` records and, unless one record alone is longer,
        about ``chunk_nt`` nucleotides, so memory does not grow with the number of records (only
        the set of ids seen, for the ``duplicate_id`` flag). Options as in :meth:`predict`, checked
        before the first record is read. No records at all give one empty chunk.
        """
        if chunk_records < 1 or chunk_nt < 1:
            raise ValueError(f"chunk_records ({chunk_records}) and chunk_nt ({chunk_nt}) must be at least 1")
        options = self.scoring_options(aggregate, stride, window, reverse_complement, strict, batch_size, threshold)

        def chunks() -> Iterator[Predictions]:
            first_seen: dict[str, int] = {}
            start = 0
            for chunk in record_chunks(records, chunk_records, chunk_nt):
                yield self._predict_chunk(chunk, first_seen, start, options)
                start += len(chunk)

        return chunks()

    def scoring_options(
        self, aggregate: str = "mean", stride: Optional[int] = None, window: Optional[int] = None,
        reverse_complement: Optional[bool] = None, strict: bool = False, batch_size: Optional[int] = None, threshold: float = 0.5,
    ) -> dict[str, Any]:
        """Checked scoring options (as :meth:`predict` takes them), with the window and stride resolved to nucleotides.

        ``reverse_complement`` None: as the run scored its dev and test sequences (:attr:`scores_both_strands`).
        """
        if reverse_complement is None:
            reverse_complement = self.scores_both_strands
        if aggregate not in AGGREGATIONS:
            raise ValueError(f"aggregate must be one of {AGGREGATIONS}, got {aggregate!r}")
        window_nt = int(window or self.window_nt)
        stride_nt = int(stride or max(1, window_nt // 2))
        if window_nt < 1 or stride_nt < 1:
            raise ValueError(f"window ({window_nt}) and stride ({stride_nt}) must be positive numbers of nucleotides")
        if stride_nt > window_nt:
            raise ValueError(f"stride {stride_nt} nt is larger than the window {window_nt} nt: nucleotides would be skipped")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        return {
            "aggregate": aggregate, "window_nt": window_nt, "stride_nt": stride_nt, "explicit_window": window is not None,
            "reverse_complement": reverse_complement, "strict": strict, "batch_size": batch_size, "threshold": threshold,
        }

    def _predict_chunk(
        self, records: list[InputRecord], first_seen: dict[str, int], start: int, options: dict[str, Any]
    ) -> Predictions:
        """Validate and score one chunk of records; ``first_seen`` carries ids across chunks, ``start`` numbers them."""
        rows, clean = self.validate(records, options["strict"], first_seen, start)
        self._score(rows, clean, options)
        return self.predictions(rows, options)

    def predictions(self, rows: list[SequencePrediction], options: dict[str, Any]) -> Predictions:
        """Scored rows with how they were scored (``options`` from :meth:`scoring_options`)."""
        return Predictions(
            rows, list(self.label_names), self.multi_label, options["aggregate"], options["reverse_complement"],
            options["window_nt"], options["stride_nt"], str(self.trained.run.path), self.trained.source,
            options["threshold"],
        )

    def _score(self, rows: list[SequencePrediction], clean: dict[int, str], options: dict[str, Any]) -> None:
        """Score every window of the valid records, :data:`WINDOW_BLOCK` windows at a time, and fill their rows."""
        run_steps(self.score_steps(rows, clean, options), lambda ids: self.logits_of_ids(ids, options["batch_size"]))

    def score_steps(
        self, rows: list[SequencePrediction], clean: dict[int, str], options: dict[str, Any]
    ) -> Generator[list[list[int]], np.ndarray, None]:
        """:meth:`_score` as a generator: it yields the token ids it needs logits for and is sent those logits.

        Whoever drives it decides how the logits are computed: :meth:`_score` with this run's model,
        a :class:`lingo_core.panel.Panel` with several runs' adapters in one batch. Windows,
        reverse complements and aggregation are the same code either way.
        """
        windows, window_ids, truncated = self._windows(
            clean, options["window_nt"], options["stride_nt"], options["explicit_window"]
        )
        probs = np.zeros((0, len(self.label_names)), dtype=np.float32)
        for lo in range(0, len(windows), WINDOW_BLOCK):
            hi = min(lo + WINDOW_BLOCK, len(windows))
            pending = [w for w in range(lo, hi) if window_ids[w] is None]
            if pending:
                ids, cut = self._encode_checked([clean[windows[w].record][windows[w].start : windows[w].end] for w in pending])
                for w, encoded, was_cut in zip(pending, ids, cut):
                    window_ids[w], truncated[w] = encoded, bool(was_cut)
            block = logits_to_probs((yield window_ids[lo:hi]), self.multi_label)  # type: ignore[misc]
            if options["reverse_complement"]:
                rc_ids, rc_truncated = self._encode_checked(
                    [reverse_complement(clean[w.record][w.start : w.end]) for w in windows[lo:hi]]
                )
                truncated[lo:hi] |= rc_truncated
                block = (block + logits_to_probs((yield rc_ids), self.multi_label)) / 2
            if lo == 0:
                probs = np.empty((len(windows), block.shape[1]), dtype=block.dtype)
            probs[lo:hi] = block
            window_ids[lo:hi] = [None] * (hi - lo)  # scored: drop the token ids
        self._aggregate(rows, windows, probs, truncated, options["aggregate"], options["threshold"])

    # -- helpers ----------------------------------------------------------------------------

    def _aggregate(
        self, rows: list[SequencePrediction], windows: list[_Window], probs: np.ndarray, truncated: np.ndarray,
        aggregate: str, threshold: float,
    ) -> None:
        """Fill each scored row from its windows: aggregated probabilities, label, window counts."""
        by_record: dict[int, list[int]] = {}
        for w, window in enumerate(windows):
            by_record.setdefault(window.record, []).append(w)
        for record, members in by_record.items():
            stacked = probs[members]
            row = rows[record]
            row.probabilities = stacked.mean(axis=0) if aggregate == "mean" else stacked.max(axis=0)
            row.n_windows = len(members)
            row.windows_truncated = int(truncated[members].sum())
            row.predicted = self._label_of(row.probabilities, threshold)

    def _label_of(self, probs: np.ndarray, threshold: float) -> str:
        if self.multi_label:
            return ";".join(name for name, p in zip(self.label_names, probs) if p >= threshold)
        return self.label_names[int(np.argmax(probs))]

    def validate(
        self, records: list[InputRecord], strict: bool, first_seen: Optional[dict[str, int]] = None, start: int = 0
    ) -> tuple[list[SequencePrediction], dict[int, str]]:
        """One output row per record; the clean sequence of every valid one (by row).

        ``first_seen`` maps the ids of earlier chunks to their record number (updated here);
        ``start`` is the number of records before this chunk.
        """
        rows = [SequencePrediction(r.id, r.sequence, None, "", len(r.sequence), 0.0, 0) for r in records]
        first_seen = {} if first_seen is None else first_seen
        duplicated = np.zeros(len(records), dtype=bool)
        first_of: dict[int, int] = {}
        for i, record in enumerate(records):
            if record.id in first_seen:
                duplicated[i], first_of[i] = True, first_seen[record.id]
            else:
                first_seen[record.id] = start + i
        candidates = [i for i, r in enumerate(records) if not r.error]
        try:  # vectorised: all records at once (the common case: no bad record)
            cleaned, replaced = check_sequences(
                [records[i].sequence for i in candidates], lambda k: records[candidates[k]].where, self.iupac
            )
            results: dict[int, Any] = {i: (seq, int(n)) for i, seq, n in zip(candidates, cleaned, replaced)}
        except DataError:  # one by one, to report every bad record
            results = {}
            for i in candidates:
                try:
                    results[i] = clean_sequence(records[i].sequence, records[i].where, self.iupac)
                except DataError as exc:
                    results[i] = exc
        clean: dict[int, str] = {}
        for i, (record, row) in enumerate(zip(records, rows)):
            row.duplicate_id = bool(duplicated[i])
            if row.duplicate_id and strict:
                raise DataError(
                    f"{record.where}: duplicate id (also record {first_of[i] + 1}). "
                    "Fix: make every id unique, or run without strict to keep both rows (flagged duplicate_id)."
                )
            outcome = DataError(record.error) if record.error else results[i]
            if isinstance(outcome, DataError):
                if strict:
                    raise outcome
                row.error = str(outcome)
                continue
            sequence, row.iupac_replaced = outcome
            row.sequence, row.length = sequence, len(sequence)
            row.n_fraction = sequence.count("N") / len(sequence)
            clean[i] = sequence
        return rows, clean

    def _windows(
        self, clean: dict[int, str], window_nt: int, stride_nt: int, explicit_window: bool
    ) -> tuple[list[_Window], list[Optional[list[int]]], np.ndarray]:
        """Windows to score, the token ids of the whole sequences among them, and whether each lost its tail to ``max_length``.

        A sequence is scored whole when its encoding fits (or, with an explicit window, when it is
        no longer than the window); otherwise in sliding windows, the last one ending at the
        sequence end, whose ids are left as None (encoded block by block in :meth:`_score`). Whole
        sequences are tokenised once; a long one only as far as the model window reaches.
        """
        order = list(clean)
        if explicit_window:
            whole = [i for i in order if len(clean[i]) <= window_nt]
        else:
            whole = order
        whole_ids, whole_cut = self._encode_checked([clean[i] for i in whole])
        fitted = {i: ids for i, ids, cut in zip(whole, whole_ids, whole_cut) if explicit_window or not cut}
        cut_whole = {i for i, cut in zip(whole, whole_cut) if cut and explicit_window}

        windows: list[_Window] = []
        window_ids: list[Optional[list[int]]] = []
        truncated: list[bool] = []
        for record in order:
            length = len(clean[record])
            if record in fitted:
                windows.append(_Window(record, 0, length))
                window_ids.append(fitted[record])
                truncated.append(record in cut_whole)
                continue
            # (a sequence shorter than the window whose tokens still do not fit is one window, cut: windows_truncated)
            starts = list(range(0, length - window_nt + 1, stride_nt)) or [0]
            if starts[-1] + window_nt < length:
                starts.append(length - window_nt)
            for start in starts:
                windows.append(_Window(record, start, min(start + window_nt, length)))
                window_ids.append(None)
                truncated.append(False)
        return windows, window_ids, np.array(truncated, dtype=bool)

    def _encode_checked(self, sequences: list[str]) -> tuple[list[list[int]], np.ndarray]:
        """Token ids (fast path) and which sequences were cut to ``max_length`` (checked with spans only when any was)."""
        if not sequences:
            return [], np.zeros(0, dtype=bool)
        ids, n_truncated = self.encoder.encode_batch(sequences)
        cut = np.zeros(len(sequences), dtype=bool)
        if n_truncated:  # a cut sequence has exactly max_length tokens: check those with spans
            limit = self.encoder.cfg.max_length
            suspects = [i for i, x in enumerate(ids) if len(x) >= limit]
            for i, encoded in zip(suspects, self.encoder.encode_many([sequences[i] for i in suspects])):
                cut[i] = encoded.truncated_at is not None
        return ids, cut


def run_steps(steps: Generator[list[list[int]], np.ndarray, None], logits_of: Callable[[list[list[int]]], np.ndarray]) -> None:
    """Run a :meth:`Predictor.score_steps` generator to its end, answering each request for logits with ``logits_of``."""
    try:
        request = next(steps)
        while True:
            request = steps.send(logits_of(request))
    except StopIteration:
        pass


def record_chunks(records: Iterable[InputRecord], max_records: int, max_nt: int) -> Iterator[list[InputRecord]]:
    """Consecutive lists of records: at most ``max_records``, closed once they hold ``max_nt`` nucleotides; [] if none."""
    chunk: list[InputRecord] = []
    nucleotides, yielded = 0, False
    for record in records:
        chunk.append(record)
        nucleotides += len(record.sequence)
        if len(chunk) >= max_records or nucleotides >= max_nt:
            yield chunk
            chunk, nucleotides, yielded = [], 0, True
    if chunk or not yielded:
        yield chunk


# --------------------------------------------------------------------------------------- cache

_CACHE: dict[tuple, Predictor] = {}
_CACHE_LOCK = threading.Lock()
CACHE_SIZE = 4


def load_predictor(run_dir: PathLike, device: Optional[str] = None) -> Predictor:
    """A :class:`Predictor` for ``run_dir``; cached by path, device and the run's weights stamp.

    A run still training is loaded from its best checkpoint so far; when that checkpoint (or the
    final adapter) is rewritten, :meth:`~lingo_core.runs.Run.weights_stamp` changes and the next call reloads.
    """
    path = Path(run_dir).expanduser().resolve()
    key = (str(path), device, runs.load_run(path).weights_stamp())
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
    predictor = Predictor(load_trained(path, device=device))
    with _CACHE_LOCK:
        for stale in [k for k in _CACHE if k[:2] == key[:2]]:
            del _CACHE[stale]
        _CACHE[key] = predictor
        while len(_CACHE) > CACHE_SIZE:
            del _CACHE[next(iter(_CACHE))]
    return predictor


def predict(
    run_dir: PathLike,
    sequences: Optional[Sequence[str]] = None,
    *,
    ids: Optional[Sequence[str]] = None,
    fasta: Optional[PathLike] = None,
    csv: Optional[PathLike] = None,
    sequence_column: str = "sequence",
    id_column: Optional[str] = None,
    device: Optional[str] = None,
    **options: Any,
) -> Predictions:
    """One-call API: score ``sequences``, a FASTA file or a CSV file with the run in ``run_dir``.

    ``options`` go to :meth:`Predictor.predict` (aggregate, stride, window, reverse_complement, strict,
    batch_size, threshold).
    """
    records = gather_inputs(sequences, ids=ids, fasta=fasta, csv=csv, sequence_column=sequence_column, id_column=id_column)
    return load_predictor(run_dir, device).predict(records, **options)


class ProgressLine:
    """Records scored so far, on stderr: rewritten in place on a terminal, else one line every ``every`` seconds."""

    def __init__(
        self, total: Optional[int], stream: Optional[IO[str]] = None, every: float = 10.0, command: str = "predict"
    ) -> None:
        # sys.stderr looked up now, not at import: tests and notebooks replace it
        self.total, self.stream, self.every, self.command = total, stream or sys.stderr, every, command
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = self.last = time.monotonic()
        self.records = self.nucleotides = 0

    def text(self) -> str:
        elapsed = time.monotonic() - self.started
        done = f"{self.records:,}" if self.total is None else f"{self.records:,}/{self.total:,}"
        line = f"{self.command}: {done} records, {self.nucleotides / 1e6:.2f} Mb, {elapsed:.0f} s"
        if self.total and 0 < self.records < self.total:
            line += f", about {elapsed * (self.total - self.records) / self.records:.0f} s left"
        return line

    def update(self, records: int, nucleotides: int) -> None:
        self.records += records
        self.nucleotides += nucleotides
        now = time.monotonic()
        if self.tty:
            print("\r" + self.text(), end="", file=self.stream, flush=True)
        elif now - self.last >= self.every:
            print(self.text(), file=self.stream, flush=True)
            self.last = now

    def close(self) -> None:
        if self.tty:
            print("\r" + self.text(), file=self.stream, flush=True)


def run_cli(args: Any) -> int:
    """``python -m lingo_core predict``: see :func:`lingo_core.cli.build_parser` for the arguments."""

    def start(records: Iterator[InputRecord], chunk_records: int) -> tuple[Iterator[Predictions], str]:
        predictor = load_predictor(args.run_dir, args.device)
        chunks = predictor.predict_stream(
            records,
            chunk_records=chunk_records,
            aggregate=args.aggregate,
            stride=args.stride,
            window=args.window,
            reverse_complement=args.reverse_complement,
            strict=args.strict,
            batch_size=args.batch_size,
            threshold=args.threshold,
        )
        return chunks, f"with {predictor.trained.run.path.name} ({predictor.trained.source})"

    return run_scoring_cli(args, "predict", start)


def run_scoring_cli(
    args: Any, command: str, start: Callable[[Iterator[InputRecord], int], tuple[Iterator[ScoredChunk], str]]
) -> int:
    """The body of ``predict`` and ``panel``: read the input, score it chunk by chunk, write the output.

    The output file is checked (and created under a temporary name) before anything is read or
    loaded; ``start(records, chunk_records)`` then loads the model and returns the scored chunks and
    what scored them (for the summary line). Progress goes to stderr. Exit code 1, and no output
    file, when no record was scored.
    """
    chunk_records = getattr(args, "chunk_size", None) or STREAM_CHUNK_RECORDS
    if chunk_records < 1:
        raise ConfigError(f"--chunk-size must be at least 1, got {chunk_records}")
    writer = PredictionWriter(args.out) if args.out else PredictionWriter(stream=sys.stdout)
    with writer:
        records = iter_inputs(
            args.sequences or None, fasta=args.fasta, csv=args.csv, sequence_column=args.sequence_column,
            id_column=args.id_column,
        )
        total = len(args.sequences) if args.sequences else count_fasta_records(args.fasta) if args.fasta else None
        chunks, scorer = start(records, chunk_records)
        progress = ProgressLine(total, command=command)
        for chunk in chunks:
            writer.write(chunk)
            for error in chunk.errors:
                print(f"not scored: {error}", file=sys.stderr)
            progress.update(len(chunk), sum(row.length for row in chunk.rows))
        progress.close()
        scored = writer.rows - writer.errors
        if scored == 0:
            writer.abort()  # a command that scored nothing fails, and leaves no output file behind
    print(f"scored {scored} of {writer.rows} records {scorer}", file=sys.stderr)
    if scored == 0:
        print(f"error: no record was scored (the reasons are listed above); fix the input and run {command} again", file=sys.stderr)
        return 1
    if writer.path is not None:
        print(writer.path)
    return 0
