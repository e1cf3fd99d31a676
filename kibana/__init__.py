"""Kibana saved objects for regwatch, generated from the specs in ``kibana/build.py``."""
