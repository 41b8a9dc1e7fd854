"""The README's self-study command works: `.venv/bin/jupyter lab` (and `jupyter notebook`).

A learner working alone starts JupyterLab from the project's environment. These tests start the
real server on a free localhost port, with no browser, and check that it serves the lab page and
knows a Python kernel that can import sanity_lib.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 180  # a cold start on a loaded 2-core machine can take a while


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, ""


@pytest.mark.parametrize("command", ["jupyter-lab", "jupyter-notebook", "jupyter-nbconvert",
                                     "nbgrader"])
def test_the_setup_installs_the_jupyter_commands(command):
    exe = BIN / command
    assert exe.exists(), (f"{exe} is missing: `make setup` must install it (pyproject.toml's "
                          "dev extra)")
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def lab_server(tmp_path):
    """A real `jupyter lab` on a free localhost port, stopped at the end of the test."""
    port = _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "jupyter"), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.port_retries=0",
         f"--ServerApp.root_dir={ROOT}"]
        # CI runs as root, where Jupyter refuses to start without this flag.
        + (["--allow-root"] if os.geteuid() == 0 else []),
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail("jupyter lab exited at start:\n" + (tmp_path / "lab.log").read_text())
            try:
                status, _ = _get(base + "/api/status")
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within {START_TIMEOUT_S} s:\n"
                            + (tmp_path / "lab.log").read_text())
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_jupyter_lab_serves_the_lab_and_a_python_kernel(lab_server):
    status, page = _get(lab_server + "/lab")
    assert status == 200 and "JupyterLab" in page
    status, text = _get(lab_server + "/api/kernelspecs")
    assert status == 200
    specs = json.loads(text)["kernelspecs"]
    assert "python3" in specs, f"no python3 kernel; found {sorted(specs)}"
    # The exercise notebooks open from the lab's file browser.
    status, text = _get(lab_server + "/api/contents/exercises")
    assert status == 200
    names = {item["name"] for item in json.loads(text)["content"]}
    assert any(name.endswith(".ipynb") for name in names), names


def test_the_lab_kernel_imports_sanity_lib():
    # The kernel the lab starts is this environment's Python: it must see the library.
    proc = subprocess.run([str(BIN / "jupyter"), "kernelspec", "list", "--json"],
                          capture_output=True, text=True, timeout=120)
    spec = json.loads(proc.stdout)["kernelspecs"]["python3"]["spec"]
    python = spec["argv"][0]
    if python in ("python", "python3"):
        python = str(BIN / python)
    check = subprocess.run([python, "-c", "import sanity_lib; print(sanity_lib.__version__)"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
