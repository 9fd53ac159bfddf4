"""Emulator configuration: API keys, workflow catalog, durations and outcomes.

A configuration can come from a Python ``dict``, a JSON file or a YAML file.
Every validation problem raises :class:`EmulatorConfigError` naming the source
and the offending field, e.g. ``config.yaml: workflows[2].nodeCount must be a
positive integer``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_smartmca.testing.behaviour import BEHAVIOUR_FIELDS, Behaviour, parse_behaviour
from airflow_provider_smartmca.testing.catalog import DEFAULT_ACTIONS, DEFAULT_KEYS, DEFAULT_WORKFLOWS
from airflow_provider_smartmca.testing.faults import parse_fault

__all__ = [
    "DEFAULT_KEYS",
    "DEFAULT_WORKFLOWS",
    "ApiKey",
    "EmulatorConfig",
    "EmulatorConfigError",
    "EmulatorError",
    "Outcome",
    "WorkflowDef",
    "load_config",
]


class EmulatorError(RuntimeError):
    """Raised when the emulator cannot start or is misused (e.g. port in use)."""


class EmulatorConfigError(EmulatorError, ValueError):
    """Raised when an emulator configuration is invalid."""


@dataclass
class ApiKey:
    """An accepted API key.

    :param key: the full secret sent as ``Authorization: Bearer <key>``.
    :param name: label used in request logs (the key itself is never logged).
    :param scopes: granted scopes.
    """

    key: str
    name: str
    scopes: frozenset[str]


@dataclass
class Outcome:
    """How executions of a workflow end.

    :param kind: ``succeed``, ``fail`` or ``cancel``.
    :param at_node: 1-based node where the failure/cancellation happens; for
        ``cancel`` 0 means "cancelled before the first node starts". ``None`` with
        a failure probability means "a node chosen by the seeded RNG".
    :param fail_probability: when set, each execution fails with this probability
        (deterministic per execution given ``seed`` and its sequence number).
    :param seed: RNG seed for ``fail_probability``.
    :param error: error reported on the failing node (string or object).
    """

    kind: str = "succeed"
    at_node: int | None = None
    fail_probability: float | None = None
    seed: int = 0
    error: str | dict[str, Any] | None = None


@dataclass
class WorkflowDef:
    """A workflow definition as served by ``GET /workflows/{id}`` plus emulation knobs."""

    id: str
    name: str
    entityType: str
    description: str = ""
    icon: str = "workflow"
    category: str = "general"
    triggerType: str = "manual"
    status: str = "active"
    isActive: bool = True
    version: int = 1
    triggerConditions: dict[str, Any] = field(default_factory=dict)
    onFailure: str = "stop"
    maxRetries: int = 0
    nodeCount: int = 3
    nodes: list[str] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)
    pending_seconds: float | None = None
    node_seconds: float | None = None

    def node_names(self) -> list[str]:
        """Return exactly ``nodeCount`` node names (configured ones first)."""
        names = list(self.nodes[: self.nodeCount])
        names.extend(f"Step {i + 1}" for i in range(len(names), self.nodeCount))
        return names

    def summary(self) -> dict[str, Any]:
        """Shape used by ``GET /workflows``."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "icon": self.icon,
            "category": self.category,
            "entityType": self.entityType,
            "triggerType": self.triggerType,
            "status": self.status,
            "isActive": self.isActive,
            "version": self.version,
        }

    def detail(self) -> dict[str, Any]:
        """Shape used by ``GET /workflows/{id}``."""
        out = self.summary()
        out["triggerConditions"] = copy.deepcopy(self.triggerConditions)
        out["onFailure"] = self.onFailure
        out["maxRetries"] = self.maxRetries
        out["nodeCount"] = self.nodeCount
        return out


@dataclass
class EmulatorConfig:
    """Validated emulator configuration.

    :param keys: accepted API keys by secret.
    :param workflows: catalog by id (insertion order is the listing order).
    :param pending_seconds: default time an execution stays ``pending``.
    :param node_seconds: default time each node runs.
    :param clock_starts_on_first_get: start an execution's clock at its first
        ``GET /workflows/executions/{id}`` instead of at trigger time.
    :param actions: application action name -> workflow id.
    :param request_log_size: maximum number of request log entries kept.
    :param rate_limit: value of ``X-RateLimit-Limit`` on injected 429s.
    :param faults: fault specs (as for :func:`parse_fault`) installed at start and after each reset.
    :param behaviour: server-wide behaviours at start and after each reset (clock offset,
        Date header, list order and lag, trailing-slash lists, contract drift).
    """

    keys: dict[str, ApiKey]
    workflows: dict[str, WorkflowDef]
    pending_seconds: float = 0.2
    node_seconds: float = 0.1
    clock_starts_on_first_get: bool = False
    actions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ACTIONS))
    request_log_size: int = 10000
    rate_limit: int = 100
    faults: list[dict[str, Any]] = field(default_factory=list)
    behaviour: Behaviour = field(default_factory=Behaviour)

    @classmethod
    def default(cls) -> EmulatorConfig:
        """Return the default configuration."""
        return load_config(None)


class _Checker:
    """Small helper that formats errors as ``<source>: <field> <problem>``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> EmulatorConfigError:
        return EmulatorConfigError(f"{self.source}: {where} {problem}")

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, "must be an object")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(where, "must be a non-empty string")
        return value

    def pos_int(self, value: Any, where: str, allow_zero: bool = False) -> int:
        ok = (
            isinstance(value, int)
            and not isinstance(value, bool)
            and (value >= 0 if allow_zero else value > 0)
        )
        if not ok:
            raise self.fail(
                where, "must be a non-negative integer" if allow_zero else "must be a positive integer"
            )
        return int(value)

    def seconds(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise self.fail(where, "must be a non-negative number of seconds")
        return float(value)

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, "must be true or false")
        return value


def _read_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EmulatorConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from exc
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml  # lazy: only needed for YAML configs

        try:
            return yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise EmulatorConfigError(f"{path.name}: invalid YAML ({exc})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EmulatorConfigError(f"{path.name}: invalid JSON ({exc})") from exc


def _parse_outcome(c: _Checker, raw: Any, where: str) -> Outcome:
    if raw is None or raw == "succeed":
        return Outcome()
    if raw == "fail":
        return Outcome(kind="fail", at_node=1)
    if raw == "cancel":
        return Outcome(kind="cancel", at_node=0)
    m = c.mapping(raw, where)
    known = {"fail_at_node", "cancel_at_node", "fail_probability", "seed", "error"}
    for k in m:
        if k not in known:
            raise c.fail(f"{where}.{k}", f"is not a known outcome field (expected one of {sorted(known)})")
    out = Outcome()
    if "fail_at_node" in m and "cancel_at_node" in m:
        raise c.fail(where, "cannot set both fail_at_node and cancel_at_node")
    if "fail_at_node" in m:
        out.kind, out.at_node = "fail", c.pos_int(m["fail_at_node"], f"{where}.fail_at_node")
    if "cancel_at_node" in m:
        out.kind = "cancel"
        out.at_node = c.pos_int(m["cancel_at_node"], f"{where}.cancel_at_node", allow_zero=True)
    if "fail_probability" in m:
        p = m["fail_probability"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise c.fail(f"{where}.fail_probability", "must be a number between 0 and 1")
        out.fail_probability = float(p)
    if "seed" in m:
        if isinstance(m["seed"], bool) or not isinstance(m["seed"], int):
            raise c.fail(f"{where}.seed", "must be an integer")
        out.seed = m["seed"]
    if "error" in m:
        err = m["error"]
        if not isinstance(err, (str, dict)):
            raise c.fail(f"{where}.error", "must be a string or an object")
        out.error = err
    return out


_WF_STR = ("name", "entityType", "description", "icon", "category", "triggerType", "status", "onFailure")


def _parse_workflow(c: _Checker, raw: Mapping[str, Any], where: str, base: WorkflowDef | None) -> WorkflowDef:
    wid = c.string(raw.get("id"), f"{where}.id")
    if base is None:
        wf = WorkflowDef(
            id=wid,
            name=c.string(raw.get("name"), f"{where}.name"),
            entityType=c.string(raw.get("entityType"), f"{where}.entityType"),
        )
    else:
        wf = copy.deepcopy(base)
    for key, value in raw.items():
        w = f"{where}.{key}"
        if key == "id":
            continue
        if key in _WF_STR:
            setattr(wf, key, value if key == "description" and value == "" else c.string(value, w))
        elif key == "isActive":
            wf.isActive = c.boolean(value, w)
        elif key in ("version", "nodeCount"):
            setattr(wf, key, c.pos_int(value, w))
        elif key == "maxRetries":
            wf.maxRetries = c.pos_int(value, w, allow_zero=True)
        elif key == "triggerConditions":
            wf.triggerConditions = dict(c.mapping(value, w))
        elif key == "nodes":
            if not isinstance(value, list) or not all(isinstance(n, str) and n for n in value):
                raise c.fail(w, "must be a list of non-empty strings")
            wf.nodes = list(value)
            if "nodeCount" not in raw:
                wf.nodeCount = max(1, len(value))
        elif key == "outcome":
            wf.outcome = _parse_outcome(c, value, w)
        elif key in ("pending_seconds", "node_seconds"):
            setattr(wf, key, c.seconds(value, w))
        else:
            raise c.fail(w, "is not a known workflow field")
    if "isActive" in raw and "status" not in raw:
        wf.status = "active" if wf.isActive else "inactive"
    at = wf.outcome.at_node
    if at is not None and at > wf.nodeCount:
        raise c.fail(f"{where}.outcome", f"refers to node {at} but the workflow has {wf.nodeCount} nodes")
    return wf


def _parse_keys(c: _Checker, raw: Any) -> dict[str, ApiKey]:
    keys: dict[str, ApiKey] = {}
    items: list[tuple[str, Any]]
    if isinstance(raw, Mapping):  # {"secret": {"name":..., "scopes": [...]}} or {"secret": [...scopes]}
        items = [(str(k), v) for k, v in raw.items()]
    elif isinstance(raw, list):
        items = []
        for i, entry in enumerate(raw):
            m = c.mapping(entry, f"keys[{i}]")
            items.append((c.string(m.get("key"), f"keys[{i}].key"), m))
    else:
        raise c.fail("keys", "must be a list or an object")
    for idx, (secret, spec) in enumerate(items):
        where = f"keys[{idx}]"
        if isinstance(spec, (list, str)):
            spec = {"scopes": spec}
        m = c.mapping(spec, where)
        scopes = m.get("scopes", [])
        if isinstance(scopes, str):
            scopes = scopes.split()
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise c.fail(f"{where}.scopes", "must be a list of strings or a space-separated string")
        name = m.get("name", secret[:9] + "…")  # never the full key
        keys[secret] = ApiKey(key=secret, name=c.string(name, f"{where}.name"), scopes=frozenset(scopes))
    return keys


_TOP = {
    "keys",
    "workflows",
    "replace_default_workflows",
    "durations",
    "pending_seconds",
    "node_seconds",
    "clock_starts_on_first_get",
    "actions",
    "request_log_size",
    "rate_limit",
    "faults",
    *BEHAVIOUR_FIELDS,
}


def load_config(source: EmulatorConfig | Mapping[str, Any] | str | Path | None) -> EmulatorConfig:
    """Build an :class:`EmulatorConfig`.

    :param source: ``None`` (defaults), a mapping, an existing config, or a path
        to a ``.json`` / ``.yaml`` / ``.yml`` file.
    :raises EmulatorConfigError: when the configuration is invalid.
    """
    if isinstance(source, EmulatorConfig):
        return source
    if source is None:
        raw: Any = {}
        c = _Checker("config")
    elif isinstance(source, (str, Path)):
        path = Path(source)
        c = _Checker(path.name)
        raw = _read_file(path)
    else:
        raw = source
        c = _Checker("config")
    m = c.mapping(raw, "(top level)")
    for k in m:
        if k not in _TOP:
            raise c.fail(k, f"is not a known setting (expected one of {sorted(_TOP)})")

    keys = _parse_keys(c, m["keys"]) if "keys" in m else _parse_keys(c, DEFAULT_KEYS)
    default_checker = _Checker("<defaults>")
    workflows: dict[str, WorkflowDef] = {}
    replace = c.boolean(m.get("replace_default_workflows", False), "replace_default_workflows")
    if not replace:
        for i, d in enumerate(DEFAULT_WORKFLOWS):
            workflows[d["id"]] = _parse_workflow(default_checker, d, f"defaults[{i}]", None)
    wfs = m.get("workflows", [])
    if not isinstance(wfs, list):
        raise c.fail("workflows", "must be a list")
    for i, entry in enumerate(wfs):
        em = c.mapping(entry, f"workflows[{i}]")
        wid = c.string(em.get("id"), f"workflows[{i}].id")
        workflows[wid] = _parse_workflow(c, em, f"workflows[{i}]", workflows.get(wid))

    cfg = EmulatorConfig(keys=keys, workflows=workflows)
    durations = dict(c.mapping(m.get("durations", {}), "durations"))
    for k in ("pending_seconds", "node_seconds", "clock_starts_on_first_get"):
        if k in m:
            durations[k] = m[k]
    for k, v in durations.items():
        if k in ("pending_seconds", "node_seconds"):
            setattr(cfg, k, c.seconds(v, f"durations.{k}"))
        elif k == "clock_starts_on_first_get":
            cfg.clock_starts_on_first_get = c.boolean(v, f"durations.{k}")
        else:
            raise c.fail(f"durations.{k}", "is not a known duration setting")
    if "actions" in m:
        for action, wid in c.mapping(m["actions"], "actions").items():
            if action not in DEFAULT_ACTIONS:
                raise c.fail(f"actions.{action}", f"is not an application action ({sorted(DEFAULT_ACTIONS)})")
            cfg.actions[action] = c.string(wid, f"actions.{action}")
    for action, wid in cfg.actions.items():
        if wid not in workflows:
            raise c.fail(f"actions.{action}", f'refers to unknown workflow "{wid}"')
    if "request_log_size" in m:
        cfg.request_log_size = c.pos_int(m["request_log_size"], "request_log_size")
    if "rate_limit" in m:
        cfg.rate_limit = c.pos_int(m["rate_limit"], "rate_limit")
    faults = m.get("faults", [])
    if not isinstance(faults, list):
        raise c.fail("faults", "must be a list")
    for i, spec in enumerate(faults):
        spec = dict(c.mapping(spec, f"faults[{i}]"))
        try:
            parse_fault(spec)
        except ValueError as exc:
            raise c.fail(f"faults[{i}]:", str(exc)) from None
        cfg.faults.append(spec)
    try:
        cfg.behaviour = parse_behaviour({k: m[k] for k in BEHAVIOUR_FIELDS if k in m})
    except ValueError as exc:
        raise EmulatorConfigError(f"{c.source}: {exc}") from None
    return cfg
