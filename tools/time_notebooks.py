"""Time every solution notebook, one after another, for the instructor guide's run-time column.

Run it on an idle machine with the trained models already cached (after ``make book`` or
``make test``): the guide promises the times of a laptop CPU with a warm cache. Each notebook
runs in a fresh kernel, as a student's would.

Usage::

    .venv/bin/python tools/time_notebooks.py            # prints a table, one row per notebook
"""
from __future__ import annotations

import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def run_seconds(path: Path) -> float:
    """Wall-clock seconds to execute ``path`` in a fresh python3 kernel (errors raise)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main() -> None:
    print("| notebook | run time |")
    print("|---|---|")
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        print(f"| `{path.name}` | {run_seconds(path):.0f} s |", flush=True)


if __name__ == "__main__":
    main()
