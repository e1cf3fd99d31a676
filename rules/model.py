"""Alert rules as data: YAML files validated by pydantic, errors naming file, rule and key.

Rule types: ``threshold`` (count, sum, avg, max, min, percentile, cardinality of the window
compared with a bound), ``ratio`` (matching events / all events), ``absence`` (fewer than N
events, including none at all), ``match`` (every matching event fires, with optional allow or deny
lists), ``spike`` (the window against the previous one, by a factor), ``anomaly`` (z-score against
the mean and deviation of the previous windows), ``new_term`` (a value never seen in the
look-back) and ``change`` (a field's latest value for a group differs from the last one seen).
Each may group by a field, wait ``for`` a while before firing, and resolve on a separate recovery
bound so a value near the bound does not flap.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from contract.streams import EVENT_KINDS, StreamKind
from contract.validation import StrictModel, location
from contract.yamlfile import YamlFileError, load_yaml
from rules.notify import MESSAGE_FIELDS, UnsafeTemplate, check_template

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}


# The longest duration a rule may hold. ``window: .inf`` or ``1.0e+300`` used to pass validation and
# then fail every cycle of every rule (no date is that far away).
MAX_DURATION_S = 366 * 86400.0
# At most this many intervals per window, and windows of at least a second apart.
MAX_WINDOW_INTERVALS = 100_000
MIN_INTERVAL_S = 1.0


def seconds(text: str | int | float) -> float:
    """``30s``, ``5m``, ``1h``, ``2d`` (or a number of seconds) to seconds: finite, not negative,
    at most 366 days; ValueError saying which otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, shown = float(text), f"{text:g}"
    else:
        shown = repr(str(text)[:40])
        match = _DURATION.match(str(text).strip())
        if match is None:
            raise ValueError(f"not a duration: {shown} (use 30s, 5m, 1h, 2d)")
        value = int(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(value):
        raise ValueError(f"{shown} is not a finite duration (use 30s, 5m, 1h, 2d)")
    if value < 0:
        raise ValueError(f"{shown} is a negative duration")
    if value > MAX_DURATION_S:
        raise ValueError(f"{shown} is more than 366 days")
    return float(value)


def duration_text(value: float) -> str:
    """Seconds as the largest unit that divides them: ``366d``, ``90m``, ``1.5s``."""
    for unit in ("d", "h", "m", "s"):
        if value >= _UNITS[unit] and value % _UNITS[unit] == 0:
            return f"{value / _UNITS[unit]:.0f}{unit}"
    return f"{value:g}s"


Duration = Annotated[float, Field(gt=0)]


class Condition(StrictModel):
    # A bound of .nan never holds and one of .inf never can: both are refused at load.
    model_config = ConfigDict(allow_inf_nan=False)

    op: Literal[">", ">=", "<", "<=", "==", "!="]
    value: float

    def holds(self, measured: float) -> bool:
        return OPERATORS[self.op](measured, self.value)


class Aggregate(StrictModel):
    function: Literal["count", "sum", "avg", "max", "min", "percentile", "cardinality"] = "count"
    field: str | None = None
    percentile: float | None = Field(None, gt=0, lt=100)

    @model_validator(mode="after")
    def _complete(self) -> Aggregate:
        if self.function != "count" and not self.field:
            raise ValueError(f"{self.function} needs a field")
        if self.function == "percentile" and self.percentile is None:
            raise ValueError("percentile needs percentile: (0-100)")
        return self


class Sample(StrictModel):
    """Sample events a notification carries (the newest of its window and group)."""

    size: int = Field(3, ge=0, le=20)
    fields: list[str] | None = None  # None: the whole document


_FIELD = r"^[A-Za-z0-9_@.-]+$"
FieldName = Annotated[str, Field(min_length=1, max_length=256, pattern=_FIELD)]


def _event_kinds() -> list[StreamKind]:
    return list(EVENT_KINDS)


class RuleBase(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    kinds: list[StreamKind] = Field(default_factory=_event_kinds)
    # Any index pattern (Filebeat's, Elastic Agent's, a Kibana data view's title) instead of kinds.
    index: str | None = Field(None, min_length=1, max_length=1000, pattern=r"^[^\s\"\\/?#<>|]+$")
    data_view: str | None = Field(None, min_length=1, max_length=256)  # Kibana data view id (Discover links)
    filter: str | None = None  # a Lucene query string
    kql: str | None = None  # a KQL query (Kibana's query bar)
    query: dict[str, Any] | None = None  # a Query DSL query
    terms: dict[str, str | list[str]] = Field(default_factory=dict)  # exact field filters
    window: Duration = 300.0
    interval: Duration = 60.0
    group_by: FieldName | list[FieldName] | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    for_: float = Field(0.0, ge=0, alias="for")
    labels: dict[str, str] = Field(default_factory=dict)
    # No default: a rule that notifies nobody says so (``notify: []``), it is never an omission.
    notify: list[str] | None = Field(None, validate_default=True)
    message: str = "{rule} is {state}: {value} (bound {threshold}) for {group}"
    # The resolution's own message (unset: "<rule> resolved: <value> (bound <threshold>)", in the
    # rule type's words); ``message`` words the firing and its reminders.
    resolved_message: str | None = None
    time_field: FieldName = "event.ingested"
    renotify: float = Field(0.0, ge=0)  # re-send a firing alert this often (0: never)
    aggregation: float | None = Field(None, gt=0)  # hold notifications and send them together this often
    sample: Sample = Field(default_factory=Sample)
    max_groups: int = Field(100, ge=1, le=10_000)
    # actions: an action the access log and the audit trail both recorded counts once (the larger
    # of the two sources' counts, contract.traffic); documents: every document, whatever its source
    # (a rule that compares the sources, as the audit trail's heartbeat does).
    count: Literal["actions", "documents"] = "actions"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _yaml_booleans(cls, data: Any) -> Any:
        """A key YAML 1.1 read as a boolean (``on:``, ``yes:``, unquoted) is named as such, not as
        pydantic's "Keys should be strings"."""
        if isinstance(data, dict):
            for key in data:
                if isinstance(key, bool):
                    raise ValueError(f"a key read as {str(key).lower()}: YAML reads on, off, yes and no as "
                                     "booleans (the alias a regression or stale_usage rule watches is alias:)")
        return data

    @field_validator("window", "interval", "for_", "renotify", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return seconds(value)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float, info: ValidationInfo) -> float:
        if value < MIN_INTERVAL_S:
            raise ValueError(f"{duration_text(value)}: a rule is evaluated at most once a second (interval >= 1s)")
        window = info.data.get("window")
        if window is not None and window / value > MAX_WINDOW_INTERVALS:
            raise ValueError(f"{duration_text(value)} is too short for window {duration_text(window)}: at most "
                             f"{MAX_WINDOW_INTERVALS} intervals per window")
        return value

    @field_validator("aggregation", mode="before")
    @classmethod
    def _aggregation(cls, value: Any) -> float | None:
        return None if value is None else seconds(value)

    @field_validator("notify")
    @classmethod
    def _targets(cls, value: list[str] | None) -> list[str]:
        if value is None:
            raise ValueError("no notify: name the notifiers to send to, or write notify: [] for none")
        return value

    @field_validator("kql")
    @classmethod
    def _kql(cls, value: str | None) -> str | None:
        if value is not None:
            from contract.kql import KqlError, to_dsl

            try:
                to_dsl(value)
            except KqlError as exc:
                raise ValueError(f"not valid KQL: {exc}") from None
        return value

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value or len(set(value)) != len(value) or len(value) > 4:
                raise ValueError("group_by: one to four distinct fields")
            return value[0] if len(value) == 1 else value
        return value

    @model_validator(mode="after")
    def _source(self) -> RuleBase:
        if self.index is not None and "kinds" in self.model_fields_set:
            raise ValueError("give kinds (regwatch's streams) or index (any index pattern), not both")
        return self

    @property
    def group_fields(self) -> tuple[str, ...]:
        """``group_by`` as a tuple of fields (empty: one group for all)."""
        if self.group_by is None:
            return ()
        return (self.group_by,) if isinstance(self.group_by, str) else tuple(self.group_by)

    @property
    def time_fallback(self) -> str | None:
        """Where a document without the time field is placed in time. Documents with no
        ``event.ingested`` (indexed by another shipper, or by a node without the ingest pipeline)
        are counted by their ``@timestamp``, so they are counted once, never missed."""
        return "@timestamp" if self.time_field == "event.ingested" else None

    @field_validator("message", "resolved_message")
    @classmethod
    def _message(cls, template: str | None) -> str | None:
        if template is None:
            return None
        try:
            check_template(template, MESSAGE_FIELDS)  # checked now, not when the alert fires
        except UnsafeTemplate as exc:
            raise ValueError(str(exc)) from None
        return template


class ThresholdRule(RuleBase):
    type: Literal["threshold"]
    aggregate: Aggregate = Field(default_factory=Aggregate)
    condition: Condition
    recovery: Condition | None = None


class RatioRule(RuleBase):
    type: Literal["ratio"]
    numerator: str  # a Lucene query string selecting the events counted on top
    # Fewer events than this in the window give no ratio (value 0): one failure of one call is not
    # a 100 % error rate. As with Prometheus' `and sum(rate(...)) > n`, a quiet window also resolves.
    min_events: int = Field(0, ge=0)
    condition: Condition
    recovery: Condition | None = None


class AbsenceRule(RuleBase):
    type: Literal["absence"]
    minimum: int = Field(1, ge=1)  # fires when fewer than this many events arrive in the window


class MatchRule(RuleBase):
    type: Literal["match"]
    field: str | None = None  # with allow/deny: the field whose value is checked
    allow: list[str] | None = None  # fire on values outside this list
    deny: list[str] | None = None  # fire on values inside this list
    max_events: int = Field(50, ge=1, le=1000)


class SpikeRule(RuleBase):
    type: Literal["spike"]
    aggregate: Aggregate = Field(default_factory=Aggregate)  # count, or a metric (avg, percentile...)
    direction: Literal["up", "down", "both"] = "up"
    factor: float = Field(3.0, gt=1)  # current window against the previous one
    min_events: int = Field(10, ge=0)  # below this in both windows, no spike is called

    @property
    def condition(self) -> Condition:
        return Condition(op=">=", value=self.factor)


# The anomaly detector replays the rule's history each cycle: at most this many buckets per group,
# and per search (Elasticsearch's search.max_buckets is 65,536).
ANOMALY_MAX_POINTS = 10_000
ANOMALY_MAX_BUCKETS = 65_000


class AnomalyRule(RuleBase):
    """The window's value (a count or any ``aggregate``) per ``bucket``, scored 0-100 by the
    detector of :mod:`rules.anomaly` against the rule's own ``history``: it learns the daily and
    weekly rhythm, fires at ``score`` and resolves under ``recovery``. The defaults are the ones
    benchmarked on NAB (bench/anomaly_bench.py).

    ``buckets`` and ``z`` are accepted for old rule files: a rule that sets either keeps the old
    meaning (a z-score of the window against the ``buckets`` windows before it, bound ``z``)."""

    type: Literal["anomaly"]
    aggregate: Aggregate = Field(default_factory=Aggregate)  # count, or a metric (avg, percentile...)
    bucket: Duration | None = None  # one point of the series (default: the rule's window)
    history: Duration = 14 * 86400.0  # what the detector learns from, replayed each cycle
    score: float = Field(40.0, gt=0, le=100)  # fires at or above this score (0-100)
    recovery: float = Field(25.0, ge=0, lt=100)  # resolves under this score
    direction: Literal["up", "down", "both"] = "both"
    learning: int = Field(288, ge=0)  # buckets of cold start during which it never fires
    buckets: int | None = Field(None, ge=3, le=200)  # old rule files: the z-score's baseline windows
    z: float | None = Field(None, gt=0)  # old rule files: the |z-score| bound

    @field_validator("bucket", "history", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float | None:
        return None if value is None else seconds(value)

    @model_validator(mode="after")
    def _sizes(self) -> AnomalyRule:
        if self.legacy:
            return self
        if self.recovery >= self.score:
            raise ValueError(f"recovery {self.recovery:g} must be under score {self.score:g}")
        points = self.points
        if points > ANOMALY_MAX_POINTS:
            raise ValueError(f"history {duration_text(self.history)} is {points} buckets of "
                             f"{duration_text(self.step)}: at most {ANOMALY_MAX_POINTS}")
        if points <= self.learning:
            raise ValueError(f"history {duration_text(self.history)} is {points} buckets of "
                             f"{duration_text(self.step)}: not more than learning ({self.learning}), so never fires")
        if self.group_by and points * self.max_groups > ANOMALY_MAX_BUCKETS:
            raise ValueError(f"{points} buckets of history x max_groups {self.max_groups} is more than "
                             f"{ANOMALY_MAX_BUCKETS} buckets per search: lower max_groups or history")
        return self

    @property
    def legacy(self) -> bool:
        """An old rule file's z-score (it sets ``buckets`` or ``z``)."""
        return self.buckets is not None or self.z is not None

    @property
    def step(self) -> float:
        """Seconds per point of the series."""
        return self.bucket if self.bucket is not None else self.window

    @property
    def points(self) -> int:
        """Points of history replayed per cycle and group (the current one included)."""
        return max(int(self.history // self.step), 1)

    @property
    def condition(self) -> Condition:
        if self.legacy:
            return Condition(op=">", value=self.z if self.z is not None else 3.0)
        return Condition(op=">=", value=self.score)


class NewTermRule(RuleBase):
    type: Literal["new_term"]
    field: str
    lookback: Duration = 30 * 86400.0
    max_terms: int = Field(10_000, ge=1, le=65_536)

    @field_validator("lookback", mode="before")
    @classmethod
    def _lookback(cls, value: Any) -> float:
        return seconds(value)


class ChangeRule(RuleBase):
    type: Literal["change"]
    field: str  # e.g. modelregistry.model.version, per group_by (e.g. modelregistry.model.name)


class ConsecutiveRule(RuleBase):
    """Fires after ``failures`` checks in a row where ``field`` is false, resolves after ``successes``
    in a row where it is true: the registry-down rule over the probe's availability documents."""

    type: Literal["consecutive"]
    field: str = "modelregistry.probe.up"
    order_by: str = "@timestamp"
    failures: int = Field(3, ge=1, le=100)
    successes: int = Field(2, ge=1, le=100)


def _inventory_kinds() -> list[StreamKind]:
    return ["change", "inventory"]


def _usage_kinds() -> list[StreamKind]:
    return ["change", "retrieval"]


AliasName = Annotated[str, Field(min_length=1, max_length=256)]
RegressionChange = Literal["moved", "registered"]


def _all_changes() -> list[RegressionChange]:
    return ["moved", "registered"]


class RegressionRule(RuleBase):
    """A version worse than the one it replaces (#30): when ``alias`` moves, or a version
    is registered while ``alias`` points to another, the new version's run metric ``metric`` is
    compared with the previous holder's as MLflow's ``MetricThreshold`` compares a candidate with
    its baseline (rules.regression). Fires once per change; a change whose metrics the inventory
    has not read yet is judged on a later cycle, for ``lookback``."""

    type: Literal["regression"]
    kinds: list[StreamKind] = Field(default_factory=_inventory_kinds)
    alias: AliasName = "champion"
    metric: str = Field(min_length=1, max_length=1024)
    greater_is_better: bool = True
    threshold: float | None = None
    min_absolute_change: float | None = Field(None, gt=0)
    min_relative_change: float | None = Field(None, ge=0, le=1)
    changes: list[RegressionChange] = Field(default_factory=_all_changes, min_length=1)
    lookback: Duration = 86400.0  # how long a change is judged again while its metrics are unknown
    history: int = Field(20, ge=1, le=100)  # the alias's latest moves read per model (the holder before)
    max_events: int = Field(200, ge=1, le=1000)  # changes per search
    max_versions: int = Field(10_000, ge=1, le=65_000)  # versions whose metrics one search reads

    @field_validator("lookback", mode="before")
    @classmethod
    def _lookback(cls, value: Any) -> float:
        return seconds(value)


class StaleUsageRule(RuleBase):
    """Clients still pulling a version ``after`` the alias (``alias``) moved away from it (#30): one
    alert per model and version, firing while any client pulls it (at least ``min_pulls`` in the
    window) and resolving when they stop."""

    type: Literal["stale_usage"]
    kinds: list[StreamKind] = Field(default_factory=_usage_kinds)
    alias: AliasName = "champion"
    after: Duration = 3600.0  # the grace after a move: pulls of the old version before then are expected
    min_pulls: int = Field(1, ge=1)
    client_field: FieldName = "source.ip"
    user_field: FieldName = "user.name"
    history: int = Field(20, ge=1, le=100)  # the alias's latest moves read per model
    max_clients: int = Field(20, ge=1, le=1000)  # clients and users named per version

    @field_validator("after", mode="before")
    @classmethod
    def _after(cls, value: Any) -> float:
        return seconds(value)


Rule = Annotated[ThresholdRule | RatioRule | AbsenceRule | MatchRule | SpikeRule | AnomalyRule | NewTermRule
                 | ChangeRule | ConsecutiveRule | RegressionRule | StaleUsageRule, Field(discriminator="type")]


RULE_TYPE_NAMES = frozenset(get_args(model.model_fields["type"].annotation)[0]
                             for model in get_args(get_args(Rule)[0]))


class RuleFile(StrictModel):
    rules: list[Rule]


class RuleError(ValueError):
    """A rule file that does not validate; the message names the file, the rule and the key."""


def check_notifiers(rules: list[Rule], known: set[str]) -> None:
    """Every notifier a rule names exists in the configuration (else RuleError naming both)."""
    problems = [f"rule {rule.name!r}: notify: unknown notifier {name!r} "
                f"(configured: {', '.join(sorted(known)) or 'none'})"
                for rule in rules for name in rule.notify or () if name not in known]
    if problems:
        raise RuleError("\n".join(problems))


def _folders(folders: Path | Sequence[Path]) -> list[Path]:
    return [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]


def rule_files(folders: Path | Sequence[Path]) -> list[Path]:
    """The rule files of ``folders``, in the order they load (folder by folder, by name)."""
    return [path for folder in _folders(folders) for path in sorted(folder.glob("*.y*ml"))]


def fingerprint(folders: Path | Sequence[Path]) -> tuple[tuple[str, float, int], ...]:
    """What changes when a rule file is written, added, removed or renamed: the runner compares it
    each cycle to reload its rules."""
    found = []
    for path in rule_files(folders):
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append((str(path), stat.st_mtime, stat.st_size))
    return tuple(found)


def load_rules(folders: Path | Sequence[Path]) -> list[Rule]:
    """Every rule of ``folders`` (a folder or a list of them, read in order); RuleError, one line
    per problem naming the file, the rule and the key, when any file does not validate or a rule
    name is used twice (naming both files)."""
    rules: list[Rule] = []
    seen: dict[str, Path] = {}
    problems: list[str] = []
    for folder in _folders(folders):
        if not folder.is_dir():
            problems.append(f"{folder}: no such folder of rule files")
    if problems:
        raise RuleError("\n".join(problems))
    for path in rule_files(folders):
        try:
            raw = load_yaml(path) or {}
        except YamlFileError as exc:
            problems.append(str(exc))
            continue
        if not isinstance(raw, dict):
            problems.append(f"{path}: the top level is a {type(raw).__name__}, not a mapping with rules:")
            continue
        try:
            parsed = RuleFile.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors():
                loc = list(error["loc"])
                where = ""
                if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
                    items = raw.get("rules") or []
                    name = (items[loc[1]].get("name", f"#{loc[1]}")
                            if loc[1] < len(items) and isinstance(items[loc[1]], dict) else f"#{loc[1]}")
                    where = f" rule {name!r}"
                    loc = loc[2:]
                    if loc and loc[0] in RULE_TYPE_NAMES:  # pydantic's discriminator step in the path
                        loc = loc[1:]
                key = location(tuple(loc)) if loc else "(rule)"
                problems.append(f"{path}:{where} {key}: {error['msg'].removeprefix('Value error, ')}")
            continue
        for rule in parsed.rules:
            if rule.name in seen:
                problems.append(f"{path}: rule {rule.name!r}: name already used in {seen[rule.name]}")
            seen[rule.name] = path
            rules.append(rule)
    if problems:
        raise RuleError("\n".join(problems))
    return rules
