"""Backbones: what the classifier reads (pooling), and the size of an adapter's update."""

from __future__ import annotations

import pytest
import torch

from lingo_core.adapters import build_adapter
from lingo_core.config import EncodingConfig, ModelConfig, config_from_dict
from lingo_core.encoding import NUCLEOTIDE_TOKENS
from lingo_core.models import ModelError, load_model, model_family, pooling_problem, resolve_pooling


def _logits(loaded, texts):
    batch = loaded.tokenizer(texts, padding=True, return_tensors="pt")
    loaded.model.eval()
    with torch.no_grad():
        return loaded.model(**batch).logits


def test_auto_pooling_reads_the_sentence_transformers_config_and_ignores_padding():
    loaded = load_model(ModelConfig(pooling="auto"), 2, False, EncodingConfig())
    assert loaded.pooling == "mean"  # all-MiniLM-L6-v2 ships 1_Pooling/config.json with mean tokens
    short, long = "TATAAAAG GCCAAT", "ACGT " * 40
    alone = _logits(loaded, [short])[0]
    padded = _logits(loaded, [short, long])[0]  # the short one is padded to the long one
    torch.testing.assert_close(alone, padded, rtol=1e-5, atol=1e-5)

    hidden = loaded.model.bert(**loaded.tokenizer([short], return_tensors="pt")).last_hidden_state
    expected = loaded.model.classifier(hidden.mean(dim=1))
    torch.testing.assert_close(_logits(loaded, [short]), expected, rtol=1e-5, atol=1e-5)


def test_native_pooling_keeps_the_cls_pooler_and_differs_from_mean():
    native = load_model(ModelConfig(pooling="native"), 2, False, EncodingConfig())
    assert native.pooling == "native" and type(native.model.bert.pooler).__name__ == "BertPooler"
    torch.manual_seed(0)
    mean = load_model(ModelConfig(pooling="mean"), 2, False, EncodingConfig())
    mean.model.classifier.load_state_dict(native.model.classifier.state_dict())
    assert not torch.allclose(_logits(native, ["ACGTACGT"]), _logits(mean, ["ACGTACGT"]))


def test_max_pooling_reads_the_elementwise_maximum_of_the_real_tokens_only():
    loaded = load_model(ModelConfig(pooling="max"), 2, False, EncodingConfig())
    assert loaded.pooling == "max"
    short, long = "TATAAAAG GCCAAT", "ACGT " * 40
    torch.testing.assert_close(_logits(loaded, [short])[0], _logits(loaded, [short, long])[0], rtol=1e-5, atol=1e-5)

    hidden = loaded.model.bert(**loaded.tokenizer([short], return_tensors="pt")).last_hidden_state
    expected = loaded.model.classifier(hidden.amax(dim=1))
    torch.testing.assert_close(_logits(loaded, [short]), expected, rtol=1e-5, atol=1e-5)
    mean_of_tokens = loaded.model.classifier(hidden.mean(dim=1))
    assert not torch.allclose(_logits(loaded, [short]), mean_of_tokens)


def test_attention_pooling_starts_as_the_mean_and_learns_a_weighting_of_the_real_tokens_only():
    loaded = load_model(ModelConfig(pooling="attention"), 2, False, EncodingConfig())
    assert loaded.pooling == "attention"
    scorer = loaded.model.bert.pooler.token_score
    assert scorer.weight.abs().sum() == 0 and scorer.bias.abs().sum() == 0
    short, long = "TATAAAAG GCCAAT", "ACGT " * 40
    hidden = loaded.model.bert(**loaded.tokenizer([short], return_tensors="pt")).last_hidden_state
    torch.testing.assert_close(_logits(loaded, [short]), loaded.model.classifier(hidden.mean(dim=1)), rtol=1e-5, atol=1e-5)

    torch.manual_seed(0)
    with torch.no_grad():  # a trained scorer: the weights follow the tokens' scores, padding still gets none
        scorer.weight.normal_(std=0.2)
    weights = torch.softmax(scorer(hidden).squeeze(-1), dim=1)
    expected = loaded.model.classifier((weights.unsqueeze(-1) * hidden).sum(1))
    torch.testing.assert_close(_logits(loaded, [short]), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_logits(loaded, [short])[0], _logits(loaded, [short, long])[0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(_logits(loaded, [short]), loaded.model.classifier(hidden.mean(dim=1)), atol=1e-4)


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory, tiny_opt_dir) -> str:
    """A tiny random Llama-type decoder (SmolLM2's architecture) with the tiny OPT's byte-level tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    out = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = AutoTokenizer.from_pretrained(tiny_opt_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.mark.parametrize("family", ["opt", "llama"])
@pytest.mark.parametrize("pooling", ["mean", "max", "attention"])
def test_a_decoder_can_read_every_real_token_instead_of_the_last(family, pooling, tiny_opt_dir, tiny_llama_dir):
    """mean / max / attention on a decoder: the head scores the pool of the real tokens' final states,
    padding changes nothing, and it differs from the last token's (the decoder default)."""
    source = str(tiny_opt_dir) if family == "opt" else tiny_llama_dir
    loaded = load_model(ModelConfig(name=source, pooling=pooling), 2)
    assert loaded.family == family and loaded.pooling == pooling
    last = load_model(ModelConfig(name=source, pooling="auto"), 2)
    assert last.pooling == "last"
    head = loaded.model.score
    last.model.score.load_state_dict(head.state_dict())
    short, long = "Sequence: TATAAAAGGCCAAT", "Sequence: " + "ACGT" * 30
    torch.testing.assert_close(_logits(loaded, [short])[0], _logits(loaded, [short, long])[0], rtol=1e-4, atol=1e-5)

    hidden = last.model.base_model(**last.tokenizer([short], return_tensors="pt")).last_hidden_state[0]
    pooled = {"mean": hidden.mean(0), "max": hidden.amax(0), "attention": hidden.mean(0)}[pooling]  # the scorer starts at zero
    torch.testing.assert_close(_logits(loaded, [short])[0], head(pooled), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(_logits(last, [short])[0], head(hidden[-1]), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(_logits(loaded, [short]), _logits(last, [short]), atol=1e-4)


def test_pooling_choices_are_checked_against_the_architecture(tmp_path):
    assert resolve_pooling("auto", "llama", None) == "last"
    assert resolve_pooling("auto", "bert", tmp_path) == "cls"  # no sentence-transformers pooling config
    assert [resolve_pooling(p, "llama", None) for p in ("mean", "max", "attention", "last")] == ["mean", "max", "attention", "last"]
    with pytest.raises(ModelError, match="model.pooling must be one of"):
        resolve_pooling("sum", "bert", None)
    with pytest.raises(ModelError, match="first token has seen none of the sequence"):
        resolve_pooling("cls", "opt", None)


def test_the_family_and_a_pooling_mismatch_are_known_from_the_config_alone(tmp_path, tiny_opt_dir):
    import json

    assert model_family("minilm-l6") == "bert" and model_family("smollm2-135m") == "llama"
    assert model_family(str(tiny_opt_dir)) == "opt"
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    assert model_family(str(tmp_path / "gpt")) == "gpt2"
    assert model_family(str(tmp_path / "broken")) is None  # unknown, not an error: the plan checks it later
    assert model_family("no-such-org/no-such-model") is None and model_family(str(tmp_path / "missing")) is None
    assert "is for encoders" in pooling_problem(str(tiny_opt_dir), "cls")
    assert "is for encoders" in pooling_problem("smollm2-135m", "cls")
    assert pooling_problem("smollm2-135m", "mean") is None and pooling_problem(str(tiny_opt_dir), "attention") is None
    assert pooling_problem(str(tiny_opt_dir), "last") is None and pooling_problem(str(tiny_opt_dir), "auto") is None
    assert pooling_problem("minilm-l6", "max") is None and pooling_problem(str(tmp_path / "broken"), "mean") is None


@pytest.mark.parametrize("family", ["bert", "opt"])
def test_model_dropout_sets_every_dropout_rate_of_the_backbone_and_keeps_its_weights(family, tiny_bert_dir, tiny_opt_dir):
    """model.dropout: 0 turns off every dropout the backbone builds (modules and config rates); null keeps them."""
    source = str(tiny_bert_dir if family == "bert" else tiny_opt_dir)
    kept = load_model(ModelConfig(name=source, pooling="auto"), 2)
    off = load_model(ModelConfig(name=source, pooling="auto", dropout=0.0), 2)
    rates = {"bert": ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"),
             "opt": ("dropout", "attention_dropout")}[family]
    assert all(getattr(off.model.config, key) == 0.0 for key in rates)
    assert any(getattr(kept.model.config, key) for key in rates)  # the models' own rates are not all 0
    assert {m.p for m in off.model.modules() if isinstance(m, torch.nn.Dropout)} <= {0.0}  # OPT's are functional
    kept_weights, off_weights = kept.model.state_dict(), off.model.state_dict()
    heads = ("classifier", "score")  # the fresh head is drawn at random in each load
    for name, value in kept_weights.items():
        if not name.startswith(heads):
            torch.testing.assert_close(off_weights[name], value, rtol=0, atol=0)
    # in training mode, two passes agree only without dropout
    batch = off.tokenizer(["ACGTACGTTTGACA"], return_tensors="pt")
    for loaded, same in ((off, True), (kept, False)):
        loaded.model.train()
        torch.manual_seed(0)
        first = loaded.model(**batch).logits
        second = loaded.model(**batch).logits
        assert torch.equal(first, second) is same


def test_runs_made_before_pooling_existed_load_with_the_native_head(tmp_path):
    from lingo_core import runs

    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / runs.CONFIG).write_text("model:\n  name: minilm-l6\nadapter:\n  method: lora\n")
    assert runs.load_run(run_dir).typed_config().model.pooling == "native"
    assert config_from_dict({}).model.pooling == "auto"


@pytest.mark.parametrize("method", ["lora", "adalora"])
def test_update_norms_are_the_frobenius_norm_of_what_the_adapter_adds(method):
    loaded = load_model(ModelConfig(pooling="native"), 2, False, EncodingConfig())
    adapted = build_adapter(loaded, config_from_dict({"adapter": {"method": method}}).adapter, 100)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in adapted.model.named_parameters():
            if "lora_B" in name or "lora_E" in name:
                param.normal_(std=0.1)
    adapted.model.eval()
    norms = adapted.update_norms()
    assert len(norms) == len(adapted.adapted_modules()) == 30
    layer = dict(adapted.model.named_modules())["base_model.model.bert.encoder.layer.2.intermediate.dense"]
    identity = torch.eye(layer.base_layer.in_features)
    with torch.no_grad():
        delta = layer(identity) - layer.base_layer(identity)  # rows: delta W^T applied to basis vectors
    assert norms["2.intermediate.dense"] == pytest.approx(float(delta.norm()), rel=1e-4)
    if method == "adalora":  # a pruned (zero) singular value adds nothing
        with torch.no_grad():
            layer.lora_E["default"].zero_()
        assert adapted.update_norms()["2.intermediate.dense"] == 0.0


def test_nucleotide_tokens_start_at_their_letters_embeddings_unless_mean_is_asked():
    letters = load_model(ModelConfig(), 2, False, EncodingConfig(sequence="nucleotide"))
    weights = letters.model.get_input_embeddings().weight
    vocab = letters.tokenizer.get_vocab()
    assert len(letters.new_token_ids) == 5 and weights.shape[0] == len(letters.tokenizer)
    for base, new_id in zip(NUCLEOTIDE_TOKENS, letters.new_token_ids):
        # MiniLM's WordPiece is uncased: the letter A is the token "a", with its pretrained embedding
        assert letters.tokenizer.convert_ids_to_tokens(new_id) == NUCLEOTIDE_TOKENS[base]
        torch.testing.assert_close(weights[new_id], weights[vocab[base.lower()]], rtol=0, atol=0)
    # the old start (Hugging Face's mean-resizing): five rows near the mean embedding, far closer to each
    # other than the letters' embeddings are
    torch.manual_seed(0)
    mean = load_model(ModelConfig(), 2, False, EncodingConfig(sequence="nucleotide", nucleotide_init="mean"))
    rows = mean.model.get_input_embeddings().weight[mean.new_token_ids[:4]].detach()
    letter_rows = weights[letters.new_token_ids[:4]].detach()
    assert torch.pdist(rows).max() < 0.5 * torch.pdist(letter_rows).min()
    with pytest.raises(Exception, match="nucleotide_init"):
        config_from_dict({"encoding": {"sequence": "nucleotide", "nucleotide_init": "random"}})


def test_nucleotide_rows_refuse_a_tokenizer_that_only_knows_the_letters_as_unknown():
    from lingo_core.models import init_nucleotide_rows

    loaded = load_model(ModelConfig(), 2, False, EncodingConfig(sequence="nucleotide"))

    class UnknownLetters:
        unk_token_id = loaded.tokenizer.unk_token_id

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [self.unk_token_id]}

    with pytest.raises(ModelError, match=r"no token for the letter 'A'.*encoding.nucleotide_init=mean"):
        init_nucleotide_rows(loaded.model, UnknownLetters(), loaded.new_token_ids)
