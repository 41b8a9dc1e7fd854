"""How much of the book's code the reader cannot see: code lines in hidden or removed cells.

    .venv/bin/python tools/hidden_share.py          # per chapter and in total

A cell is hidden when its tags include hide-input, remove-input or remove-cell (a
``hide-cell`` shows a button, so it counts as hidden too). Blank lines and comments-only
lines are not counted.
"""
import re
import sys
from pathlib import Path

BOOK = Path(__file__).resolve().parents[1] / "book"
HIDDEN_TAGS = {"hide-input", "remove-input", "remove-cell", "hide-cell"}
_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```\s*$", re.S | re.M)


def cell_lines(text: str):
    """(hidden, lines of code) for each code cell of a MyST notebook's text."""
    for match in _CELL.finditer(text):
        body = match.group(1)
        tags = set(re.findall(r"[\w-]+", " ".join(
            line for line in body.splitlines() if line.startswith(":tags:"))))
        code = [line for line in body.splitlines()
                if line.strip() and not line.startswith(":") and not line.strip().startswith("#")]
        yield bool(tags & HIDDEN_TAGS), len(code)


def shares(paths):
    """{name: (hidden lines, all lines)} for each chapter file."""
    out = {}
    for path in paths:
        hidden = total = 0
        for is_hidden, n in cell_lines(path.read_text()):
            total += n
            hidden += n if is_hidden else 0
        out[path.name] = (hidden, total)
    return out


def main() -> int:
    table = shares(sorted(BOOK.glob("ch0*.md")))
    for name, (hidden, total) in table.items():
        print(f"{name:36s} {hidden:5d} / {total:5d} hidden ({hidden / max(total, 1):.0%})")
    hidden = sum(h for h, _ in table.values())
    total = sum(t for _, t in table.values())
    print(f"{'book':36s} {hidden:5d} / {total:5d} hidden ({hidden / max(total, 1):.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
