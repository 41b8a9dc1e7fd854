"""The built book in a real browser (Debian's headless Chromium, driven by Selenium).

Every page loads with no console error and no request leaving the site; math renders; on each
explorer page moving the slider changes the image shown, with no kernel behind the page;
exercise and solution dropdowns open. Screenshots of the pages land in
``test-artifacts/screenshots/`` for a person to look at.
"""
import functools
import http.server
import json
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from conftest import HTML, ROOT, toc_files

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
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "Chromium is missing: run tools/ensure_chromium.sh"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-sync",
                 "--disable-component-update", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(browser, url):
    browser.get_log("performance")  # drop what earlier pages logged
    browser.get_log("browser")
    browser.get(url)
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    time.sleep(1.0)  # let require.js, MathJax and the widget manager finish


def _requested_urls(browser):
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _screenshot(browser, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))


@pytest.mark.parametrize("page", toc_files())
def test_page_loads_offline_without_console_errors(site, browser, page):
    _open(browser, f"{site}/{page}.html")
    _screenshot(browser, page)
    host = urlparse(site).netloc
    outside = [u for u in _requested_urls(browser)
               if urlparse(u).scheme not in LOCAL_SCHEMES and urlparse(u).netloc != host]
    assert not outside, f"{page}.html requests files from other hosts: {outside[:5]}"
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"{page}.html logs console errors: {errors[:5]}"


def test_math_renders(site, browser):
    _open(browser, f"{site}/intro.html")
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "mjx-container"))
    rendered = browser.find_elements(By.CSS_SELECTOR, "mjx-container")
    assert len(rendered) >= 5, "MathJax did not typeset the notation table"
    raw = browser.find_element(By.TAG_NAME, "article").text
    assert "\\odot" not in raw, "TeX source is still visible: MathJax did not run"
