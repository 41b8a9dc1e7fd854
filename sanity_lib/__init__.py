"""sanity_lib: sanity checks for saliency maps (Adebayo et al., NeurIPS 2018).

The library behind the course book. Its submodules load lazily, so ``import sanity_lib``
is quick and a reader only pays for what they use::

    import sanity_lib as sl
    x, y = sl.data.load_mnist("test")
    model = sl.models.mnist_cnn()
    maps = sl.saliency.explain(model, x[:4], "gradient")
"""
from sanity_lib._lazy import lazy_package

__version__ = "0.1.0"

# The core a practitioner uses on their own model, then the book's studies and the course
# layer (arrows point down only: course -> studies -> core).
_SUBMODULES = (
    "data", "models", "training", "saliency", "similarity", "randomization",
    "checks", "plotting", "studies", "course", "own_model",
)
# Short names for what notebooks and readers call most: sl.grading.check(...) in every
# exercise notebook, and the names the modules had before the layers were split.
_SHORTCUTS = {
    "grading": "course.grading", "widgets": "course.widgets", "reporting": "course.claims",
    "noise_study": "studies.noise", "mprt": "studies.mprt", "analysis": "studies.failures",
}
# The two sanity checks are the library's headline: reachable as sl.model_randomization_test.
_FROM_CHECKS = ("model_randomization_test", "data_randomization_test", "SanityCheckResult")

__all__ = list(_SUBMODULES) + list(_SHORTCUTS) + list(_FROM_CHECKS)

__getattr__, __dir__ = lazy_package(
    __name__, _SUBMODULES, shortcuts=_SHORTCUTS,
    attributes={name: "checks" for name in _FROM_CHECKS}, extra_names=["__version__"])
