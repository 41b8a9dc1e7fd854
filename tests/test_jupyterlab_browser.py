"""Self-study works in real JupyterLab, driven through its user interface in headless Chromium.

A learner opens an exercise notebook in `jupyter lab`, fills in the exercises and runs it. This
module does the same with chapter 6 (Gaussian noise: cheap, and it has a live noise explorer):

* it writes the student notebook of ``exercises/`` with every code cell answered as in
  ``solutions/`` into a temporary folder, the root of a real JupyterLab server (offline: no
  news, no update check, a clean workspace) using this environment's ``python3`` kernel;
* opens it in headless Chromium, waits for the kernel, clicks Run -> Run All Cells and waits
  until every cell has run;
* checks, in the page, that every ``sl.grading.check(...)`` cell printed its success message
  and that no cell shows an error (and, after File -> Save Notebook, that the saved notebook
  holds no error output either);
* checks that the live noise explorer rendered its images and redraws them, with the kernel
  behind it, when its sliders move by the arrow keys, and comes back when moved back;
* checks that the page requested nothing from another host.

Screenshots land in ``test-artifacts/screenshots/jupyterlab/``. The first run on a machine
trains the two MNIST networks the chapter uses (cached by sanity_lib afterwards), so every
wait is generous and waits for a condition, never for a fixed time.
"""
import json
import re
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ROOT, headless_chromium, http_get, requested_urls, running_jupyter_lab

pytestmark = pytest.mark.slow

CHAPTER = "ch06_gaussian_noise"
FOLDER = "self-study"            # the notebook's folder under the lab's root
SHOTS = ROOT / "test-artifacts" / "screenshots" / "jupyterlab"
PAGE_LOAD_S = 180                # the lab's page and its extensions, on a loaded machine
KERNEL_START_S = 300
RUN_ALL_S = 1800                 # includes training two networks when the cache is cold
SAVE_S = 120
REDRAW_S = 60
SUCCESS = "{}: correct. Well done!"   # what sanity_lib.course.grading.check returns
LOCAL_SCHEMES = {"data", "blob", "about", "chrome-extension"}


# ----------------------------------------------------------------------------- the notebook

def answered_exercise_notebook(chapter: str) -> nbformat.NotebookNode:
    """The student notebook of ``chapter`` with every code cell written as in the solution:
    what a learner has after doing all the exercises. Markdown cells stay the student's."""
    exercise = nbformat.read(ROOT / "exercises" / f"{chapter}.ipynb", as_version=4)
    solution = nbformat.read(ROOT / "solutions" / f"{chapter}.ipynb", as_version=4)
    header, *cells = exercise.cells
    assert "How to work on this notebook" in header.source, "the exercise header moved"
    assert [c.cell_type for c in cells] == [c.cell_type for c in solution.cells], \
        f"exercises/{chapter}.ipynb no longer matches solutions/ cell by cell"
    for mine, answer in zip(cells, solution.cells):
        if mine.cell_type == "code":
            mine.source = answer.source
    return exercise


def check_ids(nb) -> list:
    return [m for cell in nb.cells if cell.cell_type == "code"
            for m in re.findall(r'sl\.grading\.check\(\s*"(\w+)"', cell.source)]


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server whose root folder holds the answered notebook; yields
    (base URL, notebook path on disk)."""
    home = tmp_path_factory.mktemp("jupyterlab")
    root = home / "root"
    (root / FOLDER).mkdir(parents=True)
    path = root / FOLDER / f"{CHAPTER}.ipynb"
    nbformat.write(answered_exercise_notebook(CHAPTER), path)
    with running_jupyter_lab(home, root) as base:
        yield base, path


@pytest.fixture(scope="module")
def browser():
    with headless_chromium(1400, 1600, page_load_s=PAGE_LOAD_S, script_s=60) as driver:
        yield driver


@pytest.fixture(scope="module")
def ran_notebook(lab, browser):
    """Open the notebook in the lab, Run All Cells through the menu, wait until every cell has
    run, save it through the menu. Yields the notebook as saved, and every URL the page asked
    for."""
    base, path = lab
    browser.get(f"{base}/lab/tree/{FOLDER}/{CHAPTER}.ipynb")
    n_cells = sum(c.cell_type == "code" for c in nbformat.read(path, as_version=4).cells)
    wait_until(browser, PAGE_LOAD_S, lambda d: len(code_cells(d)) == n_cells,
               "the notebook did not open in JupyterLab")
    wait_until(browser, KERNEL_START_S, lambda d: kernel_status(d) == "idle",
               "the python3 kernel did not start (no 'idle' kernel status)")
    prompts = input_prompts(browser)
    assert all(p == "[ ]:" for p in prompts), f"the notebook opened already run: {prompts}"

    menu(browser, "Run", "Run All Cells")
    wait_until(browser, RUN_ALL_S, run_all_finished, "Run All Cells did not finish")
    screenshot(browser, "notebook-after-run-all")

    before = path.stat().st_mtime_ns
    menu(browser, "File", "Save Notebook")
    wait_until(browser, SAVE_S,
               lambda d: path.stat().st_mtime_ns != before and saved_with_outputs(path),
               "File -> Save Notebook did not write the notebook")
    yield nbformat.read(path, as_version=4), requested_urls(browser)


# ----------------------------------------------------------------------------- page helpers

def wait_until(browser, seconds, condition, message):
    """Poll ``condition(browser)`` until it returns something truthy (returned), for at most
    ``seconds``; elements that JupyterLab re-renders meanwhile are simply polled again."""
    return WebDriverWait(browser, seconds, poll_frequency=1.0,
                         ignored_exceptions=(StaleElementReferenceException,)
                         ).until(condition, message)


def code_cells(browser):
    return browser.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell.jp-CodeCell")


def kernel_status(browser):
    found = browser.find_elements(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator")
    return found[0].get_attribute("data-status") if found else None


def input_prompts(browser):
    return [cell.find_element(By.CSS_SELECTOR, ".jp-InputPrompt").get_attribute("textContent")
            .strip() for cell in code_cells(browser)]


def output_text(cell) -> str:
    return "\n".join(out.get_attribute("textContent") for out in
                     cell.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"))


def shows_an_error(text: str) -> bool:
    """An IPython traceback or error line as JupyterLab renders it (warnings are no error)."""
    return ("Traceback (most recent call last)" in text
            or bool(re.search(r"^\s*\w*(Error|Exception): ", text, re.M)))


def run_all_finished(browser) -> bool:
    """Nothing queued or running, the kernel idle, and every cell numbered -- or a cell failed
    (JupyterLab then drops the rest of the queue), which the tests report."""
    prompts = input_prompts(browser)
    if "[*]:" in prompts or kernel_status(browser) != "idle":
        return False
    return (all(re.fullmatch(r"\[\d+\]:", p) for p in prompts)
            or any(shows_an_error(output_text(c)) for c in code_cells(browser)))


def menu(browser, title, label):
    """Click ``title`` in the menu bar, then its item ``label``, as a user would."""
    def bar_item(d):
        return next((item for item in d.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
                     if item.text.strip() == title), None)

    def entry(d):
        return next((item for item in d.find_elements(By.CSS_SELECTOR, ".lm-Menu li.lm-Menu-item")
                     if item.is_displayed() and "lm-mod-disabled" not in item.get_attribute("class")
                     and item.find_element(By.CSS_SELECTOR, ".lm-Menu-itemLabel").text == label),
                    None)

    wait_until(browser, 60, bar_item, f"no {title!r} menu").click()
    wait_until(browser, 60, entry, f"the {title!r} menu has no enabled {label!r} item").click()


def saved_with_outputs(path: Path) -> bool:
    try:
        nb = nbformat.read(path, as_version=4)
    except (json.JSONDecodeError, nbformat.reader.NotJSONError, OSError):
        return False  # caught mid-write
    return any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


def screenshot(target, name):
    """Save a screenshot of the window (``target`` a driver) or of one element."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    file = str(SHOTS / f"{name}.png")
    target.screenshot(file) if isinstance(target, WebElement) else target.save_screenshot(file)


_DIGEST_IMAGES = """
const [images, done] = arguments;
Promise.all(images.map(async (img) => {
  if (!img.complete || img.naturalWidth === 0) return "not drawn";
  const bytes = await (await fetch(img.src)).arrayBuffer();
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
})).then(done, (error) => done("error: " + error));
"""


def shown_images(browser, root):
    """SHA-256 of each image inside ``root`` that is visible now, "not drawn" for one that has
    not loaded. (The widget manager gives an image a new blob: URL each time it draws it, so
    compare bytes, not URLs.)"""
    shown = [img for img in root.find_elements(By.TAG_NAME, "img") if img.is_displayed()]
    digests = browser.execute_async_script(_DIGEST_IMAGES, shown)
    assert not isinstance(digests, str), f"could not read the explorer's images: {digests}"
    return sorted(digests)


def explorer_of(browser):
    """The outermost ipywidgets box with a slider in the notebook's outputs."""
    boxes = [box for box in browser.find_elements(
                 By.CSS_SELECTOR, ".jp-OutputArea-output .widget-vbox")
             if box.find_elements(By.CSS_SELECTOR, ".noUi-handle")
             and not box.find_elements(By.XPATH, "ancestor::div[contains(@class,'widget-vbox')]")]
    return boxes[0] if boxes else None


def slider(explorer, description):
    """The explorer's slider labelled ``description``: (its handle, the row it sits in, with
    the read-out of the value)."""
    for found in explorer.find_elements(By.CSS_SELECTOR, ".widget-slider"):
        labels = found.find_elements(By.CSS_SELECTOR, ".widget-label")
        if labels and labels[0].get_attribute("textContent").strip() == description:
            return (found.find_element(By.CSS_SELECTOR, ".noUi-handle"),
                    found.find_element(By.XPATH, ".."))
    raise AssertionError(f"the explorer has no slider labelled {description!r}")


def drawn_images(browser, explorer, unlike=None):
    """The explorer's visible image digests once all are drawn (and differ from ``unlike``)."""
    shown = shown_images(browser, explorer)
    ok = shown and "not drawn" not in shown and shown != unlike
    return shown if ok else None


def step(browser, explorer, description, key, shown):
    """Press ``key`` on the slider ``description``; wait until the read-out shows another
    value and another picture is drawn. Returns the new picture's digests."""
    handle, row = slider(explorer, description)
    readout = row.text
    handle.send_keys(key)
    wait_until(browser, REDRAW_S, lambda d: row.text != readout,
               f"{key!r} on the {description!r} slider did not move it (read-out {readout!r})")
    return wait_until(browser, REDRAW_S, lambda d: drawn_images(d, explorer, unlike=shown),
                      f"the {description!r} slider moved to {row.text!r} but the picture did "
                      "not change")


# ----------------------------------------------------------------------------- tests

def test_every_check_passes_and_no_cell_fails(ran_notebook, browser):
    """Every cell ran; every check cell shows "<id>: correct. Well done!"; no error anywhere."""
    saved, _ = ran_notebook
    cells = code_cells(browser)
    sources = [c.source for c in saved.cells if c.cell_type == "code"]
    assert len(cells) == len(sources)
    failed = [(i, output_text(cell)[-1500:]) for i, cell in enumerate(cells)
              if shows_an_error(output_text(cell))]
    assert not failed, f"cells show errors in JupyterLab: {failed}"
    prompts = input_prompts(browser)
    assert all(re.fullmatch(r"\[\d+\]:", p) for p in prompts), f"cells did not run: {prompts}"

    ids = check_ids(saved)
    assert len(ids) >= 3, f"{CHAPTER} has only {ids} checks"
    for exercise_id in ids:
        (cell,) = [cell for cell, src in zip(cells, sources)
                   if f'sl.grading.check("{exercise_id}"' in src]
        assert SUCCESS.format(exercise_id) in output_text(cell), (
            f"the check of {exercise_id} did not print its success message; it shows:\n"
            + output_text(cell)[-1500:])

    # The notebook the learner saves agrees: outputs of every cell, no error among them.
    errors = [(out.ename, out.evalue) for c in saved.cells if c.cell_type == "code"
              for out in c.outputs if out.output_type == "error"]
    assert not errors, f"the saved notebook holds errors: {errors}"
    assert all(c.execution_count for c in saved.cells if c.cell_type == "code")


def test_the_live_noise_explorer_renders_and_redraws(ran_notebook, browser):
    """Walk the noise slider, then the layer slider, to their last step with the right arrow,
    as a keyboard user would: every step must draw another picture. Then walk back with the
    left arrow: the first picture must come back."""
    explorer = wait_until(browser, REDRAW_S, explorer_of, "the noise explorer did not render")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", explorer)
    first = wait_until(browser, REDRAW_S, lambda d: drawn_images(d, explorer),
                       "the explorer drew no image")
    assert len(first) == 2, f"expected the input digit and one map, found {len(first)} images"
    screenshot(browser, "notebook-at-the-explorer")
    screenshot(explorer, "explorer-before")
    n_steps = {name: int(float(slider(explorer, name)[0].get_attribute("aria-valuemax")))
               for name in ("noise", "layer")}
    assert min(n_steps.values()) >= 2, f"the sliders have too few steps: {n_steps}"
    shown = first
    for description, n in n_steps.items():
        for _ in range(n):
            shown = step(browser, explorer, description, Keys.ARROW_RIGHT, shown)
    screenshot(explorer, "explorer-after-moving-the-sliders")
    for description, n in n_steps.items():
        for _ in range(n):
            shown = step(browser, explorer, description, Keys.ARROW_LEFT, shown)
    assert shown == first, "back at the first noise level and layer, the first map is not shown"


def test_the_notebook_ran_on_the_python3_kernel(ran_notebook, lab):
    """The lab ran the notebook on the python3 kernelspec of this environment (whose Python
    imports sanity_lib: the checks above ran in it)."""
    base, _ = lab
    status, text = http_get(base + "/api/sessions")
    assert status == 200
    kernels = {s["path"]: s["kernel"]["name"] for s in json.loads(text)}
    assert kernels.get(f"{FOLDER}/{CHAPTER}.ipynb") == "python3", kernels


def test_the_lab_page_asked_no_other_host(ran_notebook, lab):
    _, urls = ran_notebook
    base, _ = lab
    host = urlparse(base).netloc
    outside = [u for u in urls if urlparse(u).scheme not in LOCAL_SCHEMES
               and urlparse(u).netloc != host]
    assert urls, "the browser logged no request at all"
    assert not outside, f"JupyterLab requested files from other hosts: {outside[:5]}"
