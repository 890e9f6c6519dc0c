"""Tests on the suite's two real trainings, which train in background processes while the rest of the suite
runs (``demo_run`` and ``real_promoter_ars_run`` in conftest.py): the embedded MiniLM learns, its predictions mean
something and its attributions find what it learnt.

They are in one file so that under pytest-xdist (`-n 2`, the README's command; whole files per worker) they run together,
last, on one worker, while the other worker takes the rest of the suite.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lingo_core import runs
from lingo_core.attribution import attribute, region_enrichment
from lingo_core.data import make_demo_task
from lingo_core.predict import load_predictor

DEMO = make_demo_task(n_train=4, n_dev=4, n_test=60, seed=11)
# Measured on the session's demo run (ARS on WordPiece tokens, 150 steps of 16; 4 positive test sequences):
# mean |attribution| on the planted motif positions over mean elsewhere was 11-14 for IG and 13-34 for
# ISM; the share of |attribution| on the 12 motif positions of 100 (12 % if uniform) was 0.61-0.65 for IG
# and 0.63-0.82 for ISM (150 steps of 8, the run now: 11-28 and 6-25; shares 0.61-0.79 and 0.47-0.77). A run stopped before it learnt the task (dev MCC 0) gave IG 1.5-2.2 and shares
# of 0.17-0.29.
MOTIF_ENRICHMENT_THRESHOLD = 5.0
MOTIF_MASS_SHARE_THRESHOLD = 0.5


def test_short_ars_run_on_real_promoter_data_beats_chance(real_promoter_ars_run):
    """The embedded MiniLM + ARS learns real TATA promoters in a short CPU run (dev MCC well above 0)."""
    run = runs.load_run(real_promoter_ars_run)
    report = run.report()
    assert report["dev"]["n"] == 613
    assert report["dev"]["mcc"] > 0.2, report["dev"]
    assert report["test"]["auroc"] > 0.7, report["test"]
    duplicates = run.data_report()["duplicates"]  # overlaps are counted and reported (the config removes them from train)
    assert (duplicates["test_train"], duplicates["dev_train"], duplicates["dev_test"]) == (16, 8, 2)
    assert duplicates["removed"] is True and duplicates["train_rows_removed"] > 0
    assert torch.__version__.startswith("2.13")


def test_trained_demo_model_separates_the_classes(demo_run):
    """On the learnt demo task, predicted probabilities follow the labels (the adapter is really loaded)."""
    task = make_demo_task(n_train=4, n_dev=4, n_test=200, seed=7)
    result = load_predictor(demo_run).predict(task.test.sequences)
    positive = result.probabilities[:, 1]
    accuracy = float(((positive > 0.5) == (task.test.labels == 1)).mean())
    assert accuracy > 0.8, accuracy


def test_ig_and_ism_find_the_planted_motifs(demo_run):
    """On the learnt demo task both methods concentrate attribution on the planted motifs."""
    predictor = load_predictor(demo_run)
    test = DEMO.test
    chosen = [i for i in range(len(test)) if test.labels[i] == 1][:4]
    probs = predictor.predict([test.sequences[i] for i in chosen]).probabilities[:, 1]
    assert (probs > 0.5).mean() >= 0.8, f"the demo run did not learn the task: P(positive) = {probs}"
    stats: dict[str, list[float]] = {"ig": [], "ism": [], "ig_share": [], "ism_share": [], "ig_rel_delta": []}
    for i in chosen:
        regions = [(start, end) for start, end, _ in test.motifs[i]]
        inside = np.zeros(len(test.sequences[i]), dtype=bool)
        for start, end in regions:
            inside[start:end] = True
        result = attribute(predictor, test.sequences[i], "both", target="positive", n_steps=64)
        for method in ("ig", "ism"):
            scores = getattr(result, method).nucleotide
            stats[method].append(region_enrichment(scores, regions))
            stats[f"{method}_share"].append(float(np.abs(scores[inside]).sum() / np.abs(scores).sum()))
        # completeness on the real model: the reported delta is exactly the gap, and it is small
        ig = result.ig
        assert abs(ig.total - (ig.score - ig.baseline_score)) == pytest.approx(abs(ig.delta), abs=1e-4)
        stats["ig_rel_delta"].append(ig.relative_delta)
    summary = {k: np.round(v, 3).tolist() for k, v in stats.items()}
    print("motif attribution on the demo run:", summary)
    assert np.mean(stats["ig"]) >= MOTIF_ENRICHMENT_THRESHOLD, summary
    assert np.mean(stats["ism"]) >= MOTIF_ENRICHMENT_THRESHOLD, summary
    assert np.mean(stats["ig_share"]) >= MOTIF_MASS_SHARE_THRESHOLD, summary
    assert np.mean(stats["ism_share"]) >= MOTIF_MASS_SHARE_THRESHOLD, summary
    assert np.median(stats["ig_rel_delta"]) <= 0.05, summary
