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
    assert "```{exercise}" in text or ":::{exercise}" in text, f"{name}.md has no exercise"
    assert "{solution}" in text, f"{name}.md has no solution"
    assert "{cite" in text, f"{name}.md cites nothing"
