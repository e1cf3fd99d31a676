"""The outside view of a registry: health checks, a synthetic registry transaction, host resources.

The access log only shows requests that reached the registry; the probe tells an idle registry
from a dead one. Each check becomes one availability document in
``metrics-modelregistry.availability-<namespace>`` and a set of Prometheus series.
"""
