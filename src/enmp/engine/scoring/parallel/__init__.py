"""Parallel candidate evaluation on Ray actors: cluster set-up, the actor, and the evaluator back-end."""

from .cluster import plan_workers, start_ray
from .pool import ParallelEvaluator

__all__ = ["ParallelEvaluator", "plan_workers", "start_ray"]
