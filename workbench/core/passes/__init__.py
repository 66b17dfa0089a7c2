"""Optimization passes: one transform per module, a registry, and recipes."""

from .base import Option, Pass, PassContext, PassReport, PassResult
from .recipe import PassSpec, Recipe
from .registry import all_passes, get_pass

__all__ = ["Option", "Pass", "PassContext", "PassReport", "PassResult", "PassSpec", "Recipe",
           "all_passes", "get_pass"]
