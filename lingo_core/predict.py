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
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch

from . import runs
from .data import DataError, clean_sequence
from .data.validation import check_sequences
from .inference import TrainedModel, load_trained, logits_to_probs, predict_logits
from .sequence_input import InputRecord, as_records, gather_inputs, reverse_complement

PathLike = Union[str, Path]
AGGREGATIONS = ("mean", "max")
WINDOW_MARGIN = 0.9  # windows of long sequences use 90 % of what a typical sequence fits, so they are rarely cut
CPU_BATCH_SIZE = 64  # at most this many sequences per forward pass on CPU ...
CPU_MAX_TOKENS = 4096  # ... and at most this many tokens (rows x length): batches that stay in cache run faster
GPU_BATCH_SIZE = 256


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
        entries = []
        for row in self.rows:
            entries.append(
                {
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
            )
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
            "n_records": len(self.rows),
            "n_errors": len(self.errors),
            "predictions": entries,
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
        """Write CSV or JSON, chosen by the file suffix."""
        path = Path(path)
        if path.suffix.lower() == ".json":
            return self.to_json(path)
        if path.suffix.lower() in (".csv", ".tsv", ""):
            return self.to_csv(path)
        raise ValueError(f"{path}: unknown output format '{path.suffix}'; use .csv or .json")


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
        reverse_complement: bool = False,
        strict: bool = False,
        batch_size: Optional[int] = None,
        threshold: float = 0.5,
    ) -> Predictions:
        """Score raw sequences or :class:`InputRecord` s; see the module docstring.

        ``window``/``stride`` (nt) set the sliding windows used for sequences whose encoding does not
        fit the model (default: :attr:`window_nt`, stride half a window). ``strict`` raises a
        :class:`DataError` at the first invalid record instead of reporting it in its row.
        """
        if aggregate not in AGGREGATIONS:
            raise ValueError(f"aggregate must be one of {AGGREGATIONS}, got {aggregate!r}")
        records = as_records(inputs, ids)
        window_nt = int(window or self.window_nt)
        stride_nt = int(stride or max(1, window_nt // 2))
        if window_nt < 1 or stride_nt < 1:
            raise ValueError(f"window ({window_nt}) and stride ({stride_nt}) must be positive numbers of nucleotides")
        if stride_nt > window_nt:
            raise ValueError(f"stride {stride_nt} nt is larger than the window {window_nt} nt: nucleotides would be skipped")

        rows, clean = self._validate(records, strict)
        windows, window_ids, truncated = self._windows(clean, window_nt, stride_nt, explicit_window=window is not None)
        probs = logits_to_probs(self.logits_of_ids(window_ids, batch_size), self.multi_label)
        if reverse_complement:
            rc_probs, rc_truncated = self._reverse_strand(clean, windows, batch_size)
            truncated |= rc_truncated
            probs = (probs + rc_probs) / 2
        self._aggregate(rows, windows, probs, truncated, aggregate, threshold)
        return Predictions(
            rows, list(self.label_names), self.multi_label, aggregate, reverse_complement, window_nt, stride_nt,
            str(self.trained.run.path), self.trained.source, threshold,
        )

    # -- helpers ----------------------------------------------------------------------------
    def _reverse_strand(
        self, clean: dict[int, str], windows: list[_Window], batch_size: Optional[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities of every window's reverse complement, and which of those lost their tail."""
        ids, truncated = self._encode_checked([reverse_complement(clean[w.record][w.start : w.end]) for w in windows])
        return logits_to_probs(self.logits_of_ids(ids, batch_size), self.multi_label), truncated

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

    def _validate(self, records: list[InputRecord], strict: bool) -> tuple[list[SequencePrediction], dict[int, str]]:
        """One output row per record; the clean sequence of every valid one (by row)."""
        rows = [SequencePrediction(r.id, r.sequence, None, "", len(r.sequence), 0.0, 0) for r in records]
        duplicated = pd.Series([r.id for r in records], dtype=object).duplicated().to_numpy()
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
                first = next(k for k, r in enumerate(records) if r.id == record.id)
                raise DataError(
                    f"{record.where}: duplicate id (also record {first + 1}). "
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
    ) -> tuple[list[_Window], list[list[int]], np.ndarray]:
        """Windows to score, their token ids and whether each lost its tail to ``max_length``.

        A sequence is scored whole when its encoding fits (or, with an explicit window, when it is
        no longer than the window); otherwise in sliding windows, the last one ending at the
        sequence end. Whole sequences are tokenised once.
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
        pending: list[int] = []  # windows still to encode
        window_ids: list[Optional[list[int]]] = []
        truncated: list[bool] = []
        for record in order:
            length = len(clean[record])
            if record in fitted:
                windows.append(_Window(record, 0, length))
                window_ids.append(fitted[record])
                truncated.append(record in cut_whole)
                continue
            starts = list(range(0, length - window_nt + 1, stride_nt))
            if starts[-1] + window_nt < length:
                starts.append(length - window_nt)
            for start in starts:
                pending.append(len(windows))
                windows.append(_Window(record, start, start + window_nt))
                window_ids.append(None)
                truncated.append(False)
        if pending:
            ids, cut = self._encode_checked([clean[windows[w].record][windows[w].start : windows[w].end] for w in pending])
            for w, encoded, was_cut in zip(pending, ids, cut):
                window_ids[w], truncated[w] = encoded, bool(was_cut)
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


def run_cli(args: Any) -> int:
    """``python -m lingo_core predict``: see :func:`lingo_core.cli.build_parser` for the arguments."""
    records = gather_inputs(
        args.sequences or None, fasta=args.fasta, csv=args.csv, sequence_column=args.sequence_column, id_column=args.id_column
    )
    predictor = load_predictor(args.run_dir, args.device)
    result = predictor.predict(
        records,
        aggregate=args.aggregate,
        stride=args.stride,
        window=args.window,
        reverse_complement=args.reverse_complement,
        strict=args.strict,
        batch_size=args.batch_size,
        threshold=args.threshold,
    )
    for error in result.errors:
        print(f"not scored: {error}", file=sys.stderr)
    if args.out:
        print(result.save(args.out))
    else:
        result.to_frame().to_csv(sys.stdout, index=False)
    scored = len(result) - len(result.errors)
    print(f"scored {scored} of {len(result)} records with {predictor.trained.run.path.name} ({predictor.trained.source})", file=sys.stderr)
    return 0
