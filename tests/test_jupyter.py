"""The README's self-study command works: `.venv/bin/jupyter lab` (and `jupyter notebook`).

A learner working alone starts JupyterLab from the project's environment. These tests start the
real server on a free localhost port, with no browser, and check that it serves the lab page and
knows a Python kernel that can import sanity_lib.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, http_get as _get, running_jupyter_lab

BIN = Path(sys.executable).parent


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
    """A real `jupyter lab` on a free localhost port serving the project, stopped at the end."""
    with running_jupyter_lab(tmp_path, ROOT) as base:
        yield base


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
