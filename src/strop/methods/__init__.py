"""Methods: decoding algorithms over any backend, each returning a ``MethodResult``.

Methods are registered by name (``@register_method``) so the CLI and the
server look them up instead of branching on names.
"""

from strop.methods import basic, power, rc  # noqa: F401  (registers the methods)
from strop.methods.base import MethodResult, get_method, method_names, register_method, run_method, run_problem_method, takes_problem


@register_method("ttrl", takes_problem=True)
def ttrl(backend, task, problem, rng, *, progress=None, system=None, config=None):
    """Test-time variant RL (LADDER); lives in strop.ladder, imported only when used (it needs torch and TRL)."""
    from strop.ladder.ttrl import TTRLConfig, test_time_rl

    return test_time_rl(backend, task, problem, rng, config=config or TTRLConfig(), system=system, progress=progress)


__all__ = ["MethodResult", "get_method", "method_names", "register_method", "run_method", "run_problem_method", "takes_problem"]
