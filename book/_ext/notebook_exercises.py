"""Render a chapter's graded exercises into the book from ``solutions/``, their single source.

A chapter writes::

    ```{notebook-exercises} ch03_model_randomization
    ```

and the directive reads ``solutions/ch03_model_randomization.ipynb``. Every section of that
notebook that starts with a markdown heading ``## Exercise N: title`` becomes a sphinx-exercise
``exercise`` block, titled with the name its check uses (``ch3_ex1``): its markdown and its code
cells, each solution block shortened to ``...  # your code``. A ``solution`` dropdown follows
with the solution code and the model answers the notebook hides. The student notebook in
``exercises/`` comes from the same file (``tools/make_exercises.py``, whose solution markers
this module reuses), so the book, the notebook and the grader cannot drift apart, and the
student edition of the book (``hide_solutions``) drops these solutions like any other.
"""
import importlib.util
import re
from pathlib import Path

import nbformat
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
EXERCISE_HEADING = re.compile(r"^##\s+Exercise\s+(\d+)\s*:\s*(.+?)\s*$")
ANY_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
FENCE = "``````"  # longer than any fence inside a notebook cell
YOUR_ANSWER = "*(Your answer; the solution below gives one.)*"


def _make_exercises():
    """tools/make_exercises.py, the one place that knows how a solution becomes a stub."""
    spec = importlib.util.spec_from_file_location("make_exercises",
                                                  ROOT / "tools" / "make_exercises.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pieces(nb):
    """The notebook's cells, with each markdown cell cut before every ``## `` heading in it
    (a notebook may end one exercise and start the next in the same cell)."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            yield cell
            continue
        chunks, current = [], []
        for line in cell.source.splitlines():
            if line.startswith("## ") and current:
                chunks.append(current)
                current = []
            current.append(line)
        chunks.append(current)
        for chunk in chunks:
            if "\n".join(chunk).strip():
                yield nbformat.from_dict(dict(cell, source="\n".join(chunk).strip()))


def split_exercises(nb):
    """[(number, title, cells)] for every ``## Exercise N: title`` section of a notebook."""
    sections, current = [], None
    for cell in _pieces(nb):
        first = cell.source.splitlines()[0] if cell.source.strip() else ""
        if cell.cell_type == "markdown" and first.startswith("## "):
            match = EXERCISE_HEADING.match(first)
            current = None
            if match:
                rest = cell.source.split("\n", 1)
                cell = nbformat.from_dict(dict(cell, source=rest[1] if len(rest) > 1 else ""))
                current = (int(match.group(1)), match.group(2), [])
                sections.append(current)
        if current is not None:
            current[2].append(cell)
    return sections


def _demote_headings(text):
    """Headings are not allowed inside a directive: make them bold lines."""
    return "\n".join(ANY_HEADING.sub(r"**\2**", line) for line in text.splitlines())


def book_stub(source, tools):
    """A code cell as the book shows it in an exercise: each solution block becomes one line,
    ``...`` in a function body, ``name = ...`` for what a top-level block must define."""
    lines, out, i = source.splitlines(), [], 0
    while i < len(lines):
        if lines[i].strip() != tools.BEGIN:
            out.append(lines[i])
            i += 1
            continue
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == tools.END)
        names = tools._assigned_names("\n".join(lines[i + 1:end])) if not indent else []
        targets = ", ".join(names)
        out.append(f"{indent}{targets + ' = ' if targets else ''}...  # your code")
        i = end + 1
    return "\n".join(out)


def _code(source):
    return f"```python\n{source.strip()}\n```"


def exercise_markdown(chapter, number, title, cells, tools):
    """The MyST text of one exercise and its solution."""
    label = f"{chapter[:4]}-notebook-ex{number}"
    statement, solution = [], []
    for cell in cells:
        if cell.cell_type == "markdown":
            answers = [m.group(0) for m in tools.MD_SOLUTION.finditer(cell.source)]
            text = tools.MD_SOLUTION.sub(YOUR_ANSWER, cell.source)
            if text.strip():
                statement.append(_demote_headings(text))
            for answer in answers:
                body = answer.removeprefix("<!-- BEGIN SOLUTION -->")
                body = body.removesuffix("<!-- END SOLUTION -->")
                solution.append(_demote_headings(body.strip()))
        elif cell.cell_type == "code" and cell.source.strip():
            stubbed = book_stub(cell.source, tools)
            statement.append(_code(stubbed))
            if stubbed != cell.source:
                full = "\n".join(line for line in cell.source.splitlines()
                                 if line.strip() not in (tools.BEGIN, tools.END))
                solution.append(_code(full))
    if not solution:
        raise ValueError(f"solutions/{chapter}.ipynb, exercise {number}: no solution found")
    check = f"ch{int(chapter[2:4])}_ex{number}"  # the name the notebook's check cell uses
    heading = f"{check} · {title[:1].upper()}{title[1:]}"
    exercise = f"{FENCE}{{exercise}} {heading}\n:label: {label}\n:nonumber:\n\n"
    answer = f"{FENCE}{{solution}} {label}\n:class: dropdown\n\n"
    return (exercise + "\n\n".join(statement) + f"\n{FENCE}\n\n"
            + answer + "\n\n".join(solution) + f"\n{FENCE}\n")


class NotebookExercises(SphinxDirective):
    """``{notebook-exercises} <chapter>``: the chapter's notebook exercises, from solutions/."""

    required_arguments = 1
    has_content = False

    def run(self):
        chapter = self.arguments[0]
        path = ROOT / "solutions" / f"{chapter}.ipynb"
        if not path.is_file():
            raise self.error(f"notebook-exercises: {path.relative_to(ROOT)} does not exist")
        self.env.note_dependency(str(path))
        self.env.note_dependency(str(ROOT / "tools" / "make_exercises.py"))
        tools = _make_exercises()
        sections = split_exercises(nbformat.read(path, as_version=4))
        if not sections:
            raise self.error(f"notebook-exercises: no '## Exercise N: title' in {path.name}")
        lead = (f"The exercises of this chapter's notebook, `exercises/{chapter}.ipynb` "
                "(the download menu at the top of the page offers it). In the notebook each "
                "one ends with a `sl.grading.check(...)` cell that says, in plain words, what "
                "is still wrong; the solutions below are the teacher's.")
        text = "\n\n".join([lead] + [exercise_markdown(chapter, n, t, c, tools)
                                     for n, t, c in sections])
        container = nodes.container(classes=["notebook-exercises"])
        self.state.nested_parse(StringList(text.splitlines()), self.content_offset, container)
        return [container]


def setup(app):
    app.add_directive("notebook-exercises", NotebookExercises)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
