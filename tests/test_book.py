"""Build the whole book as `make book` does, and check each chapter keeps the course's frame.

The build executes every chapter (a failing cell fails it: nb_execution_raise_on_error) and
turns every warning into an error (-n -W --keep-going). The jupyter-cache makes a rebuild with
unchanged chapters quick.
"""
import re

import pytest

from conftest import BOOK, HTML, chapter_files, toc_files

CHAPTERS = chapter_files()


def sphinx_warnings(log: str) -> list[str]:
    """The build log's Sphinx and MyST warnings. Kernels print their own start-up notices
    ("[IPKernelApp] WARNING | ...") on stderr; those are not the book's and are left out."""
    return [line for line in log.splitlines()
            if "WARNING" in line and not line.lstrip().startswith("[IPKernelApp]")]


def test_book_builds_without_warnings(built_book):
    warnings = sphinx_warnings(built_book)
    assert not warnings, "\n".join(warnings[:20])
    for name in toc_files():
        assert (HTML / f"{name}.html").is_file(), f"{name}.html was not built"


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_has_no_error_output(built_book, name):
    page = (HTML / f"{name}.html").read_text()
    for marker in ("Traceback (most recent call last)", "output stderr", "NotImplementedError"):
        assert marker not in page, f"{name}.html shows {marker!r}"


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_keeps_the_course_frame(name):
    text = (BOOK / f"{name}.md").read_text()
    for heading in ("Learning objectives", "Estimated time", "Prerequisites", "Summary",
                    "References", "Exercises"):
        assert re.search(rf"^#+ .*{heading}", text, re.M | re.I) or heading.lower() in text.lower(), (
            f"{name}.md has no '{heading}' section")
    assert "```{notebook-exercises}" in text, f"{name}.md does not show its notebook exercises"
    # solutions come with the notebook exercises (book/_ext/notebook_exercises.py)
    assert "{cite" in text, f"{name}.md cites nothing"


def test_the_book_hides_at_most_a_quarter_of_its_code():
    """The book's code is read, not carried in hidden cells (tools/hidden_share.py)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "hidden_share.py"
    spec = importlib.util.spec_from_file_location("hidden_share", path)
    hidden_share = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hidden_share)
    table = hidden_share.shares(sorted(BOOK.glob("ch0*.md")))
    assert len(table) == 8
    hidden = sum(h for h, _ in table.values())
    total = sum(t for _, t in table.values())
    assert hidden <= 0.25 * total, table
    too_hidden = {name: f"{h}/{t}" for name, (h, t) in table.items() if h > 0.3 * t}
    assert not too_hidden, too_hidden
    # the counter sees hidden cells at all: a tagged cell counts, an untagged one does not
    text = ("```{code-cell} ipython3\n:tags: [remove-cell]\n\na = 1\nb = 2\n```\n"
            "```{code-cell} ipython3\nc = 3\n```\n")
    assert list(hidden_share.cell_lines(text)) == [(True, 2), (False, 1)]


def test_no_chapter_silences_warnings():
    for path in sorted(BOOK.glob("ch0*.md")):
        text = path.read_text()
        assert "filterwarnings(\"ignore\"" not in text and "simplefilter(\"ignore\"" not in text, \
            path.name
        assert "sl.course.book.setup(" in text, path.name
