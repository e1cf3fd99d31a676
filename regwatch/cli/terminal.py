"""What data may put on a terminal or a plugin line: its text, never its control codes.

Model names, groups, file names, hosts and reasons come from log lines and HTTP requests, that is
from anyone who can reach the registry. Printed raw, ``ESC ] 8 ;;`` makes a clickable link, ``ESC [2J``
clears the screen for fake text, ``ESC ] 0 ;`` sets the window title, CR overwrites a line, and a NUL
cuts a Nagios line for readers in C. rich's ``Text`` drops BEL, BS, VT, FF and CR but keeps ESC, so
every value from data goes through :func:`printable` before it meets a terminal.
"""

from __future__ import annotations

import re

# C0 (TAB and LF included: every use is one cell or one line), DEL, C1, lone surrogates, and the
# bidirectional overrides and isolates that reorder what is shown ("Trojan Source").
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """``value`` as text with every control code shown as ``\\xNN`` (``\\uNNNN`` for lone
    surrogates and bidirectional controls); all other characters as they are."""
    return _UNSAFE.sub(_escape, value if isinstance(value, str) else str(value))
