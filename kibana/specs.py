"""What regwatch shows in Kibana, as small specs: the visualizations of each dashboard, the
dashboards themselves and the saved searches.

A spec says what a panel shows (its data view, metrics and buckets); ``kibana.lens`` builds the
Lens saved object Kibana imports from it, and the tests derive each panel's Elasticsearch request
from that Lens state (``kibana.lens_query``).
"""

from __future__ import annotations

from dataclasses import dataclass

from contract import streams
from contract.traffic import COUNTED_FAILURES_KQL, USER_TRAFFIC_KQL


@dataclass(frozen=True)
class Metric:
    """One metric column. ``op`` is a Lens operation; or ``actions``: the registry actions among
    the events (``kql`` narrowing them), each counted once when the access log and the audit trail
    both recorded it (``contract.traffic``): the Lens formula ``pick_max(count(kql='<the audit
    trail's>'), count(kql='<the others'>'))``; or ``ratio``: the actions ``kql`` selects over all
    actions among the events ``of`` selects (the formula's "filter by")."""

    op: str  # count | percentile | unique_count | average | max | actions | ratio
    field: str | None = None
    label: str = ""
    percentile: int | None = None
    kql: str | None = None  # a filter on this metric only (Lens "filter by"); ratio: the numerator
    of: str | None = None  # ratio: the KQL selecting the denominator (and the numerator within it)


@dataclass(frozen=True)
class Vis:
    id: str
    title: str
    chart: str  # bar_stacked | line | metric | table | pie
    view: str
    metrics: tuple[Metric, ...]
    x_time: bool = False
    terms: tuple[str, ...] = ()  # bucket fields: for xy the split series, for table/pie the rows
    size: int = 10
    may_be_empty: str | None = None  # why an empty result is expected on the demo (said in the panel)
    description: str = ""
    query: str = ""  # KQL narrowing the whole panel (its query bar): USERS on every panel of registry events
    interval: str = "auto"  # the date histogram's (x_time): "auto" follows the time range, "1d" one bar a day


@dataclass(frozen=True)
class Control:
    """An options list above a dashboard's panels: pick one value of ``field`` (from ``view``)."""

    id: str
    field: str
    title: str
    view: str


COUNT = Metric("count", label="Events")
# Panels over the kinds the audit trail writes too (registrations, version changes, errors) count
# actions: an action seen in the access log and the audit trail is one. Retrievals are in the
# access log only, so their panels count documents (and can rank by them).
ACTIONS = Metric("actions", label="Actions")

# The panels over registry events show users' traffic: the probe's own requests (marked
# modelregistry.synthetic by its User-Agent) are left out by the panel's query, as the built-in
# rules leave them out. Clear the panel's query in Lens to see them.
USERS = USER_TRAFFIC_KQL

# What the registry answers: the calls of the rule ``registry-error-ratio`` (rules/builtin/
# registry.yaml: kinds registration, retrieval, version, error, the probe's left out; numerator
# modelregistry.failure server, auth or throttled), so the dashboard's error rate and the alert's
# are the same number. Access-log lines and alerts are not calls; a 404 on a lookup or a 400
# RESOURCE_ALREADY_EXISTS is a client's control flow, not a failure of the registry.
CALL_KINDS = ("registration", "retrieval", "version", "error")
CALLS = " or ".join(f'data_stream.dataset : "{streams.dataset(kind)}"' for kind in CALL_KINDS)
FAILED = COUNTED_FAILURES_KQL

OVERVIEW = [
    Vis("regwatch-activity-over-time", "Registrations, retrievals and version changes over time", "bar_stacked",
        "regwatch-events", (ACTIONS,), x_time=True, terms=("data_stream.dataset",), size=7,
        description="Actions per kind per interval: the registry's pulse (a write the access log and the audit "
                    "trail both recorded is one).", query=USERS),
    Vis("regwatch-retrievals-by-model", "Retrievals by model (top 10)", "table", "regwatch-retrieval",
        (COUNT,), terms=("modelregistry.model.name",), query=USERS),
    Vis("regwatch-retrievals-by-version", "Retrievals by model version (top 10)", "table", "regwatch-retrieval",
        (COUNT,), terms=("modelregistry.model.name", "modelregistry.model.version"), query=USERS),
    Vis("regwatch-errors-4xx-5xx", "Errors over time, 4xx and 5xx apart", "bar_stacked", "regwatch-error",
        (Metric("actions", label="4xx", kql="http.response.status_code >= 400 and http.response.status_code < 500"),
         Metric("actions", label="5xx", kql="http.response.status_code >= 500")),
        x_time=True, query=USERS),
    Vis("regwatch-error-rate", "Error rate", "metric", "regwatch-events",
        (Metric("ratio", label="Failed calls / all calls", kql=FAILED, of=CALLS),),
        description="Failed registry calls (5xx, 401, 403, 429) over all registry calls (registrations, "
                    "retrievals, version changes, errors), as the registry-error-ratio rule counts them; "
                    "a 404 on a lookup or another 4xx is the client's, not a failure of the registry.", query=USERS),
    Vis("regwatch-latency-percentiles", "Response time p50 / p95 / p99", "line", "regwatch-events",
        (Metric("percentile", "event.duration", "p50", 50), Metric("percentile", "event.duration", "p95", 95),
         Metric("percentile", "event.duration", "p99", 99)), x_time=True, query=USERS),
    Vis("regwatch-availability-probes", "Availability (health probe)", "line", "regwatch-availability",
        (Metric("count", label="Probes up", kql="modelregistry.probe.up : true"),
         Metric("count", label="Probes down", kql="modelregistry.probe.up : false")), x_time=True,
        may_be_empty="filled by the availability probe; empty until one runs"),
    Vis("regwatch-requests-by-user", "Requests by user", "table", "regwatch-events", (ACTIONS,),
        terms=("user.name",), query=USERS),
    Vis("regwatch-requests-by-source", "Requests by source address", "table", "regwatch-events", (ACTIONS,),
        terms=("source.ip",), query=USERS),
    Vis("regwatch-latest-errors", "Latest errors", "table", "regwatch-error", (ACTIONS,),
        terms=("event.action", "http.response.status_code", "modelregistry.model.name"), size=20, query=USERS),
]

MODEL_ACTIVITY = [
    Vis("regwatch-model-versions", "Versions and their activity", "table", "regwatch-events", (ACTIONS,),
        terms=("modelregistry.model.version", "event.action"), query=USERS),
    Vis("regwatch-model-aliases", "Aliases set and removed", "table", "regwatch-version", (ACTIONS,),
        terms=("modelregistry.model.alias", "event.action", "modelregistry.model.version"), query=USERS),
    Vis("regwatch-model-stages", "Stage transitions", "table", "regwatch-version", (ACTIONS,),
        terms=("modelregistry.model.stage", "modelregistry.model.version"), query=USERS,
        may_be_empty=("a stage transition names its stage and version in the request body, which an access log "
                      "does not record, and MLflow's webhooks do not announce it: this panel is filled by audit "
                      "records that carry it (Databricks, SageMaker, an audit file in regwatch's schema)")),
    Vis("regwatch-model-downloaders", "Who downloads it", "table", "regwatch-retrieval", (COUNT,),
        terms=("source.ip", "user_agent.original"), query=USERS),
    Vis("regwatch-model-churn", "Version churn over time", "bar_stacked", "regwatch-version", (ACTIONS,),
        x_time=True, terms=("event.action",), query=USERS),
]

ALERTS = [
    Vis("regwatch-alerts-firing", "Alerts firing now", "metric", "regwatch-alert",
        (Metric("count", label="Firing", kql='event.action : "firing"'),),
        may_be_empty="filled by the rule runner; empty until it runs"),
    Vis("regwatch-alerts-by-rule", "Alerts by rule and severity", "table", "regwatch-alert", (COUNT,),
        terms=("modelregistry.alert.rule", "modelregistry.alert.severity"),
        may_be_empty="filled by the rule runner; empty until it runs"),
    Vis("regwatch-alerts-timeline", "Alert timeline", "bar_stacked", "regwatch-alert", (COUNT,), x_time=True,
        terms=("event.action",), may_be_empty="filled by the rule runner; empty until it runs"),
]

# Which versions are in use (#30 item 3; rules/usage.py answers the same questions in the terminal:
# regwatch downloads, stale, unused). A download named with its version (pipeline/attribution.py
# names artifact downloads from the inventory) counts here as a file fetched: the query language
# Kibana's objects are held to has no suffix match for "its MLmodel file", which the CLI counts as
# whole models pulled.
NAMED_DOWNLOADS = (f'event.action : "artifact-download" and event.outcome : "success" and '
                   f'modelregistry.model.version : * and {USERS}')
ALIAS_CHANGES = (f'data_stream.dataset : "{streams.dataset("change")}" and '
                 '(event.action : "alias-set" or event.action : "alias-removed")')
NOT_NAMED = f'(modelregistry.attribution : "unattributed" or modelregistry.attribution : "ambiguous") and {USERS}'
INVENTORY_EMPTY = ("filled once `regwatch inventory` records the registry and the shipper names downloads from it "
                   "(docs/inventory.md); empty until then")
FILES = Metric("count", label="Files downloaded")

VERSIONS_IN_USE = [
    Vis("regwatch-usage-downloads-over-time", "Files downloaded per version over time", "bar_stacked",
        "regwatch-retrieval", (FILES,), x_time=True, terms=("modelregistry.model.version",), size=20,
        query=NAMED_DOWNLOADS, may_be_empty=INVENTORY_EMPTY,
        description="Artifact files fetched, per version the inventory names them by: which versions clients "
                    "actually pull, and when they switch. Pick a model above: versions of different models "
                    "share numbers."),
    Vis("regwatch-usage-downloads-per-day", "Downloads per version per day", "table", "regwatch-retrieval",
        (FILES,), x_time=True, interval="1d", terms=("modelregistry.model.name", "modelregistry.model.version"),
        size=50, query=NAMED_DOWNLOADS, may_be_empty=INVENTORY_EMPTY,
        description="Files fetched per model version and day. `regwatch downloads` counts the same, with whole "
                    "models pulled and by which hosts and users."),
    Vis("regwatch-usage-alias-timeline", "Alias timeline", "table", "regwatch-events",
        (Metric("count", label="Moves"),), x_time=True,
        terms=("modelregistry.model.alias", "modelregistry.model.version", "event.action"), size=50,
        query=ALIAS_CHANGES, may_be_empty="filled by `regwatch inventory`; empty until it runs",
        description="Every alias set, moved or removed, with the version it then pointed to (on a removal, the "
                    "version it left), when `regwatch inventory` saw it. `regwatch history MODEL --at TIME` says "
                    "what an alias pointed to at any moment."),
    Vis("regwatch-usage-unnamed", "Retrievals that could not be named", "metric", "regwatch-retrieval",
        (Metric("count", label="Not named"),), query=NOT_NAMED, may_be_empty=INVENTORY_EMPTY,
        description="Artifact downloads no registered version's files hold (unattributed), and downloads or alias "
                    "lookups that could be one of several versions (ambiguous: files shared, or an alias that moved "
                    "between two looks of the inventory). With a model picked above, only its alias lookups."),
]

VERSIONS_IN_USE_HELP = """**Model versions in use**

Which versions clients really pull, from retrievals the shipper names by version with what
`regwatch inventory` recorded of the registry (docs/inventory.md). In the terminal: `regwatch
downloads [MODEL] [--by host|user]`, `regwatch stale` (versions still pulled after their alias
moved on), `regwatch unused` (versions holding an alias nobody downloads), `regwatch history`.
"""

# (id, title, data view, columns, query): the errors search shows users' errors, with their kind
SEARCHES = [
    ("regwatch-search-errors", "regwatch: errors", "regwatch-error",
     ["event.action", "http.response.status_code", "modelregistry.failure", "error.code", "error.message",
      "modelregistry.model.name", "source.ip", "url.path"], USERS),
    ("regwatch-search-deadletters", "regwatch: dead-letters (raw line and reason)", "regwatch-deadletter",
     ["error.type", "error.message", "event.original", "log.file.path", "log.offset"], ""),
]

OVERVIEW_HELP = """**Model Registry Overview**

* **Activity over time**: actions per kind (registration, retrieval, version, error, access). A
  write that both the access log and the audit trail recorded is one action (the larger of the two
  sources' counts in each bar), so shipping both never doubles a rate.
* **Retrievals by model / by version**: what is being pulled, most first.
* **Errors, 4xx and 5xx apart**: client mistakes (4xx: missing models, bad names) against
  server failures (5xx: the registry or its proxy is down).
* **Error rate**: failed registry calls (5xx, 401, 403, 429: `modelregistry.failure` server, auth,
  throttled) over all registry calls (registrations, retrievals, version changes, errors) in the
  time range: the number the `registry-error-ratio` rule watches. A 404 on a lookup and a 400
  `RESOURCE_ALREADY_EXISTS` are MLflow's client asking, not the registry failing.
* **Response time p50 / p95 / p99**: from `event.duration` where the log has timings.
* **Availability**: results of the health probe (`metrics-modelregistry.availability-*`); empty
  until a probe runs.
* **Requests by user / by source**: who is calling.
* **Latest errors**: the failing operations, with status and model.

The panels over registry events leave the probe's own requests out (their query
`not modelregistry.synthetic : true`; clear it to see them).

Dead-letters (lines that could not be parsed) are in the saved search *regwatch: dead-letters*.
"""

# The anomaly rules' results (rules/results.py), as Elastic ML's Single Metric Viewer shows a
# job's: per rule and group (picked above), the actual value of each bucket against the expected
# value and the band of usual values, and the score. A bucket is one point: max and min of one
# value per series are that value; over a wider interval, the highest actual and upper bound and
# the lowest lower bound of its buckets (Lens's ``min`` and ``max`` operations: minOperation and
# maxOperation of x-pack/platform/plugins/shared/lens/public/datasources/form_based/operations/
# definitions/metrics.tsx).
ANOMALY_EMPTY = "filled by the rule runner's anomaly rules (one result per bucket); empty until one runs"
ANOMALY_CONTROLS = (Control("rule", "modelregistry.anomaly.rule", "Anomaly rule", "regwatch-anomaly"),
                    Control("group", "modelregistry.anomaly.group", "Group", "regwatch-anomaly"))
ANOMALIES = [
    Vis("regwatch-anomaly-band", "Actual against the expected band", "line", "regwatch-anomaly",
        (Metric("max", "modelregistry.anomaly.actual", "Actual"),
         Metric("max", "modelregistry.anomaly.expected", "Expected"),
         Metric("min", "modelregistry.anomaly.lower", "Usual from"),
         Metric("max", "modelregistry.anomaly.upper", "Usual to")), x_time=True, may_be_empty=ANOMALY_EMPTY,
        description="Pick a rule and a group above: each bucket's value against what was expected for that time "
                    "of day and week, and the band of usual values. Outside the band is unusual; how unusual is "
                    "the score."),
    Vis("regwatch-anomaly-score", "Anomaly score over time", "line", "regwatch-anomaly",
        (Metric("max", "modelregistry.anomaly.score", "Score"),), x_time=True,
        terms=("modelregistry.anomaly.rule",), may_be_empty=ANOMALY_EMPTY,
        description="0 to 100, the highest of the interval per rule; a rule fires at its score bound (40 by "
                    "default) and resolves under its recovery bound."),
    Vis("regwatch-anomaly-top", "Highest anomaly scores", "table", "regwatch-anomaly",
        (Metric("max", "modelregistry.anomaly.score", "Highest score"),),
        terms=("modelregistry.anomaly.rule", "modelregistry.anomaly.group"), size=20, may_be_empty=ANOMALY_EMPTY,
        description="The rules and groups most unusual in the time range. `regwatch top` shows the scores of now."),
]

ANOMALIES_HELP = """**Anomalies**

What the anomaly rules saw, bucket by bucket (`logs-modelregistry.anomaly-*`, written by the rule
runner): the actual value against the expected value and the band of usual values, learnt from
the rule's history with its daily and weekly rhythm, and the score (0-100). Pick a rule and a
group above. `regwatch top` lists the highest scores of now; `regwatch rules test` explains one rule.
"""

MODEL_CONTROL = (Control("model", "modelregistry.model.name", "Model", "regwatch-events"),)

DASHBOARDS = [
    ("regwatch-dashboard-overview", "Model Registry Overview", OVERVIEW, OVERVIEW_HELP, ()),
    ("regwatch-dashboard-model", "Model activity", MODEL_ACTIVITY,
     ("Pick a model with the control above: its versions, aliases, stages, who downloads it, and how fast "
      "its versions change."), MODEL_CONTROL),
    ("regwatch-dashboard-versions", "Model versions in use", VERSIONS_IN_USE, VERSIONS_IN_USE_HELP, MODEL_CONTROL),
    ("regwatch-dashboard-alerts", "Alerts", ALERTS,
     "Alert history from `logs-modelregistry.alert-*`, written by the rule runner.", ()),
    ("regwatch-dashboard-anomalies", "Anomalies", ANOMALIES, ANOMALIES_HELP, ANOMALY_CONTROLS),
]
