"""Attributions on real code paths: IG (captum) completeness, ISM, exports, plots, CLI, on the tiny BERT run
(fast). Motif recovery on the trained demo run is in tests/test_trained_runs.py."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from lingo_core.attribution import (
    AttributionError,
    attribute,
    in_silico_mutagenesis,
    integrated_gradients,
    region_enrichment,
    target_log_odds,
)
from lingo_core.data import make_demo_task
from lingo_core.predict import load_predictor
from lingo_core.train import train
from tests.conftest import PROJECT_ROOT
from tests.helpers import run_cli, tiny_config

DEMO = make_demo_task(n_train=4, n_dev=4, n_test=60, seed=11)


@pytest.fixture(scope="module")
def tiny_predictor(tiny_bert_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("attr_runs")
    return load_predictor(train(tiny_config(tiny_bert_dir, out, "lora", train={"max_steps": 4, "eval_every": 4})))


def _log_odds(predictor, ids: list[list[int]], target: int) -> np.ndarray:
    logits = predictor.logits_of_ids(ids, batch_size=1, precision="no")  # attributions are computed in fp32
    return target_log_odds(torch.from_numpy(logits), target, predictor.multi_label).numpy()


# --------------------------------------------------------------------------------------- IG


@pytest.mark.parametrize("baseline", ["pad", "N"])
def test_ig_completeness_sum_matches_the_log_odds_difference(tiny_predictor, baseline):
    seq = DEMO.test.sequences[0]
    ig = integrated_gradients(tiny_predictor, seq, target=1, baseline=baseline, n_steps=64)
    # the explained scores, recomputed independently from the model
    encoded = tiny_predictor.encoder.encode_with_spans(seq)
    from lingo_core.attribution import _baseline_ids

    base = _baseline_ids(tiny_predictor, encoded, len(seq), baseline, include_prompt=True)
    score, base_score = _log_odds(tiny_predictor, [encoded.input_ids, base], 1)
    assert ig.score == pytest.approx(score, abs=1e-4) and ig.baseline_score == pytest.approx(base_score, abs=1e-4)
    difference = score - base_score
    assert abs(ig.total - difference) == pytest.approx(abs(ig.delta), abs=1e-5)  # delta is exactly the gap
    assert abs(ig.delta) <= 0.02 * abs(difference) + 1e-4  # and small: completeness holds
    # tokens -> nucleotides keeps the sequence tokens' total; prompt and special tokens are separate
    kinds = np.array(ig.kinds)
    assert ig.sequence_total == pytest.approx(ig.token_scores[kinds == "sequence"].sum(), abs=1e-9)
    assert ig.total == pytest.approx(ig.sequence_total + ig.prompt_total + ig.token_scores[kinds == "special"].sum(), abs=1e-9)
    assert np.all(ig.token_scores[kinds == "special"] == 0)  # kept in the baseline: zero by construction
    assert len(ig.nucleotide) == len(seq) and len(ig.prompt_tokens) == int((kinds == "prompt").sum()) > 0


def test_ig_prompt_kept_in_baseline_gets_zero_and_internal_batches_agree(tiny_predictor):
    seq = DEMO.test.sequences[1]
    kept = integrated_gradients(tiny_predictor, seq, target=0, include_prompt=False, n_steps=20)
    assert kept.prompt_total == 0.0 and kept.total == pytest.approx(kept.sequence_total, abs=1e-9)
    whole = integrated_gradients(tiny_predictor, seq, target=0, n_steps=20)
    chunked = integrated_gradients(tiny_predictor, seq, target=0, n_steps=20, internal_batch_size=7)
    np.testing.assert_allclose(whole.nucleotide, chunked.nucleotide, atol=1e-5)


def test_attribution_errors_say_what_to_do(tiny_predictor):
    with pytest.raises(AttributionError, match="does not fit the model window.*sequence\\[:"):
        integrated_gradients(tiny_predictor, "ACGT" * 300)
    with pytest.raises(AttributionError, match="unknown target label 'maybe'.*negative"):
        attribute(tiny_predictor, DEMO.test.sequences[0], "ig", target="maybe")
    with pytest.raises(AttributionError, match="method must be one of"):
        attribute(tiny_predictor, DEMO.test.sequences[0], "shap")
    with pytest.raises(ValueError, match="invalid character 'Z' at position 3"):
        attribute(tiny_predictor, "ACZT" * 20, "ig")


# --------------------------------------------------------------------------------------- ISM


def test_ism_matrix_is_the_score_change_of_each_substitution(tiny_predictor):
    seq = DEMO.test.sequences[2][:60]
    ism = in_silico_mutagenesis(tiny_predictor, seq.lower(), target=1)
    assert ism.matrix.shape == (60, 4) and ism.n_mutants == 180
    reference = np.array(["ACGT".index(b) for b in seq])
    assert np.all(ism.matrix[np.arange(60), reference] == 0)
    # spot-check substitutions against independent one-at-a-time scoring
    ids, _ = tiny_predictor.encoder.encode_batch([seq, seq[:7] + "A" + seq[8:], seq[:41] + "T" + seq[42:]])
    scores = _log_odds(tiny_predictor, ids, 1)
    assert ism.reference_score == pytest.approx(scores[0], abs=1e-4)
    if seq[7] != "A":
        assert ism.matrix[7, 0] == pytest.approx(scores[1] - scores[0], abs=1e-4)
    if seq[41] != "T":
        assert ism.matrix[41, 3] == pytest.approx(scores[2] - scores[0], abs=1e-4)
    # mean-centring: rows of the centred matrix sum to 0; per-position effect = centred reference base
    np.testing.assert_allclose(ism.centred.sum(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose(ism.nucleotide, ism.centred[np.arange(60), reference], atol=1e-9)


# --------------------------------------------------------------------------------------- both, export, plots


def test_both_methods_side_by_side_export_and_plots(tiny_predictor, tmp_path):
    seq = DEMO.test.sequences[3][:80]
    result = attribute(tiny_predictor, seq, "both", id="s1", n_steps=16)
    assert result.ig.target == result.ism.target == result.target
    corr = result.correlation()
    assert -1 <= corr["pearson"] <= 1 and -1 <= corr["spearman"] <= 1

    npz = np.load(result.to_npz(tmp_path / "s1.npz"))
    assert npz["ig"].shape == (80,) and npz["ism"].shape == (80,) and npz["ism_matrix"].shape == (80, 4)
    assert npz["onehot"].shape == (80, 4) and str(npz["sequence"]) == seq and str(npz["id"]) == "s1"
    np.testing.assert_allclose(npz["ig"], result.ig.nucleotide, rtol=1e-5, atol=1e-7)
    frame = result.to_frame()
    assert list(frame.columns) == ["id", "position", "base", "ig", "ism", "ism_A", "ism_C", "ism_G", "ism_T"]
    assert "".join(frame["base"]) == seq

    from lingo_core.attribution import save_npz

    other = attribute(tiny_predictor, DEMO.test.sequences[4][:80], "ig", id="s2", n_steps=8)
    stacked = np.load(save_npz([result, other], tmp_path / "two.npz"))
    assert stacked["ig"].shape == (2, 80) and list(stacked["ids"]) == ["s1", "s2"]

    from lingo_core.plots import attribution as plots

    heat = plots.attribution_heatmap_figure(result)
    assert heat.data[0].text.shape == (2, 80) and "".join(heat.data[0].text[0]) == seq  # the letters are shown
    ism_heat = plots.ism_heatmap_figure(result.ism)
    assert list(ism_heat.layout.xaxis.ticktext) == list(seq) and ism_heat.data[0].z.shape == (4, 80)
    track = plots.attribution_track_figure(result, motifs=[(10, 17, "TATA-box")])
    assert {t.name for t in track.data} == {"IG", "ISM"}
    prompt = plots.prompt_contribution_figure(result.ig)
    assert prompt.data[0].y[-1] == pytest.approx(result.ig.sequence_total)
    figure = plots.logo_figure(result)
    assert len(figure.axes) == 2
    html = plots.write_html([result, other], tmp_path / "fig.html").read_text()
    assert html.count("plotly.js") >= 1 and "s2" in html


def test_dependencies_run_one_way():
    """The figures import neither the engine nor torch; predict and attribute never import training."""
    code = (
        "import sys, lingo_core.plots.attribution\n"
        "assert not {'torch', 'lingo_core.attribution', 'lingo_core.predict'} & set(sys.modules), sorted(sys.modules)\n"
        "import lingo_core.attribution, lingo_core.predict\n"
        "assert 'lingo_core.train' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr




def test_cli_attribute_writes_npz_and_csv(tiny_predictor, tmp_path):
    run_dir = tiny_predictor.trained.run.path
    fasta = tmp_path / "in.fa"
    fasta.write_text(f">a\n{DEMO.test.sequences[0][:50]}\n>bad\nACGJ\n")
    done = run_cli("attribute", str(run_dir), "--fasta", str(fasta), "--method", "both", "--n-steps", "8",
                "--out", str(tmp_path / "a.npz"), "--csv", str(tmp_path / "a.csv"))
    assert done.returncode == 0, done.stderr
    assert "not attributed" in done.stderr and "record 'bad'" in done.stderr
    arrays = np.load(tmp_path / "a.npz")
    assert arrays["ig"].shape == (50,) and arrays["ism"].shape == (50,) and arrays["ism_matrix"].shape == (50, 4)
    assert (tmp_path / "a.csv").read_text().startswith("id,position,base,ig,ism,ism_A")


# --------------------------------------------------------------------------------------- ground truth


def test_region_enrichment_is_one_without_preference():
    assert region_enrichment(np.ones(100), [(10, 20)]) == pytest.approx(1.0)
    scores = np.zeros(100)
    scores[10:20] = 3.0
    scores[[0, 50]] = 1.0
    assert region_enrichment(scores, [(10, 20)]) == pytest.approx(3.0 / (2.0 / 90))


@pytest.mark.parametrize("pooling", ["auto", "mean"])
def test_ig_completeness_on_a_decoder_model(tiny_opt_dir, tmp_path, pooling):
    """OPT reads the last non-pad token (auto) or the mean of the real tokens: the baseline must not move
    which tokens count (unk instead of pad)."""
    cfg = tiny_config(tiny_opt_dir, tmp_path, "lora", train={"max_steps": 2, "eval_every": 2}, model={"pooling": pooling})
    predictor = load_predictor(train(cfg))
    seq = DEMO.test.sequences[5][:60]
    # 128 steps: the path integral's approximation error depends on the model; on this 2-step tiny OPT it
    # was 4 % at 64 steps with one dropout stream and 0.3 % / 0.06 % at 128 / 512 steps (it converges)
    ig = integrated_gradients(predictor, seq, target=1, n_steps=128)
    encoded = predictor.encoder.encode_with_spans(seq)
    from lingo_core.attribution import _baseline_ids

    base = _baseline_ids(predictor, encoded, len(seq), "pad", include_prompt=True)
    assert predictor.pad_id not in base
    score, base_score = _log_odds(predictor, [encoded.input_ids, base], 1)
    assert ig.baseline_score == pytest.approx(base_score, abs=1e-4)
    assert abs(ig.total - (score - base_score)) <= 0.02 * abs(score - base_score) + 1e-4


def test_html_report_is_written_whole_or_not_at_all(tiny_predictor, tmp_path, monkeypatch):
    """attribute --html goes through an atomic write: a failure while writing leaves no file behind."""
    from lingo_core import runs
    from lingo_core.plots import attribution as plots

    result = attribute(tiny_predictor, DEMO.test.sequences[3][:40], "ism", id="s1")
    target = tmp_path / "fig.html"

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(runs.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        plots.write_html(result, target)
    assert list(tmp_path.iterdir()) == []
