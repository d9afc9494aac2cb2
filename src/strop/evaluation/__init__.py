"""Measuring methods the same way: metrics (and, next, the eval harness)."""

from strop.evaluation.metrics import wilson_interval

__all__ = ["wilson_interval"]
