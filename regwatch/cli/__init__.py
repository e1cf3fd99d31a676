"""Monitor an MLflow (or other) model registry: its access and audit logs shipped into
Elasticsearch as typed events, the registry probed from outside, alerts when it misbehaves,
dashboards in Kibana and Grafana, and a live view in the terminal.

Start with `make demo`. On your own registry: `regwatch setup`, then `ship`, `probe` and `rules run`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import structlog
import typer
from rich.text import Text

from regwatch.cli import check, demo, deps, es, inventory, kibana, probe, receiver, rules, shipping, top
from regwatch.cli.common import err, set_log_level
from regwatch.cli.help_labels import use_readable_labels
from regwatch.cli.terminal import printable

use_readable_labels()  # TEXT, PATH, RULE in --help, not <str>, <path>, <bool>

# Tracebacks never show locals (a bind failure once printed the webhook secret that way).
app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False,
                  pretty_exceptions_show_locals=False)
app.add_typer(es.app, name="es")
app.add_typer(rules.app, name="rules")
app.add_typer(kibana.app, name="kibana")
app.add_typer(receiver.app, name="audit-receiver")
app.add_typer(check.app, name="check")
app.add_typer(demo.app, name="demo")
for group in (shipping, probe, inventory, deps, top):
    for command in group.app.registered_commands:
        app.registered_commands.append(command)


@app.callback()
def _root(log_level: Annotated[str | None, typer.Option(
        metavar="LEVEL",
        help="how much to log: DEBUG, INFO, WARNING, ERROR (default: INFO for daemons, WARNING otherwise)")] = None,
) -> None:
    set_log_level(log_level)


def _usage_line(exc: Exception) -> str:
    """A command line typer refuses, in one line that says where to read the right one:
    ``No such option: --bogus (Possible options: --routes) (see regwatch parse --help)``, not a
    usage line, a hint and a box."""
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None) or "regwatch"
    return f"{' '.join(message.split())} (see {command} --help)"


def main() -> None:
    from typer import exceptions as typer_exceptions
    from typer._click import exceptions as click_exceptions

    try:
        code = app(standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError:  # the help is printed as the error is made
        sys.exit(2)
    except click_exceptions.ClickException as exc:  # an unknown option, a bad value, a missing argument
        err.print(Text.assemble(("error: ", "red"), printable(_usage_line(exc))), highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer_exceptions.Abort:  # end of input at a prompt
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C before a command runs (typer turns it into 130 while one does)
        sys.exit(130)
    except Exception as exc:  # the last guard: one line, no traceback, non-zero
        structlog.get_logger("regwatch").debug("unexpected_error", exc_info=True)
        err.print(Text.assemble(("error: ", "red"),
                                f"unexpected {type(exc).__name__}: {printable(' '.join(str(exc).split())[:500])}"
                                " (run with --log-level DEBUG for the traceback)"), highlight=False, soft_wrap=True)
        sys.exit(1)
    # typer.Exit(n) comes back as n, Ctrl-C as 130; a command's own return value is no exit status
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)
