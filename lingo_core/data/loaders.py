"""Labelled CSV/TSV/FASTA files into validated splits, splitting, de-duplication and subsampling.

Everything a loader did to the data ends up in ``TaskData.report`` so a run can say exactly which
rows it trained and evaluated on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from lingo_core.config import ConfigError, DataConfig
from lingo_core.data.readers import FASTA_SUFFIXES, TABLE_SUFFIXES, data_suffix, read_fasta, read_table_frame
from lingo_core.data.validation import (
    DataError,
    Locator,
    check_sequences,
    check_training_lengths,
    parse_binary_labels,
    parse_class_labels,
    require_two_classes,
)

SPLITS = ("train", "dev", "test")

Motif = tuple[int, int, str]  # (start, end_exclusive, name)
Seed = Union[int, Sequence[int]]


@dataclass
class Split:
    """One split: ids, validated upper-case ACGTN sequences and labels (int64 or float32 0/1 matrix)."""

    ids: list[str]
    sequences: list[str]
    labels: np.ndarray
    motifs: Optional[list[list[Motif]]] = None  # demo task only: planted motifs per sequence

    def __len__(self) -> int:
        return len(self.sequences)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "Split":
        """The records at ``indices`` (integer positions or a boolean mask), in that order."""
        index = np.asarray(indices)
        index = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64)
        return Split(
            ids=[self.ids[i] for i in index],
            sequences=[self.sequences[i] for i in index],
            labels=self.labels[index],
            motifs=None if self.motifs is None else [self.motifs[i] for i in index],
        )


@dataclass
class TaskData:
    """A classification task ready for encoding: three splits plus what the labels mean."""

    name: str
    train: Split
    dev: Split
    test: Split
    label_names: list[str]
    multi_label: bool
    domain: str
    species: Optional[str]
    description: str
    synthetic: bool
    report: dict

    @property
    def num_labels(self) -> int:
        """Number of classes (single-label) or label columns (multi-label)."""
        return len(self.label_names)


@dataclass(frozen=True)
class TaskInfo:
    """What a task is about; ``label_names=None`` derives class names from the labels found."""

    domain: str
    species: Optional[str]
    description: str
    label_names: Optional[tuple[str, ...]] = None
    synthetic: bool = False


@dataclass
class RecordSet:
    """A split under construction: raw labels, per-record IUPAC replacement counts, source files."""

    split: Split
    iupac_replaced: np.ndarray
    sources: list[str]

    def __len__(self) -> int:
        return len(self.split)

    @property
    def labels(self) -> np.ndarray:
        return self.split.labels

    @property
    def sequences(self) -> list[str]:
        return self.split.sequences

    def subset(self, indices: Sequence[int] | np.ndarray) -> "RecordSet":
        index = np.asarray(indices)
        index = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64)
        return RecordSet(self.split.subset(index), self.iupac_replaced[index], self.sources)

    @staticmethod
    def concat(parts: Sequence["RecordSet"]) -> "RecordSet":
        motifs = None
        if all(p.split.motifs is not None for p in parts):
            motifs = [m for p in parts for m in p.split.motifs]
        split = Split(
            ids=[i for p in parts for i in p.split.ids],
            sequences=[s for p in parts for s in p.split.sequences],
            labels=np.concatenate([p.labels for p in parts]),
            motifs=motifs,
        )
        sources = list(dict.fromkeys(s for p in parts for s in p.sources))
        return RecordSet(split, np.concatenate([p.iupac_replaced for p in parts]), sources)


def membership_mask(values: Sequence[str], reference: Sequence[str]) -> np.ndarray:
    """Boolean mask: which ``values`` occur in ``reference`` (hash-based, vectorised)."""
    return pd.Series(values, dtype=object).isin(pd.Series(reference, dtype=object)).to_numpy(dtype=bool)


def duplicated_mask(values: Sequence[str]) -> np.ndarray:
    """Boolean mask of values already seen earlier in ``values``."""
    return pd.Series(values, dtype=object).duplicated().to_numpy(dtype=bool)


# --------------------------------------------------------------------------------------- FASTA


def _fasta_ids_and_labels(
    path: Path, headers: list[str], cfg: DataConfig
) -> tuple[list[str], Optional[list[str]]]:
    """Ids from the first header word; with no labels table, labels from its ``|label`` suffix."""
    tokens = [header.split()[0] for header in headers]
    if cfg.labels_table:
        return tokens, None
    ids, label_texts = [], []
    for token in tokens:
        if "|" not in token:
            raise DataError(
                f"{path}, record '{token}': the header has no label. Fix: write headers as "
                "'>id|label' (e.g. '>seq1|1'), or set data.labels_table to a CSV with id and label columns."
            )
        record_id, label = token.rsplit("|", 1)
        ids.append(record_id)
        label_texts.append(label)
    return ids, label_texts


def _require_unique_fasta_ids(path: Path, ids: list[str]) -> None:
    duplicated = duplicated_mask(ids)
    if duplicated.any():
        second = int(np.argmax(duplicated))
        first = ids.index(ids[second])
        raise DataError(
            f"{path}, record '{ids[second]}': duplicate id (records {first + 1} and {second + 1}). "
            "Fix: make every FASTA id unique."
        )


def _labels_from_header(
    label_texts: list[str], cfg: DataConfig, locate: Locator, num_classes: Optional[int]
) -> np.ndarray:
    columns = cfg.label_columns
    if len(columns) == 1:
        return parse_class_labels(pd.Series(label_texts, dtype="str"), locate, "header label", num_classes)
    rows = [text.split(",") for text in label_texts]
    for i, row in enumerate(rows):
        if len(row) != len(columns):
            raise DataError(
                f"{locate(i)}: header label '{label_texts[i]}' has {len(row)} values but "
                f"data.label_columns names {len(columns)}. Fix: write '>id|' followed by "
                f"{len(columns)} comma-separated 0/1 values."
            )
    return parse_binary_labels(pd.DataFrame(rows, columns=columns), columns, locate)


def _labels_from_table(
    fasta: Path, ids: list[str], cfg: DataConfig, num_classes: Optional[int]
) -> np.ndarray:
    """Look up the label(s) of every FASTA id in ``cfg.labels_table``."""
    table = Path(cfg.labels_table)
    id_column = cfg.id_column or "id"
    frame, lines = _read_frame(table, [id_column, *cfg.label_columns])
    locate = _line_locator(table, lines)
    table_ids = frame[id_column].str.strip()
    duplicated = table_ids.duplicated().to_numpy()
    if duplicated.any():
        row = int(np.argmax(duplicated))
        raise DataError(
            f"{locate(row)}: id '{table_ids.iloc[row]}' appears twice in the labels table. "
            "Fix: keep one row per FASTA id."
        )
    labels = _parse_labels(frame, cfg.label_columns, locate, num_classes)
    position = pd.Index(table_ids).get_indexer(ids)
    missing = np.flatnonzero(position < 0)
    if missing.size:
        raise DataError(
            f"{fasta}, record '{ids[missing[0]]}': id not found in labels table {table} "
            f"(column '{id_column}'; {missing.size} FASTA records missing). "
            "Fix: add a row for every FASTA record, or set data.id_column to the id column."
        )
    return labels[position]


def read_fasta_records(path: Path, cfg: DataConfig, num_classes: Optional[int] = None) -> RecordSet:
    """A labelled FASTA file as a validated :class:`RecordSet`."""
    records = read_fasta(path)
    if not records:
        raise DataError(f"{path}: no FASTA records (no line starts with '>'). Fix: check the file.")
    ids, label_texts = _fasta_ids_and_labels(path, [header for header, _ in records], cfg)
    _require_unique_fasta_ids(path, ids)

    def locate(i: int) -> str:
        return f"{path}, record '{ids[i]}'"

    sequences, replaced = check_sequences([seq for _, seq in records], locate, cfg.iupac)
    check_training_lengths(sequences, locate)
    if label_texts is None:
        labels = _labels_from_table(path, ids, cfg, num_classes)
    else:
        labels = _labels_from_header(label_texts, cfg, locate, num_classes)
    return RecordSet(Split(ids, sequences, labels), replaced, [str(path)])


# --------------------------------------------------------------------------------------- tables


def _line_locator(path: Path, lines: np.ndarray) -> Locator:
    return lambda i: f"{path}, line {lines[i]}"


def _read_frame(path: Path, required: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """A labelled data table's non-blank rows and line numbers; every ``required`` column and a data row must be there."""
    frame, lines = read_table_frame(path)
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DataError(
            f"{path}, line 1 (header): missing column(s) {missing}; columns found: {list(frame.columns)}. "
            "Fix: rename the header or set data.sequence_column / data.label_columns / data.id_column "
            "(e.g. --set data.label_columns=[my_label])."
        )
    if frame.empty:
        raise DataError(f"{path}: no data rows below the header. Fix: add data rows.")
    return frame, lines


def _parse_labels(
    frame: pd.DataFrame, columns: list[str], locate: Locator, num_classes: Optional[int]
) -> np.ndarray:
    if len(columns) == 1:
        return parse_class_labels(frame[columns[0]], locate, columns[0], num_classes)
    return parse_binary_labels(frame, columns, locate)


def read_table(path: Path, cfg: DataConfig, num_classes: Optional[int] = None) -> RecordSet:
    """A CSV/TSV file as a validated :class:`RecordSet`; ids default to ``<file name>:<line>``."""
    columns = [cfg.sequence_column, *cfg.label_columns] + ([cfg.id_column] if cfg.id_column else [])
    frame, lines = _read_frame(path, columns)
    locate = _line_locator(path, lines)
    sequences, replaced = check_sequences(frame[cfg.sequence_column], locate, cfg.iupac)
    check_training_lengths(sequences, locate)
    labels = _parse_labels(frame, cfg.label_columns, locate, num_classes)
    if cfg.id_column:
        ids = frame[cfg.id_column].str.strip().tolist()
    else:
        ids = (path.name + ":" + pd.Series(lines).astype(str)).tolist()
    return RecordSet(Split(ids, sequences, labels), replaced, [str(path)])


def read_records(path: Path, cfg: DataConfig, num_classes: Optional[int] = None) -> RecordSet:
    """Read a CSV, TSV or FASTA file (optionally gzipped), chosen by its suffix."""
    suffix = data_suffix(path)
    if suffix in TABLE_SUFFIXES:
        return read_table(path, cfg, num_classes)
    if suffix in FASTA_SUFFIXES:
        return read_fasta_records(path, cfg, num_classes)
    raise DataError(
        f"{path}: unsupported file type '{suffix or path.name}'. Fix: use .csv, .tsv, "
        f"{', '.join(FASTA_SUFFIXES)} (optionally .gz) or a folder with train.csv/dev.csv/test.csv."
    )


# --------------------------------------------------------------------------------------- splitting


def _allocate(group_sizes: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over groups in proportion to their sizes (largest remainder)."""
    quotas = group_sizes * (total / max(int(group_sizes.sum()), 1))
    counts = np.floor(quotas).astype(np.int64)
    leftover = total - int(counts.sum())
    counts[np.argsort(-(quotas - counts), kind="stable")[:leftover]] += 1
    return counts


def split_indices(
    labels: np.ndarray, fractions: Sequence[float], seed: Seed, stratify: bool = True
) -> list[np.ndarray]:
    """Partition ``range(len(labels))`` into the remainder plus one part per fraction.

    Returns sorted index arrays ``[rest, part_1, ...]``; ``part_k`` holds ``round(f_k * n)``
    records, drawn per class in proportion when ``stratify`` and labels are single-label.
    """
    if any(f < 0 for f in fractions) or sum(fractions) >= 1:
        raise ConfigError(
            f"split fractions {list(fractions)} must be >= 0 and sum to less than 1 "
            "(data.split.dev_fraction + data.split.test_fraction)"
        )
    n = len(labels)
    rng = np.random.default_rng(seed)
    if stratify and labels.ndim == 1:
        groups = [np.flatnonzero(labels == value) for value in np.unique(labels)]
    else:
        groups = [np.arange(n)]
    sizes = np.array([len(g) for g in groups])
    allocations = [_allocate(sizes, round(f * n)) for f in fractions]
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for g, members in enumerate(groups):
        shuffled = rng.permutation(members)
        start = 0
        for k, allocation in enumerate(allocations, start=1):
            take = min(int(allocation[g]), len(shuffled) - start)
            parts[k].append(shuffled[start : start + take])
            start += take
        parts[0].append(shuffled[start:])
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


def split_recipe_text(fractions: dict[str, float], seed: int, stratified: bool) -> str:
    """Describe a split of one pool into the given parts, e.g. 'dev 10%, test 10%'."""
    shares = ", ".join(f"{name} {fraction:.0%}" for name, fraction in fractions.items())
    how = "stratified by label" if stratified else "random"
    return f"{shares}, rest train ({how}, data.split.seed={seed})"


def split_records(
    pool: RecordSet, fractions: dict[str, float], cfg: DataConfig
) -> dict[str, RecordSet]:
    """Split ``pool`` into ``train`` plus the named parts by ``cfg.split``."""
    indices = split_indices(pool.labels, list(fractions.values()), cfg.split.seed, cfg.split.stratify)
    result = {"train": pool.subset(indices[0])}
    result.update({name: pool.subset(index) for name, index in zip(fractions, indices[1:])})
    return result


# --------------------------------------------------------------------------------------- user paths


def _find_split_file(folder: Path, split: str) -> Optional[Path]:
    for suffix in TABLE_SUFFIXES:
        candidate = folder / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def load_path_task(cfg: DataConfig) -> TaskData:
    """Load ``cfg.task`` as a folder of train/dev/test tables, one table, or a FASTA file."""
    path = Path(cfg.task).expanduser()
    stratified = cfg.split.stratify and len(cfg.label_columns) == 1
    if path.is_dir():
        files = {split: _find_split_file(path, split) for split in SPLITS}
        if files["train"] is None:
            raise DataError(
                f"{path}: folder has no train.csv (or train.tsv). Fix: a task folder holds "
                "train.csv and optionally dev.csv and test.csv with columns sequence,label."
            )
        parts = {split: read_records(file, cfg) for split, file in files.items() if file is not None}
        fraction_of = {"dev": cfg.split.dev_fraction, "test": cfg.split.test_fraction}
        missing = {split: fraction_of[split] for split in ("dev", "test") if split not in parts}
        recipe = f"{path}: " + ", ".join(f"{split} = {file.name}" for split, file in files.items() if file)
        if missing:
            parts.update(split_records(parts["train"], missing, cfg))
            how = split_recipe_text(missing, cfg.split.seed, stratified)
            recipe += f"; split from {files['train'].name}: {how}"
    elif path.is_file():
        fractions = {"dev": cfg.split.dev_fraction, "test": cfg.split.test_fraction}
        parts = split_records(read_records(path, cfg), fractions, cfg)
        recipe = f"{path} split into " + split_recipe_text(fractions, cfg.split.seed, stratified)
    else:
        raise DataError(
            f"{path}: no such file or folder, and '{cfg.task}' is not a registry name. Fix: pass a "
            "folder with train.csv, a .csv/.tsv/.fasta file, or a name from list_benchmarks()."
        )
    multi_label = len(cfg.label_columns) > 1
    info = TaskInfo(
        domain="DNA Sequence",
        species=None,
        description=(
            f"User data from {path}: labels from column(s) {', '.join(cfg.label_columns)}; "
            "what label 1 means is not known to LINGO (set encoding.task_description)."
        ),
        label_names=tuple(cfg.label_columns) if multi_label else None,
    )
    return assemble_task(str(cfg.task), parts, cfg, info, recipe)


# --------------------------------------------------------------------------------------- assembly


def _count_duplicates(parts: dict[str, RecordSet]) -> dict[str, int]:
    """Eval rows whose exact sequence also occurs in another split."""
    sequences = {split: parts[split].sequences for split in SPLITS}
    return {
        "dev_train": int(membership_mask(sequences["dev"], sequences["train"]).sum()),
        "test_train": int(membership_mask(sequences["test"], sequences["train"]).sum()),
        "dev_test": int(membership_mask(sequences["dev"], sequences["test"]).sum()),
    }


def _remove_eval_sequences_from_train(parts: dict[str, RecordSet]) -> tuple[RecordSet, int]:
    in_eval = membership_mask(parts["train"].sequences, parts["dev"].sequences + parts["test"].sequences)
    return parts["train"].subset(~in_eval), int(in_eval.sum())


def _subsample(parts: dict[str, RecordSet], cfg: DataConfig) -> tuple[dict[str, RecordSet], dict]:
    """Apply ``max_train`` / ``max_eval`` (stratified, seeded) and describe what was done."""
    limits = {"train": cfg.max_train, "dev": cfg.max_eval, "test": cfg.max_eval}
    report: dict = {"seed": cfg.subsample_seed, "max_train": cfg.max_train, "max_eval": cfg.max_eval}
    done = []
    result = dict(parts)
    for k, split in enumerate(SPLITS):
        limit, before = limits[split], len(parts[split])
        if limit is None or limit >= before:
            continue
        if limit < 1:
            raise ConfigError(f"data.max_{'train' if split == 'train' else 'eval'} must be >= 1, got {limit}")
        labels = parts[split].labels
        index = split_indices(labels, [limit / before], [cfg.subsample_seed, k], stratify=True)[1]
        result[split] = parts[split].subset(index)
        stratified = labels.ndim == 1
        report[split] = {"before": before, "after": len(index), "stratified": stratified}
        how = "stratified" if stratified else "random"
        done.append(f"{split} {before} -> {len(index)} ({how})")
    seeded = f"subsampled with data.subsample_seed={cfg.subsample_seed}: "
    report["description"] = seeded + "; ".join(done) if done else "no subsampling"
    return result, report


def _label_counts(labels: np.ndarray, label_names: list[str]) -> dict[str, int]:
    if labels.ndim == 2:
        return {name: int(count) for name, count in zip(label_names, labels.sum(axis=0))}
    counts = np.bincount(labels, minlength=len(label_names))
    return {name: int(count) for name, count in zip(label_names, counts)}


def assemble_task(
    name: str, parts: dict[str, RecordSet], cfg: DataConfig, info: TaskInfo, recipe: str
) -> TaskData:
    """Check duplicates, subsample, map labels to class indices and write the report."""
    parts = dict(parts)
    duplicates: dict = {**_count_duplicates(parts), "removed": cfg.duplicates == "remove", "train_rows_removed": 0}
    if cfg.duplicates == "remove":
        parts["train"], duplicates["train_rows_removed"] = _remove_eval_sequences_from_train(parts)
    duplicates["note"] = (
        "dev_train/test_train/dev_test count eval rows whose exact sequence occurs in the other split, "
        "before subsampling; 'remove' drops such rows from train only"
    )
    parts, subsampling = _subsample(parts, cfg)

    multi_label = parts["train"].labels.ndim == 2
    if info.label_names is not None:
        label_names = list(info.label_names)
        labels = {split: parts[split].labels for split in SPLITS}
    else:
        values = np.unique(np.concatenate([parts[split].labels for split in SPLITS]))
        label_names = [str(value) for value in values]
        labels = {split: np.searchsorted(values, parts[split].labels) for split in SPLITS}
    splits = {}
    for split in SPLITS:
        require_two_classes(labels[split], split, parts[split].sources, label_names)
        dtype = np.float32 if multi_label else np.int64
        splits[split] = dataclasses.replace(parts[split].split, labels=labels[split].astype(dtype))

    report = {
        "task": name,
        "synthetic": info.synthetic,
        "sources": {split: parts[split].sources for split in SPLITS},
        "split_recipe": recipe,
        "counts": {
            split: {"total": len(splits[split]), "per_label": _label_counts(splits[split].labels, label_names)}
            for split in SPLITS
        },
        "iupac": {
            "policy": cfg.iupac,
            "replaced_with_n": {split: int(parts[split].iupac_replaced.sum()) for split in SPLITS},
            "sequences_with_n": {
                split: int(pd.Series(splits[split].sequences, dtype=object).str.contains("N", regex=False).sum())
                for split in SPLITS
            },
        },
        "duplicates": duplicates,
        "subsampling": subsampling,
    }
    return TaskData(
        name=name,
        train=splits["train"],
        dev=splits["dev"],
        test=splits["test"],
        label_names=label_names,
        multi_label=multi_label,
        domain=info.domain,
        species=info.species,
        description=info.description,
        synthetic=info.synthetic,
        report=report,
    )
