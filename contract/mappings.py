"""The one mapping every regwatch data stream shares (``contract/mappings.yaml``).

The shipper installs it in the index templates, Kibana's data views and the rule language read
their field types from it: a field is declared once, here.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml


def mappings() -> dict[str, Any]:
    """A fresh copy of the mapping (callers may change theirs)."""
    text = resources.files("contract").joinpath("mappings.yaml").read_text()
    return yaml.safe_load(text)
