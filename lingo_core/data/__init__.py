"""Data loading for LINGO: benchmark registry, CSV/FASTA readers, validation and the synthetic demo.

``load_task(cfg.data)`` returns a :class:`TaskData` with validated train/dev/test splits and a
JSON-serialisable ``report`` of everything done to the data (sources, IUPAC replacements,
duplicate overlaps, subsampling, split recipe).
"""

from lingo_core.data.demo import make_demo_task
from lingo_core.data.loaders import Split, TaskData
from lingo_core.data.readers import parse_fasta_text, read_fasta
from lingo_core.data.registry import list_benchmarks, load_task, resolve_data_root
from lingo_core.data.validation import DataError, clean_sequence

__all__ = [
    "DataError",
    "Split",
    "TaskData",
    "clean_sequence",
    "list_benchmarks",
    "load_task",
    "make_demo_task",
    "parse_fasta_text",
    "read_fasta",
    "resolve_data_root",
]
