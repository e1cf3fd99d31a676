"""structlog set up once: key=value events as JSON lines on stderr (or console on a terminal)."""

from __future__ import annotations

import logging
import sys

import structlog


class StderrLogger:
    """Writes each event to ``sys.stderr`` as it is when the event is written, not as it was when
    logging was set up: a command run in-process (by a test, or by a tool that swaps the stream)
    never leaves the loggers writing to a stream that was closed since."""

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = failure = msg


def _stderr_logger(*_args: object) -> StderrLogger:
    return StderrLogger()


def configure(level: str = "INFO", json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    # The list is replaced in place, not swapped for a new one: a logger already used holds the
    # list it was first used with (cache_logger_on_first_use), so a second set-up in one process
    # (a command run in-process) would otherwise leave it writing as before, and beyond the reach
    # of structlog.testing.capture_logs, which changes the configured list in place.
    processors = structlog.get_config()["processors"]
    processors[:] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )
    # The client logs every request at INFO, and each failed node at WARNING with a traceback,
    # through the stdlib; regwatch logs those failures itself, in one line. DEBUG shows them all.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    quiet = logging.DEBUG if logging.getLevelName(level) == logging.DEBUG else logging.ERROR
    logging.getLogger("elastic_transport").setLevel(quiet)
