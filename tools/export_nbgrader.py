"""Export the solution notebooks as an nbgrader course (optional, for instructors).

Our solution blocks already use nbgrader's markers (``### BEGIN SOLUTION`` /
``### END SOLUTION``), so the notebooks only need nbgrader's cell metadata:

- a code cell with a solution block becomes an autograded *solution* cell;
- a cell calling ``sl.grading.check(...)`` becomes a locked *autograder test* cell worth 1 point
  per check (the check raises when the answer is wrong, which is how nbgrader detects a failure);
- a markdown cell with ``<!-- BEGIN SOLUTION -->`` becomes a manually graded answer cell.

Usage: ``python tools/export_nbgrader.py [COURSE] [--chapters ch01 ch02 ...]`` writes
``COURSE/source/<chapter>/<chapter>.ipynb`` (default ``COURSE = nbgrader``, every chapter), the
layout ``nbgrader generate_assignment`` expects, and ``COURSE/nbgrader_config.py`` unless the
course already has one. Then, in ``COURSE``, with the project's ``.venv/bin`` on ``PATH``::

    nbgrader generate_assignment ch01_saliency_methods   # release/ch01.../ for the students
    nbgrader autograde ch01_saliency_methods              # grades submitted/<student>/ch01.../
    nbgrader generate_feedback ch01_saliency_methods      # feedback/<student>/ch01.../*.html
"""
import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

#: The course's nbgrader_config.py. Grading runs every notebook with the project's Python
#: (the kernel "python3" of .venv); a chapter takes minutes on a slow machine, so no cell, kernel
#: start or output wait may time out the way nbgrader's defaults (30 s per cell) would.
CONFIG = '''\
c = get_config()  # noqa: F821 (nbgrader provides it)
c.CourseDirectory.course_id = "sanity-checks"
c.ExecutePreprocessor.kernel_name = "python3"
c.ExecutePreprocessor.timeout = 3600          # seconds per cell
c.ExecutePreprocessor.startup_timeout = 600   # seconds for the kernel to start
c.ExecutePreprocessor.iopub_timeout = 600     # seconds to wait for a cell's last output
'''


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
        if cell.cell_type == "code" and "### BEGIN SOLUTION" in cell.source \
                and "sl.grading.check(" in cell.source:
            # nbgrader grades a cell as a student's answer or as a test, never both: the check
            # would silently be worth nothing.
            raise ValueError(f"cell {index} holds both a solution and a sl.grading.check call; "
                             "put the check in a cell of its own")
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


def export(course: Path, chapters=()) -> list:
    """Write the nbgrader source notebooks (and a default config) into ``course``.

    ``chapters`` selects notebooks by name prefix (``"ch01"``); empty means all. Returns the
    written notebooks.
    """
    course = Path(course)
    paths = [p for p in sorted((ROOT / "solutions").glob("*.ipynb"))
             if not chapters or p.stem.startswith(tuple(chapters))]
    unknown = [c for c in chapters if not any(p.stem.startswith(c) for p in paths)]
    if unknown:
        raise SystemExit(f"no solution notebook starts with {unknown}")
    written = []
    for path in paths:
        target = course / "source" / path.stem / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbgrader_notebook(nbformat.read(path, as_version=4)), target)
        written.append(target)
    config = course / "nbgrader_config.py"
    if not config.exists():
        config.write_text(CONFIG)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("course", nargs="?", default="nbgrader", type=Path,
                        help="the nbgrader course folder (default: nbgrader)")
    parser.add_argument("--chapters", nargs="+", default=[], metavar="PREFIX",
                        help="only these notebooks, by name prefix (ch01 ch02); default: all")
    args = parser.parse_args(argv)
    for target in export(args.course, args.chapters):
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
