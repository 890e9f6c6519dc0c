"""The tour notebook runs end to end (CI: tiny random model, demo task, a few steps)."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import PROJECT_ROOT

TOUR = PROJECT_ROOT / "notebooks" / "tour.ipynb"


def test_tour_notebook_executes(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LINGO_TOUR_MODEL", str(tiny_bert_dir))
    monkeypatch.setenv("LINGO_TOUR_TASK", "demo/motifs")
    monkeypatch.setenv("LINGO_TOUR_MAX_STEPS", "12")
    monkeypatch.setenv("LINGO_TOUR_MAX_TRAIN", "120")
    monkeypatch.setenv("LINGO_TOUR_RUNS", str(tmp_path / "runs"))
    notebook = nbformat.read(TOUR, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(PROJECT_ROOT)}})
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    outputs = "\n".join(
        out.get("text", "") if out.get("output_type") == "stream" else str(out.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )
    assert "task=demo/motifs" in outputs
    assert "test MCC" in outputs and "selected on dev" in outputs
    assert "IG/ISM correlation" in outputs
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "report.json").is_file() and (runs[0] / "ranks.jsonl").is_file()
    images = sum("image/png" in out.get("data", {}) for cell in notebook.cells for out in cell.get("outputs", []))
    assert images >= 2  # rank dynamics and the attribution logos


@pytest.mark.parametrize("name", ["tour.ipynb"])
def test_notebooks_are_committed_without_outputs(name):
    notebook = nbformat.read(PROJECT_ROOT / "notebooks" / name, as_version=4)
    nbformat.validate(notebook)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
