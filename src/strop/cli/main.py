"""``strop``: command-line entry point.

User errors (``StropError``) print one line on stderr and exit 2; usage
errors (an unknown option or command, a bad value, a missing argument) print
click's message and a usage line and exit 2; a traceback means a bug in strop.
The commands live in ``strop.cli.app``; they are imported here only after the
plugins have loaded, so a broken plugin is one line too, and ``--help`` lists
the plugins' methods.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from strop.errors import StropError

# click's exception base as typer raises it: typer 0.2x carries its own copy of click (typer._click), whose
# exceptions are not the installed click's. typer.BadParameter is click's BadParameter in either case.
_CLICK_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    err = Console(stderr=True)
    try:
        from strop.methods import load_plugins

        load_plugins()
        from strop.cli.app import app

        app(standalone_mode=False, prog_name="strop")  # also under python -m strop: usage lines name the command users type
    except StropError as e:
        from rich.markup import escape

        # soft_wrap: no hard line breaks, so a command in the message stays copy-pasteable.
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted")
        sys.exit(130)
    except _CLICK_ERROR as e:  # usage errors (a typo in an option, a bad value, a missing argument) in non-standalone mode
        e.show()  # click's own message and a usage line, no traceback
        sys.exit(e.exit_code)
