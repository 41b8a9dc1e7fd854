"""Export the solution notebooks as nbgrader source notebooks (optional, for instructors).

Our solution blocks already use nbgrader's markers (``### BEGIN SOLUTION`` /
``### END SOLUTION``), so the notebooks only need nbgrader's cell metadata:

- a code cell with a solution block becomes an autograded *solution* cell;
- a cell calling ``sl.grading.check(...)`` becomes a locked *autograder test* cell worth 1 point
  (the check raises when the answer is wrong, which is how nbgrader detects a failure);
- a markdown cell with ``<!-- BEGIN SOLUTION -->`` becomes a manually graded answer cell.

Usage: ``python tools/export_nbgrader.py [OUT]`` writes ``OUT/source/<chapter>/<chapter>.ipynb``
(default ``OUT = nbgrader``), the layout ``nbgrader generate_assignment`` expects.
"""
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def _meta(grade_id: str, *, solution: bool, grade: bool, locked: bool, points: int = 0) -> dict:
    meta = {"grade_id": grade_id, "solution": solution, "grade": grade, "locked": locked,
            "schema_version": 3}
    if grade:
        meta["points"] = points
    return meta


def nbgrader_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of a solution notebook with nbgrader metadata on its exercise cells."""
    nb = nbformat.from_dict(nb)
    for index, cell in enumerate(nb.cells):
        cell.metadata.pop("nbgrader", None)
        if cell.cell_type == "code" and "### BEGIN SOLUTION" in cell.source:
            cell.metadata["nbgrader"] = _meta(f"solution-{index}", solution=True, grade=False,
                                              locked=False)
        elif cell.cell_type == "code" and "sl.grading.check(" in cell.source:
            ids = re.findall(r"sl\.grading\.check\(\s*[\"']([\w.-]+)", cell.source)
            cell.metadata["nbgrader"] = _meta(f"check-{'-'.join(ids) or index}", solution=False,
                                              grade=True, locked=True, points=max(len(ids), 1))
        elif cell.cell_type == "markdown" and "<!-- BEGIN SOLUTION -->" in cell.source:
            cell.source = cell.source.replace("<!-- BEGIN SOLUTION -->", "### BEGIN SOLUTION\n")
            cell.source = cell.source.replace("<!-- END SOLUTION -->", "\n### END SOLUTION")
            cell.metadata["nbgrader"] = _meta(f"answer-{index}", solution=True, grade=True,
                                              locked=False, points=1)
    return nb


def main(argv=None) -> int:
    out = Path((argv or sys.argv[1:] or ["nbgrader"])[0])
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        target = out / "source" / path.stem / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbgrader_notebook(nbformat.read(path, as_version=4)), target)
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
