"""A real classroom round trip with nbgrader, run with the instructor guide's own commands.

The two shell blocks of "Grading with nbgrader" in book/instructor_guide.md run unchanged in a
temporary course folder: the first exports every chapter with nbgrader metadata
(tools/export_nbgrader.py) and runs `nbgrader generate_assignment`; three students then hand in
each chapter; the second block runs `nbgrader autograde` and `nbgrader generate_feedback`.
Reading the scores back from nbgrader's gradebook database proves, for each chapter, that

- a student who answers every exercise gets every autograded point,
- a student who hands in the released notebook untouched gets 0,
- a student with one typical mistake gets exactly the points of the other exercises, and the
  feedback HTML shows the message with which the sanity_lib check rejected the mistake.

Written answers are graded by hand in nbgrader, so only the autograded (code) score can be full.
The notebooks run in the kernel python3 of this project's .venv, with the long timeouts of the
course's nbgrader_config.py: nothing here depends on the speed of the machine.
"""
import html
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "book" / "instructor_guide.md"
MARKER = "% tests/test_nbgrader.py runs this block as it is"


@dataclass(frozen=True)
class Chapter:
    name: str      # the assignment, also the notebook's name
    points: int    # autograded points: one per check
    exercise: str  # the exercise the third student gets wrong (its check is worth 1 point)
    correct: str   # a piece of that exercise's solution ...
    wrong: str     # ... the typical mistake that replaces it ...
    message: str   # ... and what the check says about it


CHAPTERS = [
    Chapter("ch01_saliency_methods", 6, "ch1_ex1",  # a sign error: the absolute gradient
            correct='x * sl.saliency.explain(model, x, "gradient")',
            wrong='x * sl.saliency.explain(model, x, "gradient").abs()',
            message="You multiplied x by the *absolute* gradient. Keep the gradient's sign"),
    Chapter("ch02_comparing_maps", 5, "ch2_ex1",  # a wrong normalization: max, not percentile
            correct="torch.quantile(flat, 0.99, dim=1, keepdim=True)",
            wrong="flat.amax(dim=1, keepdim=True)",
            message="You divided by the maximum instead of the 99th percentile."),
    Chapter("ch03_model_randomization", 4, "ch3_ex1",  # the cascade run bottom-up
            correct="reversed(sl.models.layer_groups(work))",
            wrong="sl.models.layer_groups(work)",
            message="that is bottom-up (input first)"),
    Chapter("ch04_data_randomization", 7, "ch4_ex1",  # images shuffled with their labels
            correct="return images, labels[perm]",
            wrong="return images[perm], labels[perm]",
            message="You moved the images together with their labels"),
    Chapter("ch05_why_methods_fail", 4, "ch5_ex1",  # IG without the (x - x') factor
            correct="return (x - baseline) * total / n_steps",
            wrong="return total / n_steps",
            message="You returned the average gradient along the path and forgot to multiply"),
    Chapter("ch06_gaussian_noise", 5, "ch6_ex1",  # the variance used as the std
            correct="p += std * torch.randn(p.shape, generator=g)",
            wrong="p += std ** 2 * torch.randn(p.shape, generator=g)",
            message="you multiplied by the variance, not the standard deviation."),
    Chapter("ch07_beyond_the_paper", 4, "ch7_ex2",  # eMPRT's rise not made relative
            correct="return (h_rand - h) / h",
            wrong="return h_rand - h",
            message="You returned the difference of the entropies without dividing"),
    Chapter("ch08_your_own_model", 4, "ch8_ex1",  # the logits left out of the groups
            correct='"layer4",\n          ("logits", "fc")]',
            wrong='"layer4"]',
            message="Your grouping has a problem"),
]
SOLVED, UNTOUCHED, MISTAKE = "solved", "untouched", "one_mistake"


# ----------------------------------------------------------------------------- helpers

def guide_blocks() -> list:
    """The shell blocks of the instructor guide that this test runs, in order."""
    text = GUIDE.read_text()
    return re.findall(re.escape(MARKER) + r"\n```bash\n(.*?)```", text, re.S)


def run_block(block: str, env: dict) -> str:
    """Run one block of the guide with bash from the repository root, as a teacher would."""
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the guide's commands failed:\n{block}\n{log[-6000:]}"
    assert "| ERROR]" not in log, log[-6000:]
    return log


def solution_cells(nb) -> dict:
    """grade_id -> cell, for the cells nbgrader marks as a student's answer."""
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def answered(release, source, chapter: Chapter | None = None):
    """The released notebook with every answer filled in from the solutions, as a student who
    solved the chapter hands it in; with ``chapter``, its typical mistake is made on the way."""
    nb = nbformat.from_dict(release)
    answers = solution_cells(source)
    for grade_id, cell in solution_cells(nb).items():
        cell.source = answers[grade_id].source
    if chapter is not None:
        hits = [c for c in nb.cells if c.cell_type == "code" and chapter.correct in c.source]
        assert len(hits) == 1, f"'{chapter.correct}' should be in exactly one cell"
        hits[0].source = hits[0].source.replace(chapter.correct, chapter.wrong)
    return nb


def hand_in(course: Path, student: str, chapter: Chapter, nb) -> None:
    """Put a student's notebook where nbgrader collects it: submitted/<student>/<assignment>/."""
    folder = course / "submitted" / student / chapter.name
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{chapter.name}.ipynb")


def notebook(course: Path, kind: str, chapter: Chapter):
    return nbformat.read(course / kind / chapter.name / f"{chapter.name}.ipynb", as_version=4)


def feedback_text(course: Path, student: str, chapter: Chapter) -> str:
    """The feedback page as plain text (tags and the colours of tracebacks removed)."""
    page = course / "feedback" / student / chapter.name / f"{chapter.name}.html"
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


def executed(course: Path, student: str, chapter: Chapter):
    """A student's notebook as ``nbgrader autograde`` ran it, with every cell's output."""
    return nbformat.read(course / "autograded" / student / chapter.name / f"{chapter.name}.ipynb",
                         as_version=4)


def scores(course: Path, student: str, chapter: Chapter) -> dict:
    """What the gradebook holds for one submission: the code score and each cell's points."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        sub = gb.find_submission_notebook(chapter.name, chapter.name, student)
        return {"code": sub.code_score, "max_code": sub.max_code_score, "total": sub.score,
                "checks": {g.name: g.score for g in sub.grades if g.cell_type == "code"}}


def test_every_check_is_worth_its_point_in_nbgrader(tmp_path):
    """Each sl.grading.check of a solution notebook becomes an autograded cell worth one point
    per check (a check inside an answer cell would be worth nothing), and the chapters above
    expect exactly those points."""
    import sys
    sys.path.insert(0, str(ROOT / "tools"))
    from export_nbgrader import export

    expected = {c.name: c.points for c in CHAPTERS}
    for path in export(tmp_path):
        source = path.read_text()
        nb = nbformat.read(path, as_version=4)
        checks = len(re.findall(r"sl\.grading\.check\(\s*[\"']", "".join(
            c.source for c in nb.cells if c.cell_type == "code")))
        points = sum(c.metadata["nbgrader"].get("points", 0) for c in nb.cells
                     if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade"))
        assert points == checks, f"{path.stem}: {checks} checks but {points} points"
        assert expected.get(path.stem) == points, path.stem
        assert "sl.grading.check(" in source


def test_a_check_inside_an_answer_cell_is_refused():
    import sys
    sys.path.insert(0, str(ROOT / "tools"))
    from export_nbgrader import nbgrader_notebook

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "### BEGIN SOLUTION\nx = 1\n### END SOLUTION\nsl.grading.check('ch1_ex1', x)")])
    with pytest.raises(ValueError, match="put the check in a cell of its own"):
        nbgrader_notebook(nb)


# ----------------------------------------------------------------------------- the round trip

@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course folder after the whole round trip; the commands' logs are in course/*.log."""
    base = tmp_path_factory.mktemp("nbgrader")
    course = base / "course"
    # Jupyter's user folders are kept out, so only the project's own kernel and config count.
    env = {**os.environ, "COURSE": str(course),
           **{var: str(base / name) for var, name in [("JUPYTER_CONFIG_DIR", "config"),
                                                      ("JUPYTER_DATA_DIR", "data"),
                                                      ("JUPYTER_RUNTIME_DIR", "runtime")]}}
    env.pop("JUPYTER_PATH", None)
    blocks = guide_blocks()
    assert len(blocks) == 2, f"{GUIDE.name} should have two blocks marked '{MARKER}'"
    prepare, grade = blocks

    (base / "prepare.log").write_text(run_block(prepare, env))
    for chapter in CHAPTERS:
        source, release = notebook(course, "source", chapter), notebook(course, "release", chapter)
        hand_in(course, SOLVED, chapter, answered(release, source))
        hand_in(course, UNTOUCHED, chapter, release)
        hand_in(course, MISTAKE, chapter, answered(release, source, chapter))
    (base / "grade.log").write_text(run_block(grade, env))
    return course


def test_the_guide_uses_the_kernel_of_this_environment(course):
    log = (course.parent / "prepare.log").read_text()
    found = re.search(r"^\s*python3\s+(\S+)", log, re.M)
    assert found, f"`jupyter kernelspec list` shows no python3 kernel:\n{log[-3000:]}"
    assert Path(found.group(1)) == ROOT / ".venv" / "share" / "jupyter" / "kernels" / "python3"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_a_solved_notebook_gets_every_autograded_point(course, chapter):
    got = scores(course, SOLVED, chapter)
    assert got["max_code"] == chapter.points
    assert got["code"] == chapter.points, got["checks"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_a_solved_notebook_is_the_solution_and_runs_clean(course, chapter):
    """The solved student's notebook is solutions/<chapter>.ipynb cell for cell, and autograde
    ran it without an error in any cell (graded or not) and with every check's success
    message. This is the test that the solution notebooks run clean: running them a second
    time outside nbgrader would add minutes to `make test` and check nothing more."""
    solution = nbformat.read(ROOT / "solutions" / f"{chapter.name}.ipynb", as_version=4)
    nb = executed(course, SOLVED, chapter)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code == [c.source for c in solution.cells if c.cell_type == "code"]
    errors = [(i, out.ename, out.evalue) for i, cell in enumerate(nb.cells)
              if cell.cell_type == "code" for out in cell.get("outputs", [])
              if out.output_type == "error"]
    assert not errors, errors
    n_checks = sum("sl.grading.check(" in source for source in code)
    assert n_checks >= 3, f"{chapter.name} has {n_checks} checks; every exercise ends with one"
    printed = "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                        for out in cell.get("outputs", []))
    assert printed.count("correct. Well done!") >= n_checks, "not every check printed its success"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_an_untouched_notebook_gets_zero(course, chapter):
    got = scores(course, UNTOUCHED, chapter)
    assert got["total"] == 0, got["checks"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_one_mistake_costs_exactly_that_exercise(course, chapter):
    got = scores(course, MISTAKE, chapter)
    failed = [name for name, score in got["checks"].items() if score != 1]
    assert failed == [f"check-{chapter.exercise}"], got["checks"]
    assert got["code"] == chapter.points - 1


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.name)
def test_the_feedback_names_what_the_check_rejected(course, chapter):
    assert chapter.message in feedback_text(course, MISTAKE, chapter)
    assert chapter.message not in feedback_text(course, SOLVED, chapter)
