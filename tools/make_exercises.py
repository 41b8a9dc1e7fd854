"""Turn the solution notebooks in ``solutions/`` into the student notebooks in ``exercises/``.

``solutions/`` is the single source. In every code cell, each block between a line
``### BEGIN SOLUTION`` and a line ``### END SOLUTION`` is replaced by a stub:

- inside a function body (indented markers): ``raise NotImplementedError(...)`` at that
  indentation, so the function exists and fails only when called;
- at the top level: every name the block assigns becomes ``sl.grading.Unanswered("name")``,
  then the cell raises ``NotImplementedError``; any later use of those names raises
  ``NotImplementedError`` again, so a student notebook never fails with ``NameError``.

Markdown cells may hide text between ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->``.
Outputs, execution counts and widget state are stripped, and each notebook gets a short
"how to work on this notebook" header. Run ``make exercises``; ``--check`` only reports
whether ``exercises/`` is up to date (the tests use it).
"""
import argparse
import ast
import re
import sys
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
MD_SOLUTION = re.compile(r"<!-- BEGIN SOLUTION -->.*?<!-- END SOLUTION -->", re.S)
STUB_MESSAGE = "Exercise: replace this line with your code"

HEADER = """\
> **How to work on this notebook**
>
> - This is the student version of `solutions/{name}`: cells marked *Exercise* contain
>   `raise NotImplementedError(...)` (or values that raise it when used). Replace them with
>   your code.
> - Run the cells from the top (Kernel → Restart & Run All). Each exercise ends with a
>   `sl.grading.check(...)` cell that tells you, in plain words, what is still wrong.
> - Until you fill in an exercise, the cells that use it stop with `NotImplementedError`:
>   that is expected, not a bug.
> - Stuck? The matching chapter of the book explains every step, and your instructor has the
>   solutions.
"""


def _assigned_names(code: str) -> list:
    """Top-level names a block of code assigns (a = ..., a, b = ..., def f, class C, import m)."""
    names = []
    for node in ast.parse(textwrap.dedent(code)).body:
        targets = []
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name) and sub.id not in names:
                    names.append(sub.id)
    return names


def stub_source(source: str) -> str:
    """Replace every solution block of one code cell by its stub (see the module docstring)."""
    lines, out, i = source.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if line.strip() != BEGIN:
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        try:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == END)
        except StopIteration:
            raise ValueError(f"'{BEGIN}' without a matching '{END}' in:\n{source}") from None
        block = "\n".join(lines[i + 1:end])
        if indent:  # inside a function body
            out.append(f'{indent}raise NotImplementedError("{STUB_MESSAGE}")')
        else:
            for name in _assigned_names(block):
                out.append(f'{name} = sl.grading.Unanswered("{name}")')
            out.append(f'raise NotImplementedError("{STUB_MESSAGE}")')
        i = end + 1
    return "\n".join(out)


def student_notebook(solution: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The student version of one solution notebook."""
    nb = nbformat.from_dict(solution)
    for cell in nb.cells:
        cell.metadata.pop("widgets", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.source = stub_source(cell.source)
            cell.outputs, cell.execution_count = [], None
        elif cell.cell_type == "markdown":
            cell.source = MD_SOLUTION.sub("*(Your answer here.)*", cell.source)
    nb.metadata.pop("widgets", None)
    header = nbformat.v4.new_markdown_cell(HEADER.format(name=name))
    header.id = "how-to-work"
    nb.cells.insert(0, header)
    return nb


def render(path: Path) -> str:
    nb = student_notebook(nbformat.read(path, as_version=4), path.name)
    return nbformat.writes(nb) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 when exercises/ is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        target = ROOT / "exercises" / path.name
        text = render(path)
        if not target.exists() or target.read_text() != text:
            stale.append(target.name)
            if not args.check:
                target.parent.mkdir(exist_ok=True)
                target.write_text(text)
    extra = {p.name for p in (ROOT / "exercises").glob("*.ipynb")} - {
        p.name for p in (ROOT / "solutions").glob("*.ipynb")}
    if args.check:
        if stale or extra:
            print(f"out of date: {sorted(stale)}; without a solution: {sorted(extra)}")
            return 1
        print("exercises/ is up to date")
    else:
        print(f"wrote {len(stale)} notebook(s)" + (f"; remove {sorted(extra)}" if extra else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
