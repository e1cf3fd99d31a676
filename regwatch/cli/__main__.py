"""``python -m regwatch.cli``."""

from regwatch.cli import main

main()
