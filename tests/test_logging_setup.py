"""Logging set up twice in one process (a command run in-process after another)."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from regwatch.logging import configure


def test_a_second_set_up_still_reaches_a_logger_used_before_it(capsys) -> None:
    """A logger is cached at its first use; a command run in-process sets logging up again. The
    logger must follow (and stay within reach of ``capture_logs``), not keep writing as before:
    a shipper test's log events went to stderr instead of its capture after such a command ran."""
    configure("WARNING", json=True)
    log = structlog.get_logger("test_logging_setup")
    log.warning("before")
    configure("WARNING", json=True)
    with capture_logs() as logs:
        log.warning("after", docs=1)
    assert logs == [{"event": "after", "docs": 1, "log_level": "warning"}]
    assert '"after"' not in capsys.readouterr().err
