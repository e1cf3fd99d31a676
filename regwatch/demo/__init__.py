"""The demo: a real MLflow registry behind nginx, regwatch's services, a workload, two incidents.

Rooms: :mod:`processes` (start, remember, stop), :mod:`registry` (MLflow and nginx),
:mod:`stack` (regwatch's services and their one configuration), :mod:`workload` and :mod:`wire`
(the generator and what it put on the wire), :mod:`scenario` (the story), :mod:`summary` (the
numbers), :mod:`webhook_sink` (where notifications land).
"""

from regwatch.demo.ports import free_port
from regwatch.demo.registry import mlflow_server

__all__ = ["free_port", "mlflow_server"]
