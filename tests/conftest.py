"""Shared fixtures: offline mode, the shared data root, tiny models for fast code-path tests."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from lingo_core.config import default_data_root  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared benchmark data (../shared/data); tests that need it skip when it is absent."""
    root = default_data_root()
    if root is None or not (root / "gue").is_dir():
        pytest.skip("real benchmark data not found: set LINGO_DATA_DIR or place it at ../shared/data")
    return root


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide randomly initialised BERT with the embedded MiniLM WordPiece tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from lingo_core.models import REGISTRY

    out = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(str(REGISTRY["minilm-l6"].locate()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_opt_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised OPT with a byte-level BPE tokenizer trained here (OPT code path)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import OPTConfig, OPTForSequenceClassification, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny_opt")
    corpus = [
        "Domain: DNA Promoter\nSequence: ACGTTGCATTATAAAGGCCAATCGT\nAnnotation:",
        "the quick brown fox jumps over the lazy dog",
    ] * 50 + ["".join("ACGT"[(i * 7 + j * 3) % 4] for j in range(60)) for i in range(200)]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=2, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    config = OPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        ffn_dim=64,
        num_attention_heads=2,
        max_position_embeddings=512,
        word_embed_proj_dim=32,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids("</s>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("</s>"),
    )
    torch.manual_seed(0)
    OPTForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def dashboard_runs_dir(tmp_path, monkeypatch) -> Path:
    """An empty runs folder for the dashboard (LINGO_RUNS_DIR) with the launch queue paused.

    ``LINGO_MAX_PARALLEL=0``: runs launched from the app stay queued, so page tests never train.
    """
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    monkeypatch.setenv("LINGO_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("LINGO_MAX_PARALLEL", "0")
    return runs_dir


# The session's demo run: the quickstart as shipped (ARS on MiniLM's WordPiece tokens at lr 8e-3), capped
# at DEMO_RUN_STEPS of its 250 steps and trained in fp32 so that it is the same run on every CPU.
# Measured side by side (one torch thread each, 2026-12-03): 150 steps reach dev MCC 0.83 and pass the
# attribution and prediction tests with margin (IG enrichment 11-14, IG share on the motifs 0.61-0.65);
# 120 steps passed too with ISM's share down to 0.54. It replaced full fine-tuning on one token per base
# for 200 steps (cleaner attributions, IG share ~0.75, at 1.6x the training time and 1.7x the test time).
DEMO_RUN_STEPS = 150
DEMO_RUN_OVERRIDES = ["model.dtype=float32"]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The embedded MiniLM on the planted-motif demo task (quickstart + DEMO_RUN_OVERRIDES), trained briefly.

    Set ``LINGO_TEST_DEMO_RUN=/path/to/run`` to reuse a finished run of that config instead of training.
    """
    reuse = os.environ.get("LINGO_TEST_DEMO_RUN")
    if reuse:
        return Path(reuse)
    from lingo_core.config import load_config
    from lingo_core.runs import load_run
    from lingo_core.train import train

    out = tmp_path_factory.mktemp("demo_run")
    cfg = load_config(
        PROJECT_ROOT / "configs" / "quickstart.yaml",
        [f"train.max_steps={DEMO_RUN_STEPS}", f"output_dir={out}", "train.progress_bar=false", "data.max_eval=200",
         "train.eval_every=75", *DEMO_RUN_OVERRIDES],
    )
    run_dir = train(cfg)
    assert load_run(run_dir).state == "done", f"demo run failed: {load_run(run_dir).status.get('error')}"
    return run_dir
