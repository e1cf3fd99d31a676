"""The one exception a format parser raises: the line is not what the format says."""


class ParseError(ValueError):
    """A line that cannot become an event; becomes a dead-letter with this reason."""

    def __init__(self, reason: str, error_type: str = "parse_error") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_type = error_type
