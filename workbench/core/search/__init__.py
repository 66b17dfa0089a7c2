"""Automatic search for the best build within an accuracy budget (Optuna; local pool or Ray)."""

from .executors import Executor, LocalExecutor, RayExecutor, make_executor
from .run import OBJECTIVES, SearchResult, SearchTrial, pareto_front, search
from .space import SearchSpace

__all__ = ["search", "SearchResult", "SearchTrial", "SearchSpace", "pareto_front", "OBJECTIVES",
           "Executor", "LocalExecutor", "RayExecutor", "make_executor"]
