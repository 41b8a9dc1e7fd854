"""Build the student edition of the book: the same pages with every {solution} removed.

``make book-student`` runs this. It writes a copy of ``book/_config.yml`` that turns on
sphinx-exercise's ``hide_solutions`` and reuses the normal build's execution cache (so nothing
is executed twice), then builds into ``book/_build_student/_build/html``.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
OUT = BOOK / "_build_student"


def student_config() -> dict:
    config = yaml.safe_load((BOOK / "_config.yml").read_text())
    config["title"] = config["title"] + " (student edition)"
    config.setdefault("execute", {})["cache"] = str(BOOK / "_build" / ".jupyter_cache")
    config.setdefault("sphinx", {}).setdefault("config", {})["hide_solutions"] = True
    return config


def main() -> int:
    subprocess.run([sys.executable, str(ROOT / "tools" / "vendor_web_assets.py")], check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yml", dir=BOOK, delete=False) as handle:
        yaml.safe_dump(student_config(), handle)
        config_path = Path(handle.name)
    try:
        jb = Path(sys.executable).with_name("jupyter-book")
        proc = subprocess.run([str(jb), "build", str(BOOK), "--config", str(config_path),
                               "--path-output", str(OUT), "-n", "-W", "--keep-going"])
    finally:
        config_path.unlink()
    if proc.returncode == 0:
        print(f"The student edition is in {(OUT / '_build' / 'html' / 'index.html').relative_to(ROOT)}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
