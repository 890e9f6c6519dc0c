"""Train: data, model, language prefix (with a live token preview), method and budget, launch.

Launching writes a run directory (state ``queued``) and returns at once; the training itself runs
in a separate, detached process (``lingo_core.launcher``), so this page never blocks.
"""

from __future__ import annotations

import json
import string
from typing import Any, Optional

import streamlit as st

from lingo_core import launcher, runs
from lingo_core.adapters import get_method, method_names, sections_of
from lingo_core.config import POOLINGS, ConfigError, LingoConfig, config_from_dict, deep_merge, load_config
from lingo_core.plan import BudgetSchedule, RunPlan, budget_schedule, plan_steps
from lingo_core.plots.charts import budget_figure, budget_frame, duration_text, schedule_frame, token_preview_html, token_summary
from pages._common import (
    RUN_NAME,
    UPLOAD_LIMIT_MB,
    all_runs,
    earlier_costs,
    load_task_cached,
    machine_gflops,
    map_text_labels,
    mapping_text,
    md,
    page_words,
    queue_ahead_text,
    run_info,
    run_label,
    run_plan,
    runs_root,
    save_upload,
    show_exception,
    tokenizer_for,
    upload_too_big,
)
from pages._settings import section_state, settings_controls

CONFIGS = launcher.PROJECT_ROOT / "configs"
QUICKSTART = "quickstart"
PREFIXES = ["paper", "rich", "none", "custom"]
SEQUENCE_MODES = ["native", "nucleotide", "kmer"]
DEVICES = ["auto", "cpu", "cuda"]
BENCHMARK_SOURCE = "Benchmark or demo task"
TEMPLATE_FIELDS = {"domain", "species", "task", "sequence"}
OTHER_MODEL = "Other: Hugging Face id or local folder"
POOLING_LABELS = {
    "auto": "auto (what the model was trained with)",
    "mean": "mean of the tokens",
    "attention": "learnt weighting of the tokens (attention)",
    "max": "maximum over the tokens",
    "cls": "CLS token",
    "native": "the model's own head",
    "last": "last token (decoders)",
}
PREVIEW_CHARS = 150
FIELDS = {"seq": "Sequence column (CSV)", "label": "Label column(s)", "max_train": "Max training sequences", "max_eval": "Max dev/test sequences each"}


@st.cache_data(max_entries=8, show_spinner="Reading the labels…")
def text_labels_mapped(data: bytes, name: str, label_columns: tuple[str, ...]):
    """:func:`pages._common.map_text_labels`, once per uploaded file and label columns."""
    return map_text_labels(data, name, list(label_columns))


@st.cache_data(show_spinner="Looking for installed models…")
def installed_models() -> list[dict[str, Any]]:
    """The model registry with what is installed (the first call imports transformers: seconds)."""
    from lingo_core.models import list_models

    return list_models()


def header_comment(text: str) -> list[str]:
    """The lines of a YAML file's leading comment block, without their ``#``."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return lines


@st.cache_data(show_spinner=False)
def shipped_configs() -> dict[str, list[str]]:
    """The configs shipped in ``configs/`` (the quickstart first): name -> its header comment."""
    paths = sorted(CONFIGS.glob("*.yaml"), key=lambda p: (p.stem != QUICKSTART, p.stem))
    return {p.stem: header_comment(p.read_text(encoding="utf-8")) for p in paths}


@st.cache_data(show_spinner=False)
def defaults(name: str) -> tuple[dict[str, Any], Optional[str]]:
    """A shipped config as a dict (the page's initial settings), and why it could not be read, if so."""
    try:
        return load_config(CONFIGS / f"{name}.yaml").to_dict(), None
    except (ConfigError, OSError) as exc:
        return LingoConfig().to_dict(), str(exc)


def field_values(start: dict[str, Any]) -> dict[str, Any]:
    """Widget key -> value for the page's own fields (not the task, the model or the method's settings),
    from the config dict ``start``: each widget's default, and what :func:`start_state` sets."""
    from lingo_core.encoding import PREFIX_TEMPLATES

    data, encoding, model, train = start["data"], start["encoding"], start["model"], start["train"]
    prefix = encoding["prefix"]
    return {
        "train_source": BENCHMARK_SOURCE,
        "train_max_train": int(data["max_train"] or 0),
        "train_max_eval": int(data["max_eval"] or 0),
        "train_augment": data["augment"] == "reverse_complement",
        "train_eval_strands": data["eval_strands"] == "both",
        "train_crop": int(data["crop"]),
        "train_pooling": model["pooling"] if model["pooling"] in POOLINGS else POOLINGS[0],
        "train_dropout": model["dropout"],
        "train_prefix": prefix if prefix in PREFIXES else "custom",
        "train_template": PREFIX_TEMPLATES["rich"] if prefix in PREFIXES else prefix,
        "train_seq_mode": encoding["sequence"],
        "train_k": int(encoding["k"]),
        "train_domain": encoding["domain"] or "",
        "train_species": encoding["species"] or "",
        "train_task_desc": encoding["task_description"] or "",
        "train_max_length": int(encoding["max_length"]),
        "train_method": start["adapter"]["method"],
        "train_epochs": float(train["epochs"]),
        "train_batch": int(train["batch_size"]),
        "train_lr": float(train["lr"]),
        "train_seed": int(train["seed"]),
        "train_max_steps": int(train["max_steps"] or 0),
        "train_eval_every": int(train["eval_every"] or 0),
        "train_patience": int(train["early_stopping_patience"] or 0),
        "train_device": model["device"] if model["device"] in DEVICES else DEVICES[0],
        "train_run_name": "",
    }


def start_state(start: dict[str, Any]) -> dict[str, Any]:
    """Widget key -> value for every setting on the page, from the config dict ``start``.

    Keyed widgets keep what the browser shows until the session state says otherwise, so picking
    another starting config must set each widget's value (see :func:`restart_from_config`).
    """
    from lingo_core.data import list_benchmarks

    data, model = start["data"], start["model"]
    state = field_values(start)
    if any(row["available"] and row["name"] == data["task"] for row in list_benchmarks()):
        state["train_task"] = data["task"]
    installed = [m["name"] for m in installed_models() if m["available"]]
    state["train_model"] = model["name"] if model["name"] in installed else OTHER_MODEL
    state["train_model_other"] = "" if model["name"] in installed else model["name"]
    for section in method_names():
        state.update(section_state(section, start["adapter"].get(section)))
    return state


def restart_from_config() -> None:
    """A newly picked starting config replaces every setting on the page with its own."""
    start, _ = defaults(st.session_state["train_start_from"])
    for key, value in start_state(start).items():
        st.session_state[key] = value


def index_of(options: list, value: Any) -> int:
    """The position of ``value`` among ``options``, or 0 (the first) when it is not one of them."""
    return options.index(value) if value in options else 0


def template_problem(template: str) -> Optional[str]:
    """Why a custom prefix template is unusable, or None. Only plain ``{field}`` names are allowed."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"the template is not valid: {exc} (write literal braces doubled, as {{{{ and }}}})"
    names = [name for _, name, spec, conv in parsed if name is not None]
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conv:
            return f"unknown field {{{name}}} in the template; use only {{domain}}, {{species}}, {{task}} and {{sequence}}"
    if names.count("sequence") != 1:
        return "the template must contain {sequence} exactly once"
    return None


PAGE_KEYS = {
    "train.epochs": "Epochs", "train.batch_size": "Batch size", "train.lr": "Learning rate", "train.seed": "Seed",
    "train.max_steps": "Max optimizer steps", "train.eval_every": "Evaluate dev every N steps",
    "train.early_stopping_patience": "Early stopping patience", "encoding.max_length": "Max tokens per sequence",
    "encoding.k": "k (k-mer length)", "encoding.prefix": "Prefix template", "encoding.sequence": "Sequence tokens",
    "data.max_train": "Max training sequences", "data.max_eval": "Max dev/test sequences each", "model.name": "Model",
    "data.augment": "Train on both strands", "data.eval_strands": "Score dev and test on both strands",
    "data.crop": "Crop training sequences",
    "model.device": "Device",
}


def settings_words(exc: Exception, method: str) -> str:
    """A settings error naming the field on the page (its config key in brackets), as escaped markdown."""
    from lingo_core.adapters import settings_fields

    labels = dict(PAGE_KEYS)
    for section, f in settings_fields(method):
        labels[f"adapter.{section}.{f.name}"] = str(f.metadata.get("label") or f.name)
    text = md(exc)
    for key in sorted(labels, key=len, reverse=True):
        escaped = md(key)
        if escaped in text:
            text = text.replace(escaped, f"**{md(labels[key])}** ({escaped})", 1)
            break
    return text


def schedule_without_model(cfg: LingoConfig, total_step: int) -> tuple[Optional[BudgetSchedule], Optional[str]]:
    """The budget schedule's tinit/tfinal before the model is known, or why the schedule is empty.

    tinit and tfinal do not depend on the number of adapted modules, so one module stands in until
    the plan (which needs the model's architecture) counts them. ``(None, None)`` without a budget.
    """
    try:
        return budget_schedule(cfg.adapter, total_step, 1), None
    except ValueError as exc:
        return None, str(exc)


def schedule_chart(schedule: BudgetSchedule, n_modules: int) -> None:
    """The planned total rank budget b(t), from the plan."""
    fig = budget_figure(budget_frame([]), schedule_frame(schedule))
    fig.update_layout(title=f"Planned total rank budget b(t) over {n_modules} adapted modules", height=260)
    st.plotly_chart(fig, key="train_schedule_chart")


def review_plan(cfg: LingoConfig, task: Any, with_model: bool, problems: list[str]) -> tuple[Optional[RunPlan], Optional[RunPlan]]:
    """Show what the run will do, from :func:`lingo_core.plan.plan_run` (cached): optimizer steps,
    the budget schedule, trainable parameters and adapted modules. Without the model: the steps
    and the schedule's tinit/tfinal only (:func:`lingo_core.plan.plan_steps`)."""
    steps = plan_steps(cfg, len(task.train))
    schedule, problem = schedule_without_model(cfg, steps.total_step)
    if problem:
        st.error(f"Budget schedule: {page_words(problem)}")
        problems.append("empty budget schedule")
        return None, steps
    plan = None
    if not with_model:
        # the plan checks the classifier against the loaded architecture; without it, the family from the
        # model's config (registry, local folder or cache) still catches an encoder-only choice on a decoder
        from lingo_core.models import pooling_problem

        mismatch = pooling_problem(cfg.model.name, cfg.model.pooling)
        if mismatch:
            st.error(f"Model: {page_words(mismatch)}")
            problems.append("the classifier does not fit the model")
    if with_model:
        key = json.dumps({**cfg.to_dict(), "run_name": None}, sort_keys=True, default=str)
        try:
            plan = run_plan(key, len(task.train), tuple(task.label_names), bool(task.multi_label))
        except Exception as exc:  # noqa: BLE001 - e.g. target modules that do not exist in a custom model
            show_exception("Could not apply the method to this model", exc)
            problems.append("the method does not apply")
    c1, c2, c3 = st.columns(3)
    c1.metric("Optimizer steps", f"{(plan or steps).total_step:,}", help="epochs x steps per epoch, capped by max steps")
    schedule = plan.schedule if plan is not None else schedule
    if schedule is not None:
        c3.metric("Schedule", f"tinit {schedule.tinit} · tfinal {schedule.tfinal}", help="steps at full budget, then at the target budget")
    if plan is None:
        return None, steps
    counts = plan.parameters or {}
    c2.metric("Trainable parameters", f"{counts['trainable']:,}", f"{counts['percent']:.3f}% of {counts['total']:,}", delta_color="off", delta_arrow="off")
    st.caption(
        f"{len(plan.modules)} adapted module(s) · {plan.steps_per_epoch:,} steps per epoch · learning-rate warm-up "
        f"{plan.warmup_steps:,} steps · dev evaluation every {plan.eval_every:,} steps"
    )
    if plan.schedule is not None:
        schedule_chart(plan.schedule, plan.budget_modules)
    return plan, steps


def time_estimate(cfg: LingoConfig, task: Any, steps: RunPlan, plan: Optional[RunPlan], preview: Optional[dict]) -> None:
    """How long the run will take here: its steps x seconds per step for this model and sequence length,
    measured on earlier runs of this machine or benchmarked now (pages/_estimate.py)."""
    from pages._estimate import busy_note, estimate, tokens_per_sequence, work_of

    sample = task.train.sequences[:500]
    mean_length = sum(map(len, sample)) / max(1, len(sample))
    tokens = tokens_per_sequence(
        mean_length, cfg.encoding.sequence, cfg.encoding.k, cfg.encoding.max_length,
        nt_per_token=(preview or {}).get("nt_per_token"),
        prompt_tokens=((preview or {}).get("prompt", 0) + (preview or {}).get("special", 0)) if preview else None,
    )
    work = work_of(cfg.to_dict(), steps.total_step, steps.eval_every, len(task.dev), len(task.test), tokens)
    params = (plan.parameters or {}).get("total") if plan is not None else None
    try:
        guess = estimate(work, cfg.model.name, earlier_costs(all_runs()), model_params=params, gflops=machine_gflops())
    except Exception:  # noqa: BLE001 - an estimate is a courtesy; launching works without it
        guess = None
    if guess is None:
        st.caption("Time: no estimate for this model yet (no earlier run of it here, and its size is not known until it is loaded).")
        return
    st.metric("Estimated time on this machine", f"about {duration_text(guess.seconds)}", help="Optimizer steps x seconds per step for this model and sequence length, plus the dev and test evaluations")
    st.caption(
        f"{steps.total_step:,} steps × ~{guess.per_step_s:.2g} s per step (batch {work.batch} × ~{tokens:.0f} tokens), "
        f"plus {work.evals + 1} dev evaluation(s) of {len(task.dev):,} and one test evaluation of {len(task.test):,} sequences; "
        f"{guess.basis}." + queue_ahead_text()
    )
    note = busy_note()
    if note:
        st.caption(note)


st.title("Train a model")
problems: list[str] = []
starts = shipped_configs()
start_name = st.selectbox(
    "Start from", list(starts), key="train_start_from", on_change=restart_from_config,
    help="A config shipped with LINGO (the configs folder). Picking one resets every setting below to it; "
    "then change what you like. The promoter configs carry the settings chosen on dev in the medium study "
    "(docs/results.md).",
)
D, start_problem = defaults(start_name)
F = field_values(D)  # each field's default: the starting config's value
if start_problem:
    st.error(f"The config **{md(start_name)}** could not be read ({md(start_problem)}); the page starts from the defaults.")
if starts.get(start_name):
    st.caption(md(starts[start_name][0]))
    with st.expander("What this config is and what it measured"):
        st.markdown(md(" ".join(starts[start_name])))

# -- 1. data --------------------------------------------------------------------------------------------
st.header("1 · Data")
source = st.radio("Data source", [BENCHMARK_SOURCE, "Upload a CSV or FASTA file"], key="train_source", horizontal=True)
data: dict[str, Any] = {}
if source == BENCHMARK_SOURCE:
    from lingo_core.data import list_benchmarks

    rows = list_benchmarks()
    available = [r for r in rows if r["available"]]
    by_name = {r["name"]: r for r in available}
    start_task = D["data"]["task"]
    if start_task not in by_name:
        st.warning(f"The starting config's task **{md(start_task)}** is not available here; pick a task below.")
    name = st.selectbox("Task", list(by_name), index=index_of(list(by_name), start_task), key="train_task")
    if name:
        st.caption(by_name[name]["description"] + f"  \nSplits: {by_name[name]['splits']}.")
        data = {"task": name}
    missing = [r for r in rows if not r["available"]]
    if missing:
        with st.expander(f"{len(missing)} benchmark(s) not found under the data root"):
            st.markdown(
                "Set `LINGO_DATA_DIR` to the folder that holds `gue/` (and `nt_yeast_histone_test/`) "
                "and restart the app. GUE: see the DNABERT-2 repository README for the download."
            )
            st.dataframe([{"name": r["name"], "expected at": r["path"]} for r in missing], hide_index=True)
else:
    uploaded = st.file_uploader(
        f"CSV/TSV with a sequence and a label column, or FASTA with headers `>id|label` (up to {UPLOAD_LIMIT_MB} MB)",
        type=["csv", "tsv", "fa", "fasta", "fna"],
        key="train_upload",
        max_upload_size=UPLOAD_LIMIT_MB,
    )
    c1, c2 = st.columns(2)
    sequence_column = c1.text_input(FIELDS["seq"], "sequence", key="train_seq_col", help="The name of the column that holds the sequences").strip() or "sequence"
    label_text = c2.text_input(FIELDS["label"], "label", key="train_label_cols", help="Comma-separated; several columns of 0/1 make a multi-label task")
    label_columns = [c.strip() for c in label_text.split(",") if c.strip()] or ["label"]
    st.caption(
        "A single file is split into train/dev/test (80/10/10, stratified). Labels are class numbers 0, 1, … or text "
        "(such as promoter / other): text labels are numbered and the numbering is shown."
    )
    if uploaded is None:
        st.info("Upload a file to continue, or pick a benchmark.")
        problems.append("no data file uploaded")
    elif (too_big := upload_too_big(uploaded.size)) is not None:
        st.error(md(too_big))
        problems.append("upload too large")
    else:
        raw = uploaded.getvalue()
        mapped = text_labels_mapped(raw, uploaded.name, tuple(label_columns))
        if mapped is not None:
            raw, mapping = mapped
            st.info(f"Text labels read as classes: {mapping_text(mapping)}. The model's classes are these numbers.")
        path = save_upload(raw, uploaded.name)
        data = {"task": str(path), "sequence_column": sequence_column, "label_columns": label_columns}

c1, c2 = st.columns(2)
max_train = c1.number_input("Max training sequences (0 = all; stratified subsample)", 0, 10_000_000, F["train_max_train"], step=100, key="train_max_train")
max_eval = c2.number_input("Max dev/test sequences each (0 = all)", 0, 10_000_000, F["train_max_eval"], step=100, key="train_max_eval")
both_strands = st.checkbox(
    "Train on both strands (reverse-complement augmentation)", value=F["train_augment"],
    key="train_augment",
    help="Each training sequence is read on a random strand in each epoch: the same number of steps, twice the "
    "sequences seen. Use it where the label does not depend on the strand, such as transcription-factor binding "
    "(on GUE tf/0 and tf/4 it raised the k-mer regression's test MCC by 0.01 and 0.03); not for strand-specific "
    "labels such as promoters. Dev and test sequences are read as given unless the next box is ticked.",
)
both_strands_eval = st.checkbox(
    "Score dev and test on both strands", value=F["train_eval_strands"], key="train_eval_strands",
    help="Each dev and test sequence is scored as the mean of its own and its reverse complement's probabilities: the "
    "checkpoint is chosen and the metrics are reported that way, and the Predict page does the same for this run. "
    "For labels that do not depend on the strand; on GUE tf/0 and tf/4 it raised ARS's test MCC by 0.013 and 0.020 "
    "(3 seeds, trained on both strands for 8 epochs).",
)
crop = st.number_input(
    "Crop training sequences: up to this many bases off each end (0 = read whole)", 0, 10_000, F["train_crop"],
    key="train_crop",
    help="Each epoch, each training sequence is cut to a random window (a new draw per epoch, at most a quarter of the "
    "sequence off each end), so a motif moves within the window and the tokenizer cuts the sequence differently "
    "around it. Dev and test sequences are always read whole. On GUE tf/4 (up to 5 bases, ARS on both strands for 8 "
    "epochs) it tied reading them whole: +0.003 test MCC over 3 seeds.",
)
task = None
if data:
    data.update({"max_train": int(max_train) or None, "max_eval": int(max_eval) or None,
                 "duplicates": D["data"]["duplicates"], "subsample_seed": D["data"]["subsample_seed"]})
    try:
        task = load_task_cached(json.dumps(data, sort_keys=True))
    except Exception as exc:  # noqa: BLE001 - any bad file must give a message, not a crash
        name = getattr(uploaded, "name", data["task"]) if source != BENCHMARK_SOURCE else data["task"]
        st.error(f"**{md(name)}** cannot be used: {page_words(exc, FIELDS, {data['task']: name})}")
        problems.append("the data does not load")
if task is not None:
    counts = task.report["counts"]
    sizes = " / ".join(f"{counts[s]['total']:,}" for s in ("train", "dev", "test"))
    shown_name = getattr(uploaded, "name", None) if source != BENCHMARK_SOURCE else task.name
    st.success(f"**{md(shown_name or task.name)}**: train/dev/test = {sizes}; labels: {md(', '.join(task.label_names))}" + (" (multi-label)" if task.multi_label else ""))
    with st.expander("What the loader did (data report)"):
        st.json(task.report, expanded=False)

# -- 2. model and language prefix ------------------------------------------------------------------------
st.header("2 · Model and language prefix")
models = installed_models()
model_options = [m["name"] for m in models if m["available"]] + [OTHER_MODEL]
c1, c2 = st.columns([1, 2])
if D["model"]["name"] not in model_options:
    st.warning(f"The starting config's model **{md(D['model']['name'])}** is not installed here; pick a model below.")
model_choice = c1.selectbox("Model", model_options, index=index_of(model_options, D["model"]["name"]), key="train_model")
model_name = model_choice
if model_choice == OTHER_MODEL:
    model_name = c1.text_input("Hugging Face id or local folder", "", key="train_model_other", placeholder="facebook/opt-125m").strip()
    if not model_name:
        problems.append("no model given")
    c2.caption(
        "Any Hugging Face model id (downloaded on first use, needs internet) or a local folder. "
        "Custom model code is never run from the dashboard (trust_remote_code stays off)."
    )
else:
    info = next(m for m in models if m["name"] == model_choice)
    c2.caption(str(info["description"]))
not_installed = [m for m in models if not m["available"] and not m["install"].startswith("downloads")]
if not_installed:
    c2.caption("Not installed: " + "; ".join(f"{m['name']} (`{m['install']}`)" for m in not_installed))
pooling = c1.selectbox(
    "Classifier reads",
    list(POOLINGS),
    index=POOLINGS.index(F["train_pooling"]),
    format_func=lambda choice: POOLING_LABELS.get(choice, choice),
    key="train_pooling",
    help=(
        "What the classification head sees of the sequence. auto: what the model was trained to give (the mean of "
        "the token states for sentence encoders such as MiniLM, the last token for decoders such as OPT or "
        "Llama, else the CLS token). attention learns a weighting of the tokens (it starts as their mean and "
        "trains with the head). mean, max, attention and cls are for encoders; decoders read the last token."
    ),
)

dropout = c1.number_input(
    "Backbone dropout (blank: the model's own)", 0.0, 0.95, F["train_dropout"], step=0.05, key="train_dropout",
    placeholder="the model's own (0.1 on MiniLM)",
    help="Every dropout rate of the model (hidden states, attention, its classifier); blank keeps the model's own. "
    "The adapter's dropout is set under 3 (LoRA dropout). On GUE tf/4, where the adapters underfit, every "
    "dropout off tied keeping them over 3 seeds and was the best setting on dev (docs/results.md).",
)

c1, c2, c3 = st.columns(3)
prefix_choice = c1.selectbox("Language prefix", PREFIXES, index=PREFIXES.index(F["train_prefix"]), key="train_prefix", help="paper: Domain / Sequence / Annotation; rich adds species and task; none: the bare sequence")
sequence_mode = c2.radio("Sequence tokens", SEQUENCE_MODES, index=index_of(SEQUENCE_MODES, F["train_seq_mode"]), key="train_seq_mode", horizontal=True, help="native: the model's own tokenizer; nucleotide: one new token per base, trained, starting from the model's embedding of its letter (the best input found for LoRA on the GUE TATA promoters; on a TF-binding task it did not learn, where native was best - docs/results.md); kmer: space-separated k-mers")
k = int(c3.number_input("k (k-mer length)", 1, 12, F["train_k"], key="train_k", disabled=sequence_mode != "kmer", help="1 reads the sequence one letter at a time: on the GUE promoter tasks LoRA learnt better that way than with the model's own tokens (docs/results.md)"))
from lingo_core.encoding import PREFIX_TEMPLATES, EncodingError, SequenceEncoder  # noqa: E402

prefix = prefix_choice
if prefix_choice == "custom":
    prefix = st.text_area("Prefix template", F["train_template"], key="train_template", help="Fields: {domain}, {species}, {task}, {sequence} (exactly once)")
    problem = template_problem(prefix)
    if problem:
        st.error(f"Prefix template: {md(problem)}.")
        problems.append("invalid prefix template")
else:
    st.code(PREFIX_TEMPLATES[prefix_choice], language=None)
c1, c2, c3 = st.columns(3)
domain = c1.text_input("Domain (blank: the task's own)", F["train_domain"], key="train_domain", placeholder=getattr(task, "domain", "") or "")
species = c2.text_input("Species (rich/custom prefixes)", F["train_species"], key="train_species", placeholder=(getattr(task, "species", None) or "unknown"))
task_description = c3.text_input("Task description (rich/custom)", F["train_task_desc"], key="train_task_desc", placeholder="the task's own description")
max_length = int(st.number_input("Max tokens per sequence (the sequence part is truncated, never the prompt)", 16, 8192, F["train_max_length"], step=16, key="train_max_length"))
encoding = {
    "prefix": prefix,
    "domain": domain.strip() or None,
    "species": species.strip() or None,
    "task_description": task_description.strip() or None,
    "sequence": sequence_mode,
    "k": k,
    "max_length": max_length,
}

# live token preview
st.subheader("Token preview")
auto_load = model_name == "minilm-l6"
load_ok = auto_load or (bool(model_name) and st.checkbox(f"Load {model_name or 'the model'}'s tokenizer and architecture (no weights) for the preview and the plan", key="train_load_model"))
sample_default = task.train.sequences[0][:PREVIEW_CHARS] if task is not None else "TATAAAAGGCCAATCGCGTACGTTAGC"
if st.session_state.get("train_sample_for") != (task.name if task is not None else None):
    st.session_state["train_sample"] = sample_default
    st.session_state["train_sample_for"] = task.name if task is not None else None
sample = st.text_input("Sample sequence (the first training sequence; edit it freely)", key="train_sample", max_chars=2000)
tokenizer = None
preview_counts: Optional[dict] = None
if load_ok and model_name:
    try:
        tokenizer = tokenizer_for(model_name, sequence_mode)
    except Exception as exc:  # noqa: BLE001 - unknown ids, missing packages, no network
        show_exception(f"Could not load model '{model_name}'", exc)
        problems.append("the model does not load")
if tokenizer is not None and "invalid prefix template" not in problems:
    from lingo_core.config import EncodingConfig
    from lingo_core.data import DataError, clean_sequence

    try:
        clean, _ = clean_sequence(sample, "sample sequence")
        encoder = SequenceEncoder(
            tokenizer,
            EncodingConfig(**encoding),
            domain=getattr(task, "domain", "DNA") or "DNA",
            species=getattr(task, "species", None),
            task=getattr(task, "description", None),
        )
        encoded = encoder.encode_with_spans(clean)
        text, _, _ = encoder.render(clean)
    except (DataError, EncodingError, ValueError) as exc:
        st.error(f"Preview: {page_words(exc)}")
    else:
        st.caption("The text the model reads:")
        st.code(text, language=None)
        summary = token_summary(encoded.kinds, encoded.spans, clean)
        preview_counts = summary
        st.html(token_preview_html(encoded.tokens, encoded.kinds, encoded.spans, clean))
        st.caption(
            f"{summary['tokens']} tokens: {summary['prompt']} prompt (blue), {summary['sequence']} sequence "
            f"(green/orange, with the nucleotides each covers), {summary['special']} special (grey); "
            f"{summary['nt_per_token'] or '–'} nt per sequence token."
            + (f" Truncated at nucleotide {encoded.truncated_at + 1} by max tokens {max_length}." if encoded.truncated_at is not None else "")
        )
elif not load_ok:
    st.info("Tick the box above to load the model's tokenizer and architecture for the token preview and the plan.")

# -- 3. method and budget -----------------------------------------------------------------------------------
# every registered method, with controls drawn from its settings dataclasses (pages/_settings.py)
st.header("3 · Method and rank budget")
methods = method_names()


def use_recommended_lr() -> None:
    """A newly picked method starts from its recommended learning rate (LoRA at the SVD adapters' rate collapses)."""
    recommended = get_method(st.session_state["train_method"]).recommended_lr
    if recommended is not None:
        st.session_state["train_lr"] = recommended


method = st.radio(
    "Method", methods, index=index_of(methods, F["train_method"]),
    key="train_method", horizontal=True, format_func=str.upper, on_change=use_recommended_lr,
)
st.caption(get_method(method).summary)
adapter: dict[str, Any] = {"method": method}
for section in sections_of(method):
    adapter[section] = settings_controls(method, section, D["adapter"].get(section))

# -- 4. training --------------------------------------------------------------------------------------------
st.header("4 · Training")
c1, c2, c3, c4 = st.columns(4)
epochs = float(c1.number_input("Epochs", 0.01, 1000.0, F["train_epochs"], step=0.5, key="train_epochs"))
batch_size = int(c2.number_input("Batch size", 1, 4096, F["train_batch"], key="train_batch"))
st.session_state.setdefault("train_lr", F["train_lr"])  # then the method picker sets it (use_recommended_lr)
lr = float(c3.number_input("Learning rate", 1e-7, 1.0, step=1e-4, format="%.6f", key="train_lr"))
seed = int(c4.number_input("Seed", 0, 2**31 - 1, F["train_seed"], key="train_seed"))
spec = get_method(method)
if spec.recommended_lr is not None:
    st.caption(f"Recommended learning rate for {method.upper()}: {spec.recommended_lr:g} ({spec.recommended_lr_source}).")
    if lr > 2 * spec.recommended_lr:
        st.warning(
            f"The learning rate {lr:g} is {lr / spec.recommended_lr:.0f}× the one recommended for {method.upper()} "
            f"({spec.recommended_lr:g}). Too high a rate can leave the model at chance or make it collapse there "
            "mid-run; the Runs page says so if it happens."
        )
c1, c2, c3, c4 = st.columns(4)
max_steps = int(c1.number_input("Max optimizer steps (0 = no cap)", 0, 10_000_000, F["train_max_steps"], key="train_max_steps"))
eval_every = int(c2.number_input("Evaluate dev every N steps (0 = 4 per epoch)", 0, 10_000_000, F["train_eval_every"], key="train_eval_every"))
patience = int(c3.number_input("Early stopping patience (0 = off)", 0, 1000, F["train_patience"], key="train_patience"))
device = c4.selectbox("Device", DEVICES, index=DEVICES.index(F["train_device"]), key="train_device")
train = {
    "epochs": epochs,
    "batch_size": batch_size,
    "lr": lr,
    "seed": seed,
    "max_steps": max_steps or None,
    "eval_every": eval_every or None,
    "early_stopping_patience": patience or None,
    "progress_bar": False,
}

# -- 5. review and launch -------------------------------------------------------------------------------------
st.header("5 · Review and launch")
run_name = st.text_input("Run name (optional; letters, digits, _ . -)", "", key="train_run_name").strip()
if run_name and not RUN_NAME.match(run_name):
    st.error("Run name: use 1-80 letters, digits, '_', '.' or '-', starting with a letter or digit.")
    problems.append("invalid run name")
cfg: Optional[LingoConfig] = None
if data:
    try:
        # what the page shows replaces the starting config's values; what it does not show (duplicates,
        # subsample seed, dtype, warm-up, ...) is the starting config's
        cfg = config_from_dict(deep_merge(
            {section: values for section, values in D.items() if section not in ("run_name", "output_dir")},
            {
                "data": {**data, "augment": "reverse_complement" if both_strands else "none",
                         "eval_strands": "both" if both_strands_eval else "given", "crop": int(crop)},
                "encoding": encoding,
                "model": {"name": model_name or "minilm-l6", "device": device, "pooling": pooling, "dropout": dropout},
                "adapter": adapter,
                "train": train,
                "run_name": run_name or None,
                "output_dir": str(runs_root()),  # where the launch writes it; the preview shows the real folder
            },
        ))
    except ConfigError as exc:
        st.error(f"Settings: {settings_words(exc, method)}")
        problems.append("invalid settings")

twin = None
if cfg is not None and task is not None:
    plan, steps = review_plan(cfg, task, tokenizer is not None, problems)
    if steps is not None:
        time_estimate(cfg, task, steps, plan, preview_counts)
    with st.expander(f"The config that will be written ({runs.CONFIG})"):
        from lingo_core.config import save_config

        st.code(save_config(cfg), language="yaml")
        st.caption(f"The run folder goes under `{runs_root()}` (LINGO_RUNS_DIR).")
    try:
        twin = launcher.identical_active_run(cfg, runs_root())
    except Exception:  # noqa: BLE001 - the check is a courtesy; launch re-checks under its lock
        twin = None
allow_twin = False
if twin is not None:
    st.warning(
        f"A run with exactly these settings is already {md(twin.state)}: **{md(twin.id)}**. Launching again would "
        "train the same model twice. Change a setting, or tick the box to launch another one anyway (another seed "
        "is usually what you want)."
    )
    st.page_link("pages/runs.py", label="Watch it on the Runs page", icon=":material/monitoring:", query_params={"run": twin.id})
    allow_twin = st.checkbox("Launch another identical run anyway", key="train_allow_duplicate")


def _launch_clicked() -> None:
    st.session_state["train_launching"] = True  # set before the rerun: the button is drawn disabled while it launches


launching = bool(st.session_state.get("train_launching"))
blocked = bool(problems) or cfg is None or (twin is not None and not allow_twin)
st.button("Launching…" if launching else "Launch", type="primary", key="train_launch", disabled=blocked or launching, on_click=_launch_clicked)
if problems:
    st.caption("Fix first: " + "; ".join(dict.fromkeys(problems)) + ".")
if launching:
    st.session_state["train_launching"] = False
    if cfg is not None and not blocked:
        try:
            path = launcher.launch(cfg, allow_duplicate=allow_twin)
        except launcher.DuplicateRunError as exc:
            st.warning(f"Not launched: an identical run, **{md(exc.run.id)}**, is already {md(exc.run.state)}.")
        except (ConfigError, FileExistsError, OSError, ValueError) as exc:
            show_exception("Could not launch", exc)
        else:
            st.session_state["selected_run"] = path.name
            st.session_state["train_last_launch"] = path.name
            st.session_state.pop("train_allow_duplicate", None)
            st.rerun()  # redraw with the new run known: the Launch button now sees it as queued
if st.session_state.get("train_last_launch"):
    last = st.session_state["train_last_launch"]
    st.success(f"Launched **{md(last)}**: it trains in its own process (the queue starts it when a slot is free).")
    st.page_link("pages/runs.py", label="Watch it on the Runs page", icon=":material/monitoring:", query_params={"run": last})


# -- the queue ---------------------------------------------------------------------------------------------
@st.fragment(run_every=3)
def active_panel() -> None:
    """Queued and running runs, with cancel buttons (refreshes itself)."""
    active = launcher.active_runs()  # running first, then the queue in the order it starts
    st.subheader(f"Queued and running ({len(active)})")
    if not active:
        st.caption(f"Nothing is training. At most {launcher.max_parallel()} run(s) train at once (LINGO_MAX_PARALLEL).")
        return
    waiting = {r.id: i + 1 for i, r in enumerate(launcher.queue())}
    for run in active:
        info = run_info(run)
        c1, c2 = st.columns([5, 1])
        progress = info.status.get("progress") if isinstance(info.status.get("progress"), dict) else {}
        if run.id in waiting:
            where = f"position {waiting[run.id]} in the queue"
        elif progress.get("total_step"):
            where = f"step {progress.get('step') or 0:,} of {progress['total_step']:,}"
        else:
            where = "starting"
        c1.markdown(f"{md(run_label(info))} · **{md(info.state)}** · {where}")
        if c2.button("Cancel", key=f"cancel_{run.id}", help="Stops it after its current step; work since its last checkpoint is lost (see the Runs page)"):
            state = launcher.cancel(run.path)
            st.toast(f"{run.id}: {'cancelled' if state == 'cancelled' else 'cancel requested; it stops after the current step'}")


active_panel()
