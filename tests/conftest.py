"""Shared fixtures: the built book (built once per test session, as `make book` does)."""
import re
import subprocess
import sys
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
