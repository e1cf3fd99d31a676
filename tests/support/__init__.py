"""Shared test support: parsing helpers, shipping helpers, the hostile corpus, fault-injecting programs."""
