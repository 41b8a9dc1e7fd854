"""The classroom kit: student notebooks fail only with NotImplementedError, and exercises/ is
exactly what `make exercises` generates from solutions/.

That the solutions run clean and pass every check is tested once, in tests/test_nbgrader.py,
on the solved student's notebook that `nbgrader autograde` runs (the same code, cell for cell).
"""
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))


def _run(path: Path, allow_errors: bool) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=allow_errors,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return nb


def _errors(nb):
    return [(i, out) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.output_type == "error"]


def test_there_is_one_exercise_notebook_per_solution():
    assert [p.name for p in SOLUTIONS] == [p.name for p in EXERCISES]


def test_exercises_are_up_to_date():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "make_exercises.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.stem)
def test_exercise_fails_only_with_not_implemented(path):
    nb = _run(path, allow_errors=True)
    errors = _errors(nb)
    assert errors, f"{path.name} ran without any NotImplementedError: are the answers stubbed?"
    wrong = [(i, out.ename, out.evalue) for i, out in errors if out.ename != "NotImplementedError"]
    assert not wrong, f"{path.name} fails with other errors than NotImplementedError: {wrong}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solutions_are_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_the_instructor_guide_gives_each_notebooks_own_time():
    """The guide's table and each notebook's "Estimated time" line say the same, and every
    notebook has a measured run time in the guide."""
    import re

    guide = (ROOT / "book" / "instructor_guide.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(
        r"^\|[^|]*\|[^|]*\| `(ch\d\d_\w+\.ipynb)` \|([^\n]*)$", guide, flags=re.M)}
    assert sorted(rows) == [p.name for p in SOLUTIONS]
    for path in SOLUTIONS:
        first = nbformat.read(path, as_version=4).cells[0].source
        minutes = re.search(r"Estimated time[^0-9]*(\d+) minutes", first)
        assert minutes, f"{path.name} does not state its estimated time"
        cells = [c.strip() for c in rows[path.name].split("|")]
        assert f"{minutes.group(1)} min" in cells[0], (path.name, cells[0], minutes.group(1))
        assert re.fullmatch(r"\d+ s|\d+ min \d+ s", cells[1]), (path.name, cells[1])


def test_each_chapter_states_its_notebooks_time():
    import re

    for path in SOLUTIONS:
        first = nbformat.read(path, as_version=4).cells[0].source
        minutes = re.search(r"Estimated time[^0-9]*(\d+) minutes", first).group(1)
        chapter = (ROOT / "book" / path.with_suffix(".md").name).read_text()
        stated = re.search(r"(\d+) minutes for the exercise notebook", chapter)
        assert stated and stated.group(1) == minutes, (path.name, minutes, stated)
