"""Tests for lingo_core.data: real GUE/NT files, validation errors, FASTA, splits, demo task."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lingo_core.config as config
from lingo_core.config import DataConfig, SplitConfig
from lingo_core.data import (
    DataError,
    Split,
    clean_sequence,
    list_benchmarks,
    load_task,
    make_demo_task,
    parse_fasta_text,
    read_fasta,
    resolve_data_root,
)


def _data_root() -> Path:
    root = config.default_data_root()
    if root is None or not (root / "gue").is_dir():
        pytest.skip("real benchmark data not found (set LINGO_DATA_DIR or provide ../shared/data)")
    return root


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


def _table_cfg(path: Path, **overrides) -> DataConfig:
    return DataConfig(task=str(path), **overrides)


# --------------------------------------------------------------------------------------- real data


def test_prom_core_tata_sizes_and_known_duplicates():
    _data_root()
    task = load_task(DataConfig(task="gue/prom_core_tata"))
    assert (len(task.train), len(task.dev), len(task.test)) == (4904, 613, 613)
    assert task.label_names == ["non-promoter", "promoter"] and task.num_labels == 2
    assert not task.multi_label and not task.synthetic and task.species == "human"
    assert task.domain == "DNA Promoter"
    assert task.train.labels.dtype == np.int64 and set(np.unique(task.train.labels)) == {0, 1}
    duplicates = task.report["duplicates"]
    assert (duplicates["test_train"], duplicates["dev_train"], duplicates["removed"]) == (16, 8, False)
    assert task.report["counts"]["train"]["total"] == 4904
    assert json.loads(json.dumps(task.report)) == task.report  # plain JSON values only: run dirs store it as is
    assert all(re.fullmatch("[ACGTN]+", s) for s in task.dev.sequences)


def test_long_form_name_is_the_same_task():
    _data_root()
    task = load_task(DataConfig(task="gue/prom/prom_core_tata", max_train=10, max_eval=10))
    assert task.name == "gue/prom_core_tata"


def test_remove_duplicates_drops_them_from_train_only():
    _data_root()
    task = load_task(DataConfig(task="gue/prom_core_tata", duplicates="remove"))
    eval_sequences = set(task.dev.sequences) | set(task.test.sequences)
    assert not eval_sequences & set(task.train.sequences)
    removed = task.report["duplicates"]["train_rows_removed"]
    assert removed >= 16 and len(task.train) == 4904 - removed
    assert (len(task.dev), len(task.test)) == (613, 613)
    assert task.report["duplicates"]["removed"] is True


def test_emp_recipe_never_touches_gue_test():
    root = _data_root()
    task = load_task(DataConfig(task="gue/EMP/H3"))
    gue_test = pd.read_csv(root / "gue/EMP/H3/test.csv")
    assert len(task.test) == len(gue_test) == 1497
    assert not set(gue_test.sequence) & (set(task.train.sequences) | set(task.dev.sequences))
    assert len(task.train) + len(task.dev) == 1497 + 1191  # README: GUE dev + unseen NT rows
    assert abs(len(task.dev) - 0.1 * 2688) <= 1
    assert "Leak-free" in task.report["split_recipe"] and task.species == "yeast"
    assert task.label_names == ["low", "high"]
    assert any("nt_yeast_histone_test" in source for source in task.report["sources"]["train"])


def test_prom_300_all_keeps_its_n_row_and_splits_gue_dev():
    _data_root()
    for iupac in ("n", "reject"):  # N is a plain nucleotide code, accepted under both policies
        task = load_task(DataConfig(task="gue/prom_300_all", iupac=iupac))
        with_n = [s for s in task.train.sequences + task.dev.sequences if "N" in s]
        assert len(with_n) == 1
        assert sum(task.report["iupac"]["sequences_with_n"].values()) == 1
        assert sum(task.report["iupac"]["replaced_with_n"].values()) == 0
    assert len(task.train) + len(task.dev) == 5920 and len(task.test) == 5920
    assert "split" in task.report["split_recipe"] and "GUE dev" in task.report["split_recipe"]


def test_splice_has_three_named_classes():
    _data_root()
    task = load_task(DataConfig(task="gue/splice", max_train=300, max_eval=300))
    assert task.label_names == ["acceptor", "donor", "not a splice site"] and task.num_labels == 3
    assert set(np.unique(task.train.labels)) == {0, 1, 2}


def test_prom_core_all_sizes_and_known_duplicates():
    _data_root()
    task = load_task(DataConfig(task="gue/prom_core_all"))
    assert len(task.train) == 47356
    assert (task.report["duplicates"]["test_train"], task.report["duplicates"]["dev_train"]) == (43, 54)


def test_list_benchmarks_reports_availability_and_split_notes(tmp_path):
    root = _data_root()
    entries = {entry["name"]: entry for entry in list_benchmarks(root)}
    assert entries["demo/motifs"]["available"]
    assert entries["gue/prom_core_tata"]["available"] and entries["gue/EMP/H4ac"]["available"]
    assert entries["gue/tf/4"]["path"].endswith("gue/tf/4")
    assert "GUE dev" in entries["gue/prom_300_all"]["splits"]
    assert "GUE dev" in entries["gue/splice"]["splits"]
    assert {"name", "description", "available", "path", "splits"} <= set(entries["gue/tf/0"])
    empty = {entry["name"]: entry for entry in list_benchmarks(tmp_path)}
    assert not empty["gue/prom_core_tata"]["available"] and empty["demo/motifs"]["available"]


# --------------------------------------------------------------------------------------- data root errors


def test_missing_data_folder_says_where_and_how(tmp_path):
    with pytest.raises(DataError) as error:
        load_task(DataConfig(task="gue/tf/2", root=str(tmp_path)))
    message = str(error.value)
    assert str(tmp_path / "gue/tf/2") in message
    assert "data.root" in message and "LINGO_DATA_DIR" in message and "DNABERT_2" in message


def test_missing_nt_yeast_file_points_to_hugging_face(tmp_path):
    folder = tmp_path / "gue/EMP/H4"
    folder.mkdir(parents=True)
    for split in ("dev", "test"):
        _write(folder / f"{split}.csv", "sequence,label\nACGT,0\nTTTT,1\n")
    with pytest.raises(DataError, match="InstaDeepAI/nucleotide_transformer_downstream_tasks") as error:
        load_task(DataConfig(task="gue/EMP/H4", root=str(tmp_path)))
    assert "H4_test.csv" in str(error.value)


def test_no_data_root_at_all(monkeypatch):
    monkeypatch.setattr(config, "default_data_root", lambda: None)
    assert resolve_data_root(None) is None
    assert resolve_data_root("/x/y") == Path("/x/y")
    with pytest.raises(DataError, match="LINGO_DATA_DIR") as error:
        load_task(DataConfig(task="gue/prom_core_tata"))
    assert "data.root" in str(error.value) and "Google Drive" in str(error.value)


def test_unknown_benchmark_name_lists_the_known_ones():
    with pytest.raises(DataError, match="gue/prom_core_tata"):
        load_task(DataConfig(task="gue/prom_core_typo"))


# --------------------------------------------------------------------------------------- CSV validation

BAD_CSVS = {
    "missing_column": ("seq,label\nACGT,0\n", "line 1", "columns found"),
    "empty_sequence": ("sequence,label\nACGT,0\n,1\n", "line 3", "empty sequence"),
    "digit": ("sequence,label\nACGT,0\nAC1T,1\n", "line 3", "'1' at position 3"),
    "gap": ("sequence,label\nACGT,0\nACGT,1\nA-GT,0\n", "line 4", "'-' at position 2"),
    "x_letter": ("sequence,label\nACGTX,0\n", "line 2", "'X' at position 5"),
    "text_label": ("sequence,label\nACGT,0\nACGT,pos\n", "line 3", "not an integer"),
    "fraction_label": ("sequence,label\nACGT,0.5\n", "line 2", "not an integer"),
    "blank_line_keeps_numbering": ("sequence,label\nACGT,0\n\nACZT,1\n", "line 4", "'Z'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_bad_csv_names_file_line_and_problem(tmp_path, case):
    text, where, problem = BAD_CSVS[case]
    path = _write(tmp_path / f"{case}.csv", text)
    with pytest.raises(DataError) as error:
        load_task(_table_cfg(path))
    message = str(error.value)
    assert f"{case}.csv" in message and where in message and problem in message
    assert "Fix" in message


def test_iupac_codes_are_mapped_to_n_and_counted_or_rejected(tmp_path):
    rows = ["sequence,label"] + [f"acgt{'RY' if i == 0 else 'AC'}acgt,{i % 2}" for i in range(40)]
    path = _write(tmp_path / "iupac.csv", "\n".join(rows) + "\n")
    task = load_task(_table_cfg(path, split=SplitConfig(dev_fraction=0.25, test_fraction=0.25)))
    everything = task.train.sequences + task.dev.sequences + task.test.sequences
    assert "ACGTNNACGT" in everything and all(s == s.upper() for s in everything)
    assert sum(task.report["iupac"]["replaced_with_n"].values()) == 2
    with pytest.raises(DataError, match=r"iupac\.csv, line 2: IUPAC ambiguity code 'R' at position 5"):
        load_task(_table_cfg(path, iupac="reject"))


def test_clean_sequence():
    assert clean_sequence("acgtn", "x") == ("ACGTN", 0)
    assert clean_sequence("ACKTM", "x") == ("ACNTN", 2)
    with pytest.raises(DataError, match="here: IUPAC"):
        clean_sequence("ACK", "here", iupac="reject")
    with pytest.raises(DataError, match="here: empty sequence"):
        clean_sequence("", "here")
    with pytest.raises(DataError, match="'é' at position 2"):
        clean_sequence("Aé", "here")


def test_single_class_split_is_an_error(tmp_path):
    folder = tmp_path / "task"
    folder.mkdir()
    _write(folder / "train.csv", "sequence,label\nAAAA,0\nCCCC,1\nGGGG,0\n")
    _write(folder / "dev.csv", "sequence,label\nAACC,0\nGGTT,1\n")
    _write(folder / "test.csv", "sequence,label\nAAGG,1\nTTCC,1\n")
    with pytest.raises(DataError, match=r"test\.csv: the test split has only class 1"):
        load_task(DataConfig(task=str(folder)))


def test_a_file_whose_only_label_is_1_says_class_1(tmp_path):
    folder = tmp_path / "task"
    folder.mkdir()
    for name in ("train", "dev", "test"):
        _write(folder / f"{name}.csv", "sequence,label\nAAAA,1\nCCCC,1\n")
    with pytest.raises(DataError, match=r"has only class 1 \("):
        load_task(DataConfig(task=str(folder)))


def test_gue_style_folder_with_missing_test_is_split_from_train(tmp_path):
    folder = tmp_path / "task"
    folder.mkdir()
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"sequence": ["".join(rng.choice(list("ACGT"), 20)) for _ in range(100)],
                          "label": np.arange(100) % 2})
    train.to_csv(folder / "train.csv", index=False)
    _write(folder / "dev.csv", "sequence,label\nAACC,0\nGGTT,1\n")
    task = load_task(DataConfig(task=str(folder), split=SplitConfig(test_fraction=0.2)))
    assert (len(task.train), len(task.dev), len(task.test)) == (80, 2, 20)
    assert task.train.ids[0].startswith("train.csv:")
    assert "split from train.csv" in task.report["split_recipe"]


def test_multi_label_csv(tmp_path):
    lines = ["id,sequence,h3,h4"] + [f"r{i},ACGTACGT{'ACGT'[i % 4]},{i % 2},{(i // 2) % 2}" for i in range(50)]
    path = _write(tmp_path / "multi.tsv", "\n".join(lines).replace(",", "\t") + "\n")
    task = load_task(_table_cfg(path, label_columns=["h3", "h4"], id_column="id"))
    assert task.multi_label and task.label_names == ["h3", "h4"] and task.num_labels == 2
    assert task.train.labels.dtype == np.float32 and task.train.labels.shape == (len(task.train), 2)
    assert set(np.unique(task.train.labels)) == {0.0, 1.0}
    assert len(task.train) + len(task.dev) + len(task.test) == 50 and task.test.ids[0].startswith("r")
    bad = _write(tmp_path / "bad_multi.csv", "sequence,h3,h4\nACGT,0,1\nACGT,1,2\n")
    with pytest.raises(DataError, match=r"bad_multi\.csv, line 3: value '2' in label column 'h4' is not 0 or 1"):
        load_task(_table_cfg(bad, label_columns=["h3", "h4"]))


def test_single_csv_split_is_stratified_and_deterministic(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.array([0] * 300 + [1] * 100)
    frame = pd.DataFrame({"sequence": ["".join(rng.choice(list("ACGT"), 30)) for _ in labels], "label": labels})
    frame.to_csv(tmp_path / "data.csv", index=False)
    cfg = _table_cfg(tmp_path / "data.csv", split=SplitConfig(dev_fraction=0.1, test_fraction=0.2, seed=3))
    first, second = load_task(cfg), load_task(cfg)
    assert first.test.ids == second.test.ids
    assert (len(first.train), len(first.dev), len(first.test)) == (280, 40, 80)
    assert np.bincount(first.test.labels).tolist() == [60, 20]
    assert np.bincount(first.dev.labels).tolist() == [30, 10]
    assert not set(first.train.ids) & set(first.test.ids)
    reseeded = _table_cfg(tmp_path / "data.csv", split=SplitConfig(dev_fraction=0.1, test_fraction=0.2, seed=4))
    other = load_task(reseeded)
    assert other.test.ids != first.test.ids


# --------------------------------------------------------------------------------------- FASTA


def _fasta_pool(n: int = 40) -> list[tuple[str, int]]:
    rng = np.random.default_rng(2)
    return [("".join(rng.choice(list("acgt"), 30)), i % 2) for i in range(n)]


def test_fasta_wrapped_crlf_lowercase_header_labels(tmp_path):
    records = "".join(f">s{i}|{label} some description\r\n{seq[:12]}\r\n{seq[12:]}\r\n\r\n"
                      for i, (seq, label) in enumerate(_fasta_pool()))
    path = _write(tmp_path / "seqs.fa", records)
    parsed = read_fasta(path)
    assert parsed[0][0] == "s0|0 some description" and len(parsed[0][1]) == 30
    task = load_task(DataConfig(task=str(path)))
    everything = dict(zip(task.train.ids + task.dev.ids + task.test.ids,
                          task.train.sequences + task.dev.sequences + task.test.sequences))
    assert everything["s3"] == _fasta_pool()[3][0].upper()
    assert len(everything) == 40


def test_gzipped_fasta_with_labels_table(tmp_path):
    pool = _fasta_pool()
    with gzip.open(tmp_path / "seqs.fasta.gz", "wt") as handle:
        handle.write("".join(f">r{i}\n{seq}\n" for i, (seq, _) in enumerate(pool)))
    # the table lists ids in reverse order: labels must follow the ids, not the row order
    table = "name,cls\n" + "".join(f"r{i},{label}\n" for i, (_, label) in reversed(list(enumerate(pool))))
    _write(tmp_path / "labels.csv", table)
    cfg = DataConfig(task=str(tmp_path / "seqs.fasta.gz"), labels_table=str(tmp_path / "labels.csv"),
                     id_column="name", label_columns=["cls"])
    task = load_task(cfg)
    for split in (task.train, task.dev, task.test):
        for record_id, label in zip(split.ids, split.labels):
            assert label == pool[int(record_id[1:])][1]
    _write(tmp_path / "short.csv", "name,cls\nr0,1\n")
    with pytest.raises(DataError, match=r"seqs\.fasta\.gz, record 'r1': id not found in labels table"):
        load_task(DataConfig(task=str(tmp_path / "seqs.fasta.gz"), labels_table=str(tmp_path / "short.csv"),
                             id_column="name", label_columns=["cls"]))


BAD_FASTAS = {
    "duplicate_id": (">a|0\nACGT\n>b|1\nACGT\n>a|1\nAAAA\n", "record 'a'", "duplicate id"),
    "empty_record": (">a|0\nACGT\n>b|1\n>c|0\nAC\n", "record 'b|1' (line 3)", "has no sequence"),
    "no_label": (">a|0\nACGT\n>b\nACGT\n", "record 'b'", "has no label"),
    "bad_char": (">a|0\nACGT\n>b|1\nAC\nG*T\n", "record 'b'", "'*' at position 4"),
    "bad_label": (">a|0\nACGT\n>b|yes\nACGT\n", "record 'b'", "not an integer"),
    "leading_text": ("ACGT\n>a|0\nACGT\n", "line 1", "before the first '>'"),
}


@pytest.mark.parametrize("case", sorted(BAD_FASTAS))
def test_bad_fasta_names_file_record_and_problem(tmp_path, case):
    text, where, problem = BAD_FASTAS[case]
    path = _write(tmp_path / f"{case}.fasta", text)
    with pytest.raises(DataError) as error:
        load_task(DataConfig(task=str(path)))
    message = str(error.value)
    assert f"{case}.fasta" in message and where in message and problem in message


def test_parse_fasta_text():
    assert parse_fasta_text(">x\nAC\nGT\n>y z\nTT") == [("x", "ACGT"), ("y z", "TT")]
    with pytest.raises(DataError, match=r"<text>: record 'y'"):
        parse_fasta_text(">x\nAC\n>y\n")


# --------------------------------------------------------------------------------------- demo task

TATA = re.compile("TATA[AT]A[AT]")


def test_demo_task_is_deterministic_synthetic_and_balanced():
    first, second = make_demo_task(n_train=200, n_dev=60, n_test=60, seed=5), make_demo_task(200, 60, 60, seed=5)
    assert first.train.sequences == second.train.sequences and first.test.motifs == second.test.motifs
    assert make_demo_task(200, 60, 60, seed=6).train.sequences != first.train.sequences
    assert first.synthetic and "synthetic" in first.description.lower() and first.report["synthetic"]
    assert first.domain == "Synthetic Motifs"
    for split in (first.train, first.dev, first.test):
        assert np.bincount(split.labels).tolist() == [len(split) // 2] * 2
        assert all(len(s) == 100 for s in split.sequences)


def test_demo_motifs_sit_at_their_recorded_positions():
    task = make_demo_task(n_train=400, n_dev=10, n_test=10, seed=1)
    kinds = set()
    for sequence, motifs, label in zip(task.train.sequences, task.train.motifs, task.train.labels):
        names = sorted(name for _, _, name in motifs)
        for start, end, name in motifs:
            pattern = TATA if name.endswith("TATA-box") else re.compile("CCAAT")
            assert pattern.fullmatch(sequence[start:end])
        # no motif occurs anywhere except where recorded
        assert {m.start() for m in re.finditer("(?=TATA[AT]A[AT]|CCAAT)", sequence)} == {s for s, _, _ in motifs}
        if label == 1:
            assert names == ["CCAAT-box", "TATA-box"]
            (tata,) = [m for m in motifs if m[2] == "TATA-box"]
            (ccaat,) = [m for m in motifs if m[2] == "CCAAT-box"]
            assert 20 <= tata[0] and tata[1] <= 40 and 60 <= ccaat[0] and ccaat[1] <= 80
        else:
            assert all(name.startswith("decoy_") for name in names)
        kinds.add(tuple(names))
    assert kinds == {("CCAAT-box", "TATA-box"), (), ("decoy_TATA-box",), ("decoy_CCAAT-box",),
                     ("decoy_CCAAT-box", "decoy_TATA-box")}


def test_demo_through_load_task_with_subsampling_is_stratified_and_deterministic():
    cfg = DataConfig(task="demo/motifs", max_train=301, max_eval=101, subsample_seed=7)
    first, second = load_task(cfg), load_task(cfg)
    assert first.train.ids == second.train.ids and first.dev.ids == second.dev.ids
    assert (len(first.train), len(first.dev), len(first.test)) == (301, 101, 101)
    assert sorted(np.bincount(first.train.labels).tolist()) == [150, 151]
    assert sorted(np.bincount(first.test.labels).tolist()) == [50, 51]
    assert first.train.motifs is not None and len(first.train.motifs) == 301
    report = first.report["subsampling"]
    assert report["train"] == {"before": 2000, "after": 301, "stratified": True} and report["seed"] == 7
    assert load_task(DataConfig(task="demo/motifs", max_train=301, subsample_seed=8)).train.ids != first.train.ids
    full = make_demo_task()
    assert set(first.train.ids) <= set(full.train.ids)


def test_split_subset_keeps_fields_aligned():
    split = Split(ids=["a", "b", "c"], sequences=["AA", "CC", "GG"], labels=np.array([0, 1, 0]),
                  motifs=[[], [(0, 1, "m")], []])
    picked = split.subset([2, 1])
    assert picked.ids == ["c", "b"] and picked.sequences == ["GG", "CC"] and picked.labels.tolist() == [0, 1]
    assert picked.motifs == [[], [(0, 1, "m")]] and len(split.subset(np.array([True, False, True]))) == 2
