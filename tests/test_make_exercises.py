"""The generator that turns solutions into student notebooks."""
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from make_exercises import stub_source, student_notebook  # noqa: E402

import sanity_lib as sl  # noqa: E402

SOURCE = """import math
def double(x):
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION
### BEGIN SOLUTION
answer, other = 3, math.pi
layer: str = "fc1"
### END SOLUTION
print("after")"""


def test_function_body_becomes_a_raise_and_the_function_still_exists():
    namespace = {"sl": sl}
    with pytest.raises(NotImplementedError):
        exec(stub_source(SOURCE), namespace)
    assert callable(namespace["double"])
    with pytest.raises(NotImplementedError):
        namespace["double"](1)


def test_top_level_values_become_unanswered_stubs_that_raise_on_use():
    namespace = {"sl": sl}
    with pytest.raises(NotImplementedError):
        exec(stub_source(SOURCE), namespace)
    for name in ("answer", "other", "layer"):
        with pytest.raises(NotImplementedError, match=name):
            namespace[name] + 1
    assert "2 * x" not in stub_source(SOURCE) and "math.pi" not in stub_source(SOURCE)
    assert 'print("after")' in stub_source(SOURCE)


def test_unmatched_marker_is_an_error():
    with pytest.raises(ValueError, match="END SOLUTION"):
        stub_source("### BEGIN SOLUTION\nx = 1")


def test_student_notebook_strips_outputs_widgets_and_markdown_answers():
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell(SOURCE)
    code.outputs = [nbformat.v4.new_output("stream", text="3")]
    code.execution_count = 4
    md = nbformat.v4.new_markdown_cell("Q?\n<!-- BEGIN SOLUTION -->The answer is 42.<!-- END SOLUTION -->")
    nb.cells = [md, code]
    nb.metadata["widgets"] = {"state": {}}
    student = student_notebook(nb, "demo.ipynb")
    assert "How to work on this notebook" in student.cells[0].source
    assert "42" not in student.cells[1].source
    assert student.cells[2].outputs == [] and student.cells[2].execution_count is None
    assert "widgets" not in student.metadata
    assert nb.cells[1].outputs, "the solution notebook itself must not be modified"


def test_nbgrader_export_marks_solutions_checks_and_written_answers():
    from export_nbgrader import nbgrader_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("Why?\n<!-- BEGIN SOLUTION -->Because.<!-- END SOLUTION -->"),
        nbformat.v4.new_code_cell(SOURCE),
        nbformat.v4.new_code_cell('sl.grading.check("ch9_ex1", double)'),
        nbformat.v4.new_code_cell("import torch"),
    ]
    out = nbgrader_notebook(nb)
    answer, solution, check, plain = (c.metadata.get("nbgrader") for c in out.cells)
    assert answer["solution"] and answer["grade"] and not answer["locked"]
    assert "### BEGIN SOLUTION" in out.cells[0].source  # nbgrader's own marker
    assert solution["solution"] and not solution["grade"]
    assert check == {"grade_id": "check-ch9_ex1", "solution": False, "grade": True,
                     "locked": True, "schema_version": 3, "points": 1}
    assert plain is None
    ids = [c.metadata["nbgrader"]["grade_id"] for c in out.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), "nbgrader needs unique grade ids"
