"""The classroom kit: solutions run clean, student notebooks fail only with NotImplementedError,
and exercises/ is exactly what `make exercises` generates from solutions/.
"""
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

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


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_runs_clean_and_passes_its_checks(path):
    try:
        nb = _run(path, allow_errors=False)
    except CellExecutionError as err:
        pytest.fail(f"{path.name} failed:\n{str(err)[-3000:]}")
    text = "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []))
    n_checks = sum("sl.grading.check(" in cell.source for cell in nb.cells)
    assert n_checks >= 3, f"{path.name} has {n_checks} checks; every exercise ends with one"
    assert text.count("correct. Well done!") >= n_checks, "not every check printed its success"


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
