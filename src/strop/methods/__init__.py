"""Methods: decoding algorithms as step machines over any backend, each returning a ``MethodResult``.

Each method module registers a ``MethodSpec`` (``register_method``), so the
CLI, the eval harness and the server look methods up instead of branching on
names; ``strop.engine`` runs any number of them at once. Plugins (more
methods, from entry points or ``STROP_PLUGINS``) load on the first look-up.
"""

from strop.methods import basic, power, rc  # noqa: F401  (registers the methods)
from strop.methods.base import (
    MethodResult,
    MethodSpec,
    get_method,
    load_plugins,
    make_steps,
    method_names,
    method_settings,
    method_spec,
    register_method,
    run_method,
    settings_record,
    takes_question,
)
from strop.methods.options import Option, Settings, option, options

__all__ = ["MethodResult", "MethodSpec", "Option", "Settings", "get_method", "load_plugins", "make_steps", "method_names",
           "method_settings", "method_spec", "option", "options", "register_method", "run_method", "settings_record",
           "takes_question"]
