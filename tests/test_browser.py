"""The built book in a real browser (Debian's headless Chromium, driven by Selenium).

Every page loads with no console error and no request leaving the site; math renders; on each
explorer page moving the slider changes the image shown, with no kernel behind the page;
exercise and solution dropdowns open. Screenshots of the pages land in
``test-artifacts/screenshots/`` for a person to look at.
"""
import functools
import http.server
import json
import re
import threading
import urllib.request
from urllib.parse import urlparse

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from conftest import HTML, ROOT, headless_chromium, requested_urls, toc_files

SHOTS = ROOT / "test-artifacts" / "screenshots"
LOCAL_SCHEMES = {"data", "blob", "about", "chrome-extension"}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(built_book):
    """Serve book/_build/html on a loopback port, as a classroom server would."""
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    with headless_chromium(1280, 1600, page_load_s=60, script_s=30) as driver:
        yield driver


# True once the widget manager has drawn every widget view the page holds (it puts a
# div.widget-subarea with the view in it before each view's script tag); pages without widgets
# are done at once.
_WIDGETS_DRAWN = """
const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
return Array.from(views).every((tag) => {
  const area = tag.previousElementSibling;
  return area && area.classList.contains("widget-subarea") && area.childElementCount > 0;
});
"""
# Wait for every font the drawn page asked for (the widgets' icon fonts among them), so a
# missing font is logged on this page and not on the next one.
_FONTS_LOADED = """
const done = arguments[arguments.length - 1];
void document.body.offsetHeight;  // lay the page out, so the fonts it needs are asked for
document.fonts.ready.then(() => done(document.fonts.status), (e) => done("error: " + e));
"""


def _open(browser, url):
    """Load ``url`` and wait, on events rather than a clock, until require.js, the widget
    manager and the fonts are done."""
    browser.get_log("performance")  # drop what earlier pages logged
    browser.get_log("browser")
    browser.get(url)
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(_WIDGETS_DRAWN),
                                     f"{url}: the widget manager did not draw every widget")
    status = browser.execute_async_script(_FONTS_LOADED)
    assert status == "loaded", f"{url}: fonts did not finish loading ({status})"


def _screenshot(browser, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))


@pytest.mark.parametrize("page", toc_files())
def test_page_loads_offline_without_console_errors(site, browser, page):
    _open(browser, f"{site}/{page}.html")
    _screenshot(browser, page)
    host = urlparse(site).netloc
    outside = [u for u in requested_urls(browser)
               if urlparse(u).scheme not in LOCAL_SCHEMES and urlparse(u).netloc != host]
    assert not outside, f"{page}.html requests files from other hosts: {outside[:5]}"
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"{page}.html logs console errors: {errors[:5]}"


def _widget_bundle_assets(bundle):
    """The folders the widget bundle's AMD modules resolve their public path to, and the
    hashed files (fonts, icons) it loads from there."""
    source = bundle.read_text()
    modules = sorted(set(re.findall(r'define\("(@jupyter-widgets/[^"]+)"', source)))
    assets = sorted(set(re.findall(r'\.p\+"([0-9a-f]{20}\.\w+)"', source)))
    return sorted({name.rsplit("/", 1)[0] for name in modules}), assets


def test_every_file_the_widget_bundle_asks_for_is_served(built_book):
    """Which module's stylesheet the browser applies first decides the folder the icon fonts are
    asked for in, so check every folder, not only the one a page load happened to use."""
    folders, assets = _widget_bundle_assets(HTML / "vendor" / "html-manager" / "embed-amd.js")
    assert {"@jupyter-widgets", "@jupyter-widgets/html-manager/dist"} <= set(folders), folders
    assert any(a.endswith(".woff2") for a in assets), "found no fonts in the widget bundle"
    missing = [f"{folder}/{asset}" for folder in folders for asset in assets
               if not (HTML / folder / asset).is_file()]
    assert not missing, f"the built site lacks files the widget manager loads: {missing[:5]}"


def test_math_renders(site, browser):
    _open(browser, f"{site}/intro.html")
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "mjx-container"))
    rendered = browser.find_elements(By.CSS_SELECTOR, "mjx-container")
    assert len(rendered) >= 5, "MathJax did not typeset the notation table"
    raw = browser.find_element(By.TAG_NAME, "article").text
    assert "\\odot" not in raw, "TeX source is still visible: MathJax did not run"


EXPLORER_PAGES = [name for name in toc_files()
                  if "sl.course.widgets." in (ROOT / "book" / f"{name}.md").read_text()]
DROPDOWN_PAGES = [name for name in toc_files()
                  if ":class: dropdown" in (ROOT / "book" / f"{name}.md").read_text()]


_DIGEST_IMAGES = """
const [images, done] = arguments;
Promise.all(images.map(async (img) => {
  const bytes = await (await fetch(img.src)).arrayBuffer();
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
})).then(done, (error) => done("error: " + error));
"""


def _shown_images(browser, root):
    """SHA-256 of each image inside ``root`` that the reader can see right now. (The widget
    manager gives an image a new blob: URL each time it draws it, so compare the bytes.)"""
    shown = [img for img in root.find_elements(By.TAG_NAME, "img") if img.is_displayed()]
    digests = browser.execute_async_script(_DIGEST_IMAGES, shown)
    assert not isinstance(digests, str), f"could not read the explorer's images: {digests}"
    return sorted(digests)


def test_every_explorer_page_was_found():
    # The three explorers the course promises: EfficientNet and MNIST cascading, Gaussian noise.
    assert {"ch03_model_randomization", "ch06_gaussian_noise"} <= set(EXPLORER_PAGES)


@pytest.mark.parametrize("page", EXPLORER_PAGES)
def test_moving_an_explorer_slider_changes_the_map(site, browser, page):
    """Press the right arrow on each explorer's first slider, as a keyboard user would, with
    no kernel behind the page: the picture shown must change, and change back with the left
    arrow."""
    _open(browser, f"{site}/{page}.html")
    WebDriverWait(browser, 60).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".widget-slider .noUi-handle"))
    explorers = [box for box in browser.find_elements(By.CSS_SELECTOR, ".cell_output .widget-vbox")
                 if box.find_elements(By.CSS_SELECTOR, ".noUi-handle")
                 and not box.find_elements(By.XPATH, "ancestor::div[contains(@class,'widget-vbox')]")]
    assert explorers, f"{page}.html shows no explorer with a slider"
    for number, explorer in enumerate(explorers):
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", explorer)
        before = _shown_images(browser, explorer)
        assert before, f"explorer {number} on {page}.html shows no image"
        handle = explorer.find_elements(By.CSS_SELECTOR, ".noUi-handle")[0]
        handle.send_keys(Keys.ARROW_RIGHT)
        WebDriverWait(browser, 10).until(lambda d: _shown_images(browser, explorer) != before,
                                         f"explorer {number} on {page}.html: the slider moved "
                                         "but the image did not change")
        handle.send_keys(Keys.ARROW_LEFT)
        WebDriverWait(browser, 10).until(lambda d: _shown_images(browser, explorer) == before,
                                         f"explorer {number} on {page}.html: back at the first "
                                         "step, the first image did not come back")
    _screenshot(browser, f"{page}-explorer")


@pytest.mark.parametrize("page", DROPDOWN_PAGES)
def test_exercise_and_solution_dropdowns_open(site, browser, page):
    _open(browser, f"{site}/{page}.html")
    dropdowns = browser.find_elements(By.CSS_SELECTOR, ".admonition.toggle")
    assert dropdowns, f"{page}.html has no collapsible admonition"
    solutions = [d for d in dropdowns if "solution" in d.get_attribute("class")]
    assert solutions, f"{page}.html has no collapsible solution"
    for box in dropdowns:
        body = [el for el in box.find_elements(By.XPATH, "./*")
                if "admonition-title" not in (el.get_attribute("class") or "")]
        assert "toggle-hidden" in box.get_attribute("class"), "a dropdown starts open"
        assert not any(el.is_displayed() for el in body), "a closed dropdown shows its body"
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
        box.find_element(By.CSS_SELECTOR, "button.toggle-button").click()
        name = box.get_attribute("id") or box.text[:40]
        WebDriverWait(browser, 5).until(
            lambda d: "toggle-hidden" not in box.get_attribute("class")
            and any(el.is_displayed() and el.text.strip() for el in body),
            f"dropdown {name!r} on {page}.html did not open or shows nothing")
    _screenshot(browser, f"{page}-dropdowns-open")


@pytest.mark.parametrize("page", [p for p in toc_files() if re.match(r"ch\d\d_", p)])
def test_chapter_offers_its_notebook_and_exercises_for_download(site, browser, page):
    _open(browser, f"{site}/{page}.html")
    links = {a.get_attribute("href") for a in
             browser.find_elements(By.CSS_SELECTOR, ".dropdown-download-buttons a")}
    wanted = {f"{site}/_sources/{page}.ipynb": "the chapter notebook",
              f"{site}/exercises/{page}.ipynb": "the exercise notebook"}
    for url, what in wanted.items():
        assert url in links, f"{page}.html offers no download of {what}: {sorted(links)}"
        with urllib.request.urlopen(url) as response:
            notebook = json.loads(response.read())
        assert notebook["nbformat"] == 4 and notebook["cells"], f"{url} is not a notebook"
