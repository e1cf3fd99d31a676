"""Alert rules: query aggregates of the event data streams and notify people."""
