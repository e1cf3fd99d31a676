"""Moving events: tailing files, checkpoints, batching and indexing into Elasticsearch.

This room knows no log format; parsers hand it documents and it delivers them exactly once.
"""
