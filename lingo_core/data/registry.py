"""Named benchmarks (GUE, leak-free yeast marks, the synthetic demo) and ``load_task``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import lingo_core.config as config
from lingo_core.config import DataConfig
from lingo_core.data.demo import DEMO_NAME, demo_info, demo_parts, demo_recipe
from lingo_core.data.loaders import (
    SPLITS,
    RecordSet,
    TaskData,
    TaskInfo,
    assemble_task,
    duplicated_mask,
    load_path_task,
    membership_mask,
    read_table,
    split_records,
    split_recipe_text,
)
from lingo_core.data.validation import DataError

GUE_DOWNLOAD = (
    "Download GUE from the Google Drive link in the DNABERT-2 repository README "
    "(https://github.com/MAGICS-LAB/DNABERT_2) and unpack it under <data root>/gue/."
)
NT_DOWNLOAD = (
    "Download the yeast histone files from the Hugging Face dataset "
    "InstaDeepAI/nucleotide_transformer_downstream_tasks into <data root>/nt_yeast_histone_test/<mark>_test.csv."
)
ROOT_HINT = "Set the data root with --set data.root=/path/to/data or the LINGO_DATA_DIR environment variable."

FULL, DEV_TEST, EMP = "full", "dev_test", "emp"
SPLITS_NOTE = {
    FULL: "train/dev/test as published in GUE",
    DEV_TEST: (
        "only GUE dev/test available: train/dev split from GUE dev by data.split.dev_fraction; "
        "test = GUE test"
    ),
    EMP: (
        "leak-free yeast recipe: train/dev split (data.split.dev_fraction) from GUE dev + NT test rows "
        "in neither GUE dev nor GUE test; test = GUE test"
    ),
}
YEAST_MARKS = ("H3", "H3K14ac", "H3K36me3", "H3K4me1", "H3K4me2", "H3K4me3", "H3K79me3", "H3K9ac", "H4", "H4ac")
TF_TASK_COUNT = 5  # gue/tf/0 .. gue/tf/4
PROMOTER_LABELS = ("non-promoter", "promoter")


@dataclass(frozen=True)
class Benchmark:
    """A named task: its folder under the data root, split layout and meaning."""

    name: str
    folder: str
    layout: str
    info: TaskInfo
    aliases: tuple[str, ...] = ()

    def files(self, root: Path) -> list[Path]:
        """Every file the task needs."""
        folder = root / self.folder
        names = ("train", "dev", "test") if self.layout == FULL else ("dev", "test")
        files = [folder / f"{name}.csv" for name in names]
        if self.layout == EMP:
            files.append(nt_yeast_file(root, self.folder.rsplit("/", 1)[-1]))
        return files


def nt_yeast_file(root: Path, mark: str) -> Path:
    return root / "nt_yeast_histone_test" / f"{mark}_test.csv"


def _promoter(name: str, length: str, window: str, kind: str, layout: str) -> Benchmark:
    return Benchmark(
        name=f"gue/{name}",
        folder=f"gue/prom/{name}",
        layout=layout,
        info=TaskInfo(
            domain="DNA Promoter",
            species="human",
            description=(
                f"Label 1 (promoter) means the {length} human sequence is a {kind} from EPDnew "
                f"covering {window} around the transcription start site; label 0 (non-promoter) "
                "means it is not a promoter."
            ),
            label_names=PROMOTER_LABELS,
        ),
        aliases=(f"gue/prom/{name}",),
    )


def _build_registry() -> list[Benchmark]:
    benchmarks = [
        _promoter("prom_core_all", "70 bp", "-34..+35", "promoter (TATA or non-TATA)", FULL),
        _promoter("prom_core_notata", "70 bp", "-34..+35", "non-TATA promoter", FULL),
        _promoter("prom_core_tata", "70 bp", "-34..+35", "TATA-box promoter", FULL),
        _promoter("prom_300_tata", "300 bp", "-249..+50", "TATA-box promoter", FULL),
        _promoter("prom_300_all", "300 bp", "-249..+50", "promoter (TATA or non-TATA)", DEV_TEST),
        _promoter("prom_300_notata", "300 bp", "-249..+50", "non-TATA promoter", DEV_TEST),
    ]
    for k in range(TF_TASK_COUNT):
        benchmarks.append(
            Benchmark(
                name=f"gue/tf/{k}",
                folder=f"gue/tf/{k}",
                layout=FULL,
                info=TaskInfo(
                    domain="Transcription Factor Binding Site",
                    species="human",
                    description=(
                        f"Label 1 (bound) means the 101 bp human sequence lies in a ChIP-seq peak of the "
                        f"transcription factor of GUE dataset tf/{k} (ENCODE); label 0 (unbound) means it "
                        "does not."
                    ),
                    label_names=("unbound", "bound"),
                ),
            )
        )
    for mark in YEAST_MARKS:
        benchmarks.append(
            Benchmark(
                name=f"gue/EMP/{mark}",
                folder=f"gue/EMP/{mark}",
                layout=EMP,
                info=TaskInfo(
                    domain=f"Yeast Histone {mark} Occupancy",
                    species="yeast",
                    description=(
                        f"Label 1 (high) means the 500 bp yeast sequence is strongly enriched for histone "
                        f"{mark} in ChIP-chip (Pokholok et al. 2005); label 0 (low) means it is weakly enriched."
                    ),
                    label_names=("low", "high"),
                ),
            )
        )
    benchmarks.append(
        Benchmark(
            name="gue/splice",
            folder="gue/splice/reconstructed",
            layout=DEV_TEST,
            info=TaskInfo(
                domain="Splice Site",
                species="human",
                description=(
                    "Label 1 (donor) means the 400 bp human sequence is centred on a splice donor site; "
                    "label 0 is an acceptor site and label 2 is not a splice site."
                ),
                label_names=("acceptor", "donor", "not a splice site"),
            ),
            aliases=("gue/splice/reconstructed",),
        )
    )
    return benchmarks


BENCHMARKS: list[Benchmark] = _build_registry()
_BY_NAME: dict[str, Benchmark] = {
    key.lower(): benchmark for benchmark in BENCHMARKS for key in (benchmark.name, *benchmark.aliases)
}


def resolve_data_root(cfg_root: Optional[str]) -> Optional[Path]:
    """``cfg.root`` when set, else :func:`lingo_core.config.default_data_root`."""
    if cfg_root:
        return Path(cfg_root).expanduser()
    return config.default_data_root()


def _default_root_candidate() -> Path:
    """Where ``default_data_root`` looks when ``LINGO_DATA_DIR`` is unset (for error messages)."""
    return Path(config.__file__).resolve().parent.parent.parent / "shared" / "data"


def _require_files(benchmark: Benchmark, cfg_root: Optional[str]) -> Path:
    root = resolve_data_root(cfg_root)
    download = GUE_DOWNLOAD + (f" {NT_DOWNLOAD}" if benchmark.layout == EMP else "")
    if root is None:
        raise DataError(
            f"{benchmark.name}: no data root. Looked for data.root (unset), LINGO_DATA_DIR (unset) "
            f"and {_default_root_candidate()} (missing). {ROOT_HINT} {download}"
        )
    missing = [path for path in benchmark.files(root) if not path.is_file()]
    if missing:
        raise DataError(
            f"{benchmark.name}: looked for {missing[0]} under data root {root}, but it does not exist. "
            f"{ROOT_HINT} {download}"
        )
    return root


def _emp_parts(benchmark: Benchmark, root: Path, cfg: DataConfig) -> tuple[dict[str, RecordSet], str]:
    """Leak-free yeast split: pool GUE dev with unseen NT test rows, split it, keep GUE test."""
    mark = benchmark.folder.rsplit("/", 1)[-1]
    dev_file, test_file, nt_file = benchmark.files(root)
    gue_dev, gue_test, nt = (read_table(path, cfg, num_classes=2) for path in (dev_file, test_file, nt_file))
    dev_in_test = membership_mask(gue_dev.sequences, gue_test.sequences)
    unseen = ~membership_mask(nt.sequences, gue_dev.sequences + gue_test.sequences)
    pool = RecordSet.concat([gue_dev.subset(~dev_in_test), nt.subset(unseen)])
    pool = pool.subset(~duplicated_mask(pool.sequences))
    fractions = {"dev": cfg.split.dev_fraction}
    parts = {**split_records(pool, fractions, cfg), "test": gue_test}
    recipe = (
        f"Leak-free yeast recipe: pool = GUE {mark} dev ({len(gue_dev)} rows, {int(dev_in_test.sum())} also in "
        f"GUE test dropped) + {int(unseen.sum())} rows of {nt_file.name} (Nucleotide Transformer) whose sequence "
        f"is in neither GUE dev nor GUE test, deduplicated by sequence = {len(pool)} rows; the pool is split "
        f"into {split_recipe_text(fractions, cfg.split.seed, cfg.split.stratify)}; test = GUE test "
        f"({len(gue_test)} rows). Not comparable to published GUE numbers (about 8x less training data)."
    )
    return parts, recipe


def _load_benchmark(benchmark: Benchmark, cfg: DataConfig) -> TaskData:
    root = _require_files(benchmark, cfg.root)
    gue_cfg = dataclasses.replace(
        cfg, sequence_column="sequence", label_columns=["label"], id_column=None, labels_table=None
    )
    num_classes = len(benchmark.info.label_names)
    folder = root / benchmark.folder
    if benchmark.layout == FULL:
        parts = {split: read_table(folder / f"{split}.csv", gue_cfg, num_classes) for split in SPLITS}
        recipe = f"GUE train/dev/test as published ({folder})."
    elif benchmark.layout == DEV_TEST:
        fractions = {"dev": cfg.split.dev_fraction}
        gue_dev = read_table(folder / "dev.csv", gue_cfg, num_classes)
        parts = {
            **split_records(gue_dev, fractions, cfg),
            "test": read_table(folder / "test.csv", gue_cfg, num_classes),
        }
        recipe = (
            f"Only GUE dev/test are available ({folder}): GUE dev ({len(gue_dev)} rows) is split into "
            f"{split_recipe_text(fractions, cfg.split.seed, cfg.split.stratify)}; test = GUE test. "
            "Not comparable to published GUE numbers (smaller training set)."
        )
    else:
        parts, recipe = _emp_parts(benchmark, root, gue_cfg)
    return assemble_task(benchmark.name, parts, cfg, benchmark.info, recipe)


def load_task(cfg: DataConfig) -> TaskData:
    """Load ``cfg.task``: ``demo/motifs``, a registry name (see :func:`list_benchmarks`) or a path."""
    key = cfg.task.strip().lower()
    if key == DEMO_NAME:
        return assemble_task(DEMO_NAME, demo_parts(), cfg, demo_info(), demo_recipe())
    if key in _BY_NAME:
        return _load_benchmark(_BY_NAME[key], cfg)
    if key.startswith(("gue/", "demo/")) and not Path(cfg.task).expanduser().exists():
        names = ", ".join([DEMO_NAME] + [b.name for b in BENCHMARKS])
        raise DataError(f"unknown benchmark '{cfg.task}'. Fix: use one of {names}, or a path to your data.")
    return load_path_task(cfg)


def list_benchmarks(root: Optional[str | Path] = None) -> list[dict]:
    """Every registry task with its description, availability under the data root, path and split note."""
    data_root = resolve_data_root(str(root) if root is not None else None)
    entries = [
        {
            "name": DEMO_NAME,
            "description": demo_info().description,
            "available": True,
            "path": "(embedded, generated in memory)",
            "splits": "synthetic train/dev/test generated from a fixed seed",
        }
    ]
    for benchmark in BENCHMARKS:
        available = data_root is not None and all(path.is_file() for path in benchmark.files(data_root))
        entries.append(
            {
                "name": benchmark.name,
                "description": benchmark.info.description,
                "available": available,
                "path": str(data_root / benchmark.folder) if data_root is not None else "",
                "splits": SPLITS_NOTE[benchmark.layout],
            }
        )
    return entries
