"""The course layer: what the book and the classroom kit need beyond the library.

==================  ===========================================================================
module              what it is for
==================  ===========================================================================
``grading``         the exercise checks (``sl.grading.check("ch2_ex1", answer)``)
``claims``          the ledger of "the paper found X, we measure Y" claims, per chapter
``widgets``         the kernel-free explorers of the online book
``book``            the chapters' one set-up call (seeds, threads, warnings shown) and glue
``ledger``          the rules that turn a chapter's measurements into "agrees / differs"
==================  ===========================================================================

It uses :mod:`sanity_lib.studies` and the core; neither imports it. Submodules load on first
use.
"""
from sanity_lib._lazy import lazy_package

_SUBMODULES = ("grading", "claims", "widgets", "book", "ledger")
__all__ = list(_SUBMODULES)

__getattr__, __dir__ = lazy_package(__name__, _SUBMODULES)
