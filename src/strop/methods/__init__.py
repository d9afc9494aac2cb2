"""Methods: decoding algorithms over any backend, each returning a ``MethodResult``.

Methods are registered by name (``@register_method``) so the CLI and the
server look them up instead of branching on names.
"""

from strop.methods.base import MethodResult, get_method, method_names, register_method, run_method
from strop.methods import basic, power, rc  # noqa: F401  (registers the methods)

__all__ = ["MethodResult", "get_method", "method_names", "register_method", "run_method"]
