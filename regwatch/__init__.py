"""regwatch: monitoring and alerting for machine-learning model registries.

This package is the front door (command line, configuration, the local Elasticsearch node);
the work is done in ``parsers`` (log formats), ``pipeline`` (moving events) and ``rules``.
"""

__version__ = "0.1.0"
