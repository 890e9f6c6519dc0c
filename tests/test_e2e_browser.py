"""End to end in a real headless browser: the live app, a real (short) quickstart run, every page.

Starts ``streamlit run app.py`` on a free localhost port with a temporary runs folder, and drives
Debian's Chromium through Playwright (``executable_path=/usr/bin/chromium``; Playwright's own
browser download does not work offline). The test:

1. fills in a short quickstart run on the Train page and launches it with a double click: exactly
   one run is queued, and the page warns that an identical run is already queued;
2. watches the Runs page draw the rank heat map and its allocation count grow, without reloading;
3. kills the whole app (SIGKILL to its process group) while the run trains, checks the training
   process lives on, restarts the app and finds the run still there and still updating;
4. pastes sequences on Predict and reads a probability (a FASTA header written as a markdown link
   and image stays text: no link, no image in the page); opens Attribute and sees the heat map;
   scores the same sequences on Panel, sees the heat map with each task's test metrics, and clicks a
   cell, which opens Attribute with that sequence filled in;
5. checks that the favicon is served by the app itself (no font CDN, which fails offline);
6. with ``LINGO_SCREENSHOTS=1``, saves a screenshot of every page under ``test-artifacts/screenshots/``
   (with ``LINGO_UPDATE_SCREENSHOTS=1`` also into ``docs/img/`` for the documentation); without, the
   pictures are skipped (about 30 s of the test on 2 cores) and only a failure is photographed. With
   ``LINGO_SCREENSHOT_RUN=/path/to/a/finished/quickstart/run`` the Runs, Predict, Attribute and
   Compare pictures show that run (a model that learnt) instead of the test's 8-step run.

Skipped with a message when Chromium or Playwright is missing (``.ci/run`` installs both).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

import pytest

from lingo_core import runs
from lingo_core.data import list_benchmarks

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("LINGO_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "screenshots"
DOCS_IMG = PROJECT_ROOT / "docs" / "img"
RUN_TIMEOUT_S = 420  # the short run on a busy 2-core machine
SEQUENCE = "GCGTACCTATAAAAGCGTTACGACGGTCCAATCGATCGTACGTTAGCATCGATCG"
INJECTED = "[click](http://evil.example/x)![img](http://evil.example/i.png)"  # a FASTA header that must stay text
SHOWCASE = os.environ.get("LINGO_SCREENSHOT_RUN")  # a finished quickstart run for the documentation's pictures
SCREENSHOTS = os.environ.get("LINGO_SCREENSHOTS") == "1" or os.environ.get("LINGO_UPDATE_SCREENSHOTS") == "1"

if not Path(CHROMIUM).exists():
    pytest.skip(f"Chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium` (.ci/run does)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright missing: pip install playwright==1.65.2")
pytestmark = pytest.mark.runs_first  # the suite's longest test (about 1 minute on 2 cores, mostly waiting on the app)


# -- the app process --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class App:
    """``streamlit run app.py`` in its own process group, on a free localhost port."""

    def __init__(self, runs_dir: Path, log: Path) -> None:
        self.runs_dir, self.log = runs_dir, log
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0

    def start(self) -> "App":
        self.port = free_port()
        env = dict(os.environ, LINGO_RUNS_DIR=str(self.runs_dir), LINGO_MAX_PARALLEL="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port), "--server.headless", "true"],
                cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"the app did not start; see {self.log}:\n{self.log.read_text()[-3000:]}")

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def kill(self) -> None:
        """SIGKILL the app's whole process group (what a crash or `kill -9` does)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.fixture
def app_and_runs(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    app = App(runs_dir, ARTIFACTS / "streamlit.log").start()
    yield app, runs_dir
    app.kill()
    for run in runs.list_runs(runs_dir):  # never leave a training process behind
        pid = run.status.get("pid") or run.status.get("launch_pid")
        if run.state in ("running", "queued") and runs.pid_alive(pid):
            os.kill(int(pid), signal.SIGKILL)


# -- browser helpers ------------------------------------------------------------------------------------------------
def settle(page, timeout_s: float = 90) -> None:
    """Wait until the app has finished its current script run."""
    time.sleep(0.4)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=stStatusWidget]')?.innerText?.includes('Running')",
        timeout=timeout_s * 1000,
    )


def set_number(page, label: str, value) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    settle(page)


def pick(page, key: str, option: str) -> None:
    """Choose ``option`` in the selectbox with widget key ``key``."""
    page.locator(f".st-key-{key}").click()
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)


def widget_shows(page, key: str) -> Optional[str]:
    """What the browser shows in the widget with key ``key``: a field's or selectbox's value, or a radio's
    checked option; None while the page redraws it (an old and a new copy at once)."""
    widget = page.locator(f".st-key-{key}")
    if widget.count() != 1:
        return None
    if widget.locator("input[type=radio]").count():
        checked = widget.locator("input[type=radio]:checked")
        return checked.first.evaluate("e => e.closest('label').innerText").strip() if checked.count() == 1 else None
    inputs = widget.locator("input")
    return inputs.first.input_value() if inputs.count() == 1 else None


def screenshot(page, name: str) -> Optional[Path]:
    """A picture of the whole page (Streamlit scrolls inside its main area: grow the viewport), when asked."""
    if not SCREENSHOTS:
        return None
    from PIL import Image

    height = 0
    for _ in range(4):  # grow until the content fits (plots re-lay out at each size)
        needed = int(min(max(page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight"), 800), 6000))
        if needed <= height:
            break
        height = needed
        page.set_viewport_size({"width": 1280, "height": height})
        time.sleep(1.0)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1280, "height": 900})
    with Image.open(path) as image:  # keep the files small: 1000 px wide, 128 colours
        small = image.convert("RGB").resize((1000, round(image.height * 1000 / image.width)), Image.LANCZOS)
        small.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    if os.environ.get("LINGO_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMG / path.name)
    return path


def allocations_shown(page) -> int:
    """The allocation count the Runs page shows (0 before the first allocation)."""
    try:
        text = page.get_by_text(re.compile(r"^\d+ allocations?\b")).first.inner_text(timeout=2000)
    except sync_api.Error:  # not drawn yet, or replaced while the fragment redraws
        return 0
    return int(text.split()[0])


def demo_examples() -> dict[str, str]:
    """The first test sequences of each kind of the demo task (not chosen by how the model scores
    them): two positives (a TATA box, then a CCAAT box, each in its window), two with no motif, and
    a hard negative with the two motifs swapped; ids say which is which."""
    from lingo_core.config import load_config
    from lingo_core.data import load_task

    test = load_task(load_config(PROJECT_ROOT / "configs" / "quickstart.yaml").data).test
    kinds = {
        "positive": lambda i: test.labels[i] == 1,
        "no_motif": lambda i: test.labels[i] == 0 and not test.motifs[i],
        "swapped_motifs": lambda i: test.labels[i] == 0 and len(test.motifs[i]) == 2,
    }
    out = {}
    for kind, count in (("positive", 2), ("no_motif", 2), ("swapped_motifs", 1)):
        found = [i for i in range(len(test)) if kinds[kind](i)][:count]
        out.update({f"{kind}_{n + 1}" if count > 1 else kind: test.sequences[i] for n, i in enumerate(found)})
    return out


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 1.0):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


# -- the test ---------------------------------------------------------------------------------------------------------
def test_quickstart_run_live_in_the_browser(app_and_runs, tmp_path):
    app, runs_dir = app_and_runs
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
            viewport={"width": 1280, "height": 900},
        )
        page = browser.new_page()
        page.set_default_timeout(120_000)
        try:
            _run_flow(page, app, runs_dir)
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "failure.png"))
            raise
        finally:
            browser.close()


def step(text: str) -> None:
    """Progress notes: pytest shows them when the test fails, so the failing stage is clear."""
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def _run_flow(page, app: App, runs_dir: Path) -> None:
    # -- Train: a short quickstart run (embedded model, demo task, ARS) ----------------------------------
    step("open Train")
    page.goto(f"{app.url}/train")
    page.get_by_text("Trainable parameters").first.wait_for()
    assert page.locator(".lingo-token").count() > 10  # the token preview
    # "Start from" sets what the browser shows, not only what the server reads (a keyed widget keeps
    # its value in the browser unless the session state sets it)
    step("start from the LoRA promoter config, then from the quickstart again")
    data_here = {row["name"] for row in list_benchmarks() if row["available"]}
    pick(page, "train_start_from", "gue_prom_core_tata_lora")
    lora = {"train_seq_mode": "nucleotide", "train_epochs": "4.00", "train_domain": "DNA Promoter"}
    if "gue/prom_core_tata" in data_here:
        lora["train_task"] = "gue/prom_core_tata"
    wait_for(lambda: {key: widget_shows(page, key) for key in lora} == lora, 90, f"the LoRA config's fields {lora}")
    pick(page, "train_start_from", "quickstart")
    quickstart = {"train_seq_mode": "native", "train_epochs": "2.00", "train_domain": "", "train_task": "demo/motifs"}
    wait_for(lambda: {key: widget_shows(page, key) for key in quickstart} == quickstart, 90, f"the quickstart's fields {quickstart}")
    page.get_by_text("Trainable parameters").first.wait_for()
    for label, value in [
        ("Max training sequences (0 = all; stratified subsample)", 64),
        ("Max dev/test sequences each (0 = all)", 32),
        ("deltaT (steps between allocations)", 1),
        ("Batch size", 8),
        ("Max optimizer steps (0 = no cap)", 8),
        ("Evaluate dev every N steps (0 = 4 per epoch)", 4),
    ]:
        set_number(page, label, value)
    page.get_by_text("Planned total rank budget").first.wait_for()
    page.get_by_text("Queued and running").first.wait_for()
    page.get_by_text("Estimated time on this machine").first.wait_for()
    icons = page.evaluate("[...document.querySelectorAll('link[rel~=icon]')].map(link => link.href)")
    assert icons and all(href.startswith(app.url) or href.startswith("data:") for href in icons), icons  # served here, no CDN
    screenshot(page, "train")
    step("launch (a double click)")
    page.locator(".st-key-train_launch button").dblclick()
    page.get_by_text("Launched").first.wait_for()
    page.get_by_text(re.compile(r"already (queued|running)")).first.wait_for()  # the same settings again: a warning, not a second run
    settle(page)
    [run] = runs.list_runs(runs_dir)
    assert run.config["train"]["max_steps"] == 8
    assert page.locator(".st-key-train_launch button").is_disabled()

    # -- Runs: the heat map appears and keeps updating while the run trains -------------------------------
    step("open Runs")
    page.get_by_role("link", name="Watch it on the Runs page").first.click()
    page.locator(".st-key-runs_heatmap .js-plotly-plot").first.wait_for(timeout=RUN_TIMEOUT_S * 1000)
    first = wait_for(lambda: allocations_shown(page), 60, "the allocation count")
    step(f"heat map drawn: {first} allocation(s), run {runs.load_run(run.path).state}")

    # -- kill the app while the run trains; the run goes on and is there after a restart ------------------
    step("kill and restart the app")
    status = runs.load_run(run.path).status
    if status["state"] == "running":
        app.kill()
        time.sleep(2)
        # alive, or it finished its last steps in those 2 s (then it is done, not left 'running' by a dead pid)
        state_after = runs.load_run(run.path).state
        assert runs.pid_alive(status["pid"]) or state_after == "done", "the training process died with the app"
        assert state_after in ("running", "done")
        app.start()
        page.goto(f"{app.url}/runs?run={run.id}")
        page.locator(".st-key-runs_heatmap .js-plotly-plot").first.wait_for()
    step("watch the heat map update")
    wait_for(lambda: allocations_shown(page) > first or runs.load_run(run.path).state == "done", RUN_TIMEOUT_S, "the heat map to update")
    wait_for(lambda: runs.load_run(run.path).state in ("done", "failed"), RUN_TIMEOUT_S, "the run to finish")
    step("run finished")
    final = runs.load_run(run.path)
    assert final.state == "done", final.status.get("error")
    # the page redraws itself once the run has ended: report shown, polling stopped
    page.get_by_text("Report (test metrics of the dev-selected checkpoint)").first.wait_for()
    wait_for(lambda: page.get_by_text("checks the run every").count() == 0, 60, "the page to stop polling")
    settle(page)
    # every allocation is drawn (more than at first unless the 8-step run had already made them all then)
    assert allocations_shown(page) == len(final.ranks()) >= first
    shown = run
    if SHOWCASE:  # the documentation's pictures: a run that learnt
        step(f"showcase run {SHOWCASE}")
        target = runs_dir / Path(SHOWCASE).name
        shutil.copytree(SHOWCASE, target)
        shown = runs.load_run(target)
        assert shown.state == "done" and not shown.damage, shown.damage
        page.goto(f"{app.url}/runs?run={shown.id}")
        page.get_by_text("Report (test metrics of the dev-selected checkpoint)").first.wait_for()
        page.locator(".st-key-runs_heatmap .js-plotly-plot").first.wait_for()
        settle(page)
    screenshot(page, "runs")

    # -- Predict: paste a sequence, read a probability ---------------------------------------------------
    step("Predict")
    page.goto(f"{app.url}/predict?run={run.id}")
    box = page.get_by_label(re.compile(r"^Sequences: one per line, or FASTA"))
    box.fill(f">{INJECTED}\n{SEQUENCE}\n")
    box.press("Control+Enter")
    settle(page)
    page.locator(".st-key-predict_go button").click()
    page.locator(".st-key-predict_download").first.wait_for()
    settle(page)
    assert page.get_by_text("evil.example/x)![img](", exact=False).count() >= 1  # the header, as typed
    assert page.locator("a[href*='evil.example']").count() == 0 and page.locator("img[src*='evil.example']").count() == 0
    page.goto(f"{app.url}/predict?run={shown.id}")
    box = page.get_by_label(re.compile(r"^Sequences: one per line, or FASTA"))
    examples = demo_examples()
    box.fill("".join(f">{name}\n{sequence}\n" for name, sequence in examples.items()))
    box.press("Control+Enter")
    settle(page)
    page.locator(".st-key-predict_go button").click()
    line = page.get_by_text(re.compile(r"positive_1: predicted")).first
    line.wait_for()
    probability = float(re.search(r"P\(positive\) = ([0-9.]+)", line.inner_text()).group(1))
    assert 0.0 <= probability <= 1.0
    page.locator(".st-key-predict_download").first.wait_for()
    screenshot(page, "predict")

    # -- Attribute: the per-nucleotide heat map -------------------------------------------------------------
    step("Attribute")
    page.goto(f"{app.url}/attribute?run={shown.id}")
    box = page.get_by_label("One DNA sequence (raw or FASTA; the first record is used)")
    box.fill(f">positive_1\n{examples['positive_1']}\n")
    box.press("Control+Enter")
    settle(page)
    page.locator(".st-key-attr_go button").click()
    page.locator(".st-key-attr_heatmap .js-plotly-plot").first.wait_for()
    page.get_by_text("Prompt share of |IG|").first.wait_for()
    assert page.locator(".st-key-attr_heatmap").get_by_text("per-nucleotide attribution", exact=False).count() >= 1
    page.locator(".st-key-attr_csv").first.wait_for()  # the last element: everything above is drawn
    page.wait_for_function("() => [...document.images].every(image => image.complete)")  # the logo
    settle(page)
    screenshot(page, "attribute")

    # -- Panel: every finished task at once; a click on a cell opens Attribute ---------------------------------
    step("Panel")
    page.goto(f"{app.url}/panel")
    box = page.get_by_label(re.compile(r"^Sequences: one per line, or FASTA"))
    box.fill("".join(f">{name}\n{sequence}\n" for name, sequence in examples.items()))
    box.press("Control+Enter")
    settle(page)
    page.locator(".st-key-panel_go button").click()
    page.locator(".st-key-panel_heatmap .js-plotly-plot").first.wait_for()
    page.locator(".st-key-panel_download").first.wait_for()
    assert page.locator(".st-key-panel_heatmap").get_by_text("MCC", exact=False).count() >= 1  # each column's test metrics
    settle(page)
    screenshot(page, "panel")
    step("click a cell of the heat map")
    page.locator(".st-key-panel_heatmap").scroll_into_view_if_needed()
    cell = page.locator(".st-key-panel_heatmap .scatterlayer .point").first  # an invisible marker on the first cell
    box_ = wait_for(lambda: cell.bounding_box(), 30, "the heat map's cells")
    x, y = box_["x"] + box_["width"] / 2, box_["y"] + box_["height"] / 2
    page.mouse.move(x, y)
    time.sleep(0.5)  # plotly picks the hovered point on mouse move
    page.mouse.click(x, y)
    page.get_by_text("Opened from the Panel").first.wait_for()
    assert "/attribute" in page.url
    first_name = next(iter(examples))
    text = page.get_by_label("One DNA sequence (raw or FASTA; the first record is used)").input_value()
    assert text == f">{first_name}\n{examples[first_name]}", text
    settle(page)

    # -- Compare and Home -----------------------------------------------------------------------------------
    step("Compare")
    page.goto(f"{app.url}/compare")
    page.locator(".st-key-compare_metrics .js-plotly-plot").first.wait_for()
    page.locator(f".st-key-compare_pattern_{shown.id} .js-plotly-plot").first.wait_for()
    screenshot(page, "compare")
    step("Home")
    page.goto(f"{app.url}/")
    page.get_by_text("Runs so far").first.wait_for()
    settle(page)
    screenshot(page, "home")
