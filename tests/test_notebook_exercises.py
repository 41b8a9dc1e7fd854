"""The book's graded exercises come from ``solutions/``, their single source.

``book/_ext/notebook_exercises.py`` renders each chapter's notebook exercises into the chapter
(``{notebook-exercises}``). These tests check that every exercise of every solution notebook is
found, in the order of its check names, that what the book shows as the exercise never gives
the solution away in its code (hints in the prose may quote a call) while the solution
dropdown has all of it, and that no chapter carries a
hand-written copy of a notebook exercise.
"""
import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

from conftest import BOOK, HTML, ROOT, chapter_files

CHAPTERS = chapter_files()


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


renderer = _load("notebook_exercises", BOOK / "_ext" / "notebook_exercises.py")
tools = _load("make_exercises", ROOT / "tools" / "make_exercises.py")


def solution_blocks(source):
    """The lines between the solution markers of one code cell."""
    lines, inside, out = source.splitlines(), False, []
    for line in lines:
        if line.strip() == tools.BEGIN:
            inside = True
        elif line.strip() == tools.END:
            inside = False
        elif inside and line.strip():
            out.append(line.strip())
    return out


def notebook(chapter):
    return nbformat.read(ROOT / "solutions" / f"{chapter}.ipynb", as_version=4)


def split_rendered(text):
    """(statement, solution) halves of one rendered exercise."""
    statement, _, solution = text.partition("{solution}")
    return statement, solution


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_exercise_of_the_notebook_is_found_in_check_order(chapter):
    nb = notebook(chapter)
    checks = [m for c in nb.cells if c.cell_type == "code"
              for m in re.findall(r'check\("(ch\d_ex\d+)"', c.source)]
    sections = renderer.split_exercises(nb)
    number = int(chapter[2:4])
    assert [f"ch{number}_ex{n}" for n, _, _ in sections] == checks
    for n, _, cells in sections:
        assert any(f'check("ch{number}_ex{n}"' in c.source for c in cells), (chapter, n)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_statement_hides_the_solution_and_the_dropdown_holds_it(chapter):
    for n, title, cells in renderer.split_exercises(notebook(chapter)):
        text = renderer.exercise_markdown(chapter, n, title, cells, tools)
        statement, solution = split_rendered(text)
        statement_code = "\n".join(re.findall(r"```python\n(.*?)\n```", statement, re.S))
        assert f"ch{int(chapter[2:4])}_ex{n} · " in statement
        hidden = [line for c in cells if c.cell_type == "code"
                  for line in solution_blocks(c.source)]
        assert hidden, f"{chapter} exercise {n} has no solution code"
        for line in hidden:
            if len(line) > 12 and not line.startswith("#"):  # skip ')' and short echoes
                assert line not in statement_code, f"{chapter} ex{n} shows its solution: {line}"
                assert line in solution, f"{chapter} ex{n} solution lacks: {line}"
        for cell in cells:
            for answer in tools.MD_SOLUTION.findall(cell.source):
                first = answer.removeprefix("<!-- BEGIN SOLUTION -->").strip().splitlines()[0]
                assert first not in statement and first[:40] in solution, (chapter, n)
        assert "NotImplementedError" not in statement


def test_a_function_exercise_shows_its_signature_and_a_placeholder_body():
    source = ('def f(x):\n    """Double x."""\n    ### BEGIN SOLUTION\n    return 2 * x\n'
              '    ### END SOLUTION\n### BEGIN SOLUTION\na, b = 1, 2\n### END SOLUTION\nprint(a)')
    assert renderer.book_stub(source, tools) == (
        'def f(x):\n    """Double x."""\n    ...  # your code\na, b = ...  # your code\nprint(a)')


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_chapter_writes_a_notebook_exercise_twice(chapter):
    text = (BOOK / f"{chapter}.md").read_text()
    assert f"```{{notebook-exercises}} {chapter}\n```" in text
    defined = {m for c in notebook(chapter).cells if c.cell_type == "code"
               for m in re.findall(r"^def (\w+)\(", c.source, re.M)
               if tools.BEGIN in c.source}
    for name in defined:
        assert f"def {name}(" not in text, f"{chapter}.md writes the notebook's {name} again"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_built_chapter_shows_each_notebook_exercise_and_its_solution(built_book, chapter):
    page = (HTML / f"{chapter}.html").read_text()
    for n, _, _ in renderer.split_exercises(notebook(chapter)):
        label = f"{chapter[:4]}-notebook-ex{n}"
        assert f'id="{label}"' in page, f"{chapter}.html lacks exercise {n}"
        assert f'href="#{label}"' in page, f"{chapter}.html lacks the solution of exercise {n}"
