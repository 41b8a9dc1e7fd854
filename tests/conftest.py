"""Shared fixtures: the built book (built once per test session, as `make book` does), and a
real `jupyter lab` server for the self-study tests."""
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
HTML = BOOK / "_build" / "html"


def toc_files():
    """Every page of the book, in the table of contents' order."""
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def chapter_files():
    return [f for f in toc_files() if re.match(r"ch\d\d_", f)]


@pytest.fixture(scope="session")
def built_book():
    """Build the book with `jupyter-book build book -n -W --keep-going`; return the build log."""
    subprocess.run([sys.executable, str(ROOT / "tools" / "vendor_web_assets.py")], check=True)
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(BOOK), "-n", "-W", "--keep-going"],
                          capture_output=True, text=True, cwd=ROOT)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, "the book build failed:\n" + log[-8000:]
    return log


# ----------------------------------------------------------------------------- jupyter lab

LAB_START_TIMEOUT_S = 180  # a cold start on a loaded 2-core machine can take a while


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; an HTTP error gives its status and an empty body."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, ""


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _offline_lab_settings(home: Path) -> dict:
    """Jupyter folders under ``home`` that make the lab start clean and stay offline.

    Own config, runtime, settings and workspaces folders (nothing left over from the
    learner's own lab); no news feed, no update check and no PyPI extension manager, so the
    lab makes no request to the internet. Returns the environment variables to set.
    """
    config = home / "config"
    # Server side: the news handler fetches nothing, the update checker never asks PyPI.
    _write_json(config / "jupyter_server_config.json", {"LabApp": {
        "news_url": None,
        "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "extension_manager": "readonly"}})
    # Page side: the announcements plugin (the "receive official Jupyter news?" toast) is off.
    _write_json(config / "labconfig" / "page_config.json",
                {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    settings = home / "user-settings"
    # Every cell stays attached to the page, so a test sees all of them, not only those on
    # screen.
    core = settings / "@jupyterlab"
    _write_json(core / "notebook-extension" / "tracker.jupyterlab-settings",
                {"windowingMode": "none"})
    _write_json(core / "apputils-extension" / "notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False})
    return {"JUPYTER_CONFIG_DIR": str(config), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}


@contextlib.contextmanager
def running_jupyter_lab(home: Path, root_dir: Path):
    """A real `jupyter lab` of this environment on a free localhost port, with no token and no
    browser, serving ``root_dir``; its config, settings, workspaces and log (``lab.log``) live
    in ``home``. Yields the base URL; the server is stopped on the way out, whatever happened.
    """
    port = free_port()
    env = {**os.environ, **_offline_lab_settings(home)}
    log_path = home / "lab.log"
    command = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser",
               f"--port={port}", "--ip=127.0.0.1", "--ServerApp.token=",
               "--ServerApp.password=", "--ServerApp.port_retries=0",
               f"--ServerApp.root_dir={root_dir}"]
    # CI runs as root, where Jupyter refuses to start without this flag.
    command += ["--allow-root"] if os.geteuid() == 0 else []
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=root_dir)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + LAB_START_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    pytest.fail("jupyter lab exited at start:\n" + log_path.read_text())
                try:
                    if http_get(base + "/api/status")[0] == 200:
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer within {LAB_START_TIMEOUT_S} s:\n"
                                + log_path.read_text())
                time.sleep(0.5)  # polling interval, not a correctness condition
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ----------------------------------------------------------------------------- the browser
_CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                   "--no-first-run", "--disable-background-networking", "--disable-sync",
                   "--disable-component-update", "--disable-dev-shm-usage")


@contextlib.contextmanager
def headless_chromium(width: int = 1280, height: int = 1600, page_load_s: float = 60,
                      script_s: float = 30):
    """Debian's headless Chromium under Selenium, logging the console and the network (for
    :func:`requested_urls`); offline: no background networking, updates or sync."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "Chromium is missing: run tools/ensure_chromium.sh"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*_CHROMIUM_FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_page_load_timeout(page_load_s)
        driver.set_script_timeout(script_s)
        yield driver
    finally:
        driver.quit()


def requested_urls(browser) -> list:
    """Every URL the page asked for since the performance log was last read."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls
