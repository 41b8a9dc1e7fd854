"""Moved: the helpers for sanity-checking your own model now live where they belong.

==========================  ============================================
was ``own_model.``          now
==========================  ============================================
``train_cached``            :func:`sanity_lib.training.train_cached`
``list_modules``            :func:`sanity_lib.models.list_modules`
``group_problems``          :func:`sanity_lib.models.group_problems`
``preflight``               :func:`sanity_lib.checks.preflight`
``verdict``                 :func:`sanity_lib.checks.verdict`
==========================  ============================================

This module only re-exports them, so notebooks written against the old names keep working.
"""
from sanity_lib.checks.preflight import STATUSES, preflight
from sanity_lib.checks.verdicts import DEFAULT_THRESHOLD, VERDICTS, verdict
from sanity_lib.models.groups import group_problems, list_modules
from sanity_lib.training import train_cached

__all__ = ["train_cached", "list_modules", "group_problems", "preflight", "verdict",
           "STATUSES", "VERDICTS", "DEFAULT_THRESHOLD"]
