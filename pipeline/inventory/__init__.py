"""The registry's inventory, read from outside: models, versions, aliases and their lineage
(docs/inventory.md). ``client`` talks to MLflow's REST API, ``reader`` turns its answers into a
``Snapshot``, ``diff`` compares two snapshots into change documents, ``writer`` writes them and
``collector`` runs the loop."""
