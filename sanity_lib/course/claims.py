"""Record what each chapter measured, for the book's reproduction report.

Every chapter ends with a (hidden) cell that records its claims: what the paper says, what
the chapter measured, and whether the two agree. The appendix "Reproduction report" gathers
them into one table. Claims are stored as one JSON file per chapter in the book's build folder
(``book/_build/claims/``), next to the execution cache, so cleaning the build cleans both.

Examples
--------
>>> import tempfile, os
>>> os.environ["SANITY_LIB_CLAIMS"] = tempfile.mkdtemp()
>>> record_claims("ch0", [dict(claim="1 + 1 = 2", paper="2", measured="2", agrees=True)])
>>> load_claims()[["chapter", "claim", "agrees"]].values.tolist()
[['ch0', '1 + 1 = 2', True]]
"""
import json
import os
from pathlib import Path

import pandas as pd

COLUMNS = ("chapter", "claim", "paper", "source", "measured", "agrees", "setting")
VERDICTS = {True: "agrees", False: "differs", None: "partly"}


def claims_dir() -> Path:
    """``$SANITY_LIB_CLAIMS`` if set, else ``book/_build/claims`` of this repository."""
    if os.environ.get("SANITY_LIB_CLAIMS"):
        return Path(os.environ["SANITY_LIB_CLAIMS"])
    return Path(__file__).resolve().parents[2] / "book" / "_build" / "claims"


def record_claims(chapter: str, claims: list) -> None:
    """Replace the claims of ``chapter`` by ``claims``.

    Parameters
    ----------
    chapter : str
        Short id such as ``"ch3"``.
    claims : list of :class:`sanity_lib.course.ledger.Claim` or dict
        Ledger records, or dicts each with ``claim`` (what is tested), ``paper`` (what the paper reports), ``measured``
        (what the chapter measured, as text with numbers), ``agrees`` (True, False, or None for
        "partly") and optionally ``source`` (the paper's figure or section) and ``setting``
        (where our setting differs from the paper's).
    """
    rows = []
    for item in claims:
        if hasattr(item, "as_dict"):
            item = item.as_dict()
        missing = {"claim", "paper", "measured", "agrees"} - set(item)
        if missing:
            raise ValueError(f"a claim of {chapter} lacks {sorted(missing)}: {item}")
        if item["agrees"] not in VERDICTS:
            raise ValueError(f"'agrees' must be True, False or None, not {item['agrees']!r}")
        rows.append({"chapter": chapter, "setting": "", "source": "", **item})
    folder = claims_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{chapter}.json.tmp"
    tmp.write_text(json.dumps(rows, indent=1, default=str))
    os.replace(tmp, folder / f"{chapter}.json")


def load_claims() -> pd.DataFrame:
    """All recorded claims, sorted by chapter, with a readable ``verdict`` column."""
    rows = []
    for path in sorted(claims_dir().glob("*.json")):
        rows += json.loads(path.read_text())
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["verdict"] = table["agrees"].map(VERDICTS)
    return table
