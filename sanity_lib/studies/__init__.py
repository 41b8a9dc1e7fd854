"""The book's experiments, built on the core: what the paper's two tests leave open.

==================  ===========================================================================
module              what it studies
==================  ===========================================================================
``noise``           the Gaussian-noise test: maps as noise of growing size is added to weights
``mprt``            two repairs of the MPRT (Hedström et al. 2023): smooth and efficient MPRT
``failures``        why methods fail (the paper's section 5): edge detectors, the input's share
``invariance``      Kindermans et al.'s input-shift test: maps that should not move, do they?
``faithfulness``    deletion and insertion curves: does the map rank the pixels the model uses?
==================  ===========================================================================

Studies use the core (:mod:`sanity_lib.checks`, :mod:`sanity_lib.saliency`, ...); the core
never imports them. Submodules load on first use: ``sl.studies.noise.noise_sweep(...)``.
"""
from sanity_lib._lazy import lazy_package

_SUBMODULES = ("noise", "mprt", "failures", "invariance", "faithfulness")
__all__ = list(_SUBMODULES)

__getattr__, __dir__ = lazy_package(__name__, _SUBMODULES)
