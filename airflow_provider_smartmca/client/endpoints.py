"""The SmartMCA API's facts, in one table: a new endpoint is one row here plus one hook method.

The emulator in :mod:`airflow_provider_smartmca.testing` keeps its own model of the API on
purpose, so that a mistake in this table shows up as a failing test instead of being mirrored.
"""

from __future__ import annotations

from dataclasses import dataclass

API_PREFIX = "/api/public/v1"

SCOPE_READ = "workflows:read"
SCOPE_TRIGGER = "workflows:trigger"
SCOPE_UNDERWRITING = "underwriting:trigger"
KNOWN_SCOPES = frozenset({SCOPE_READ, SCOPE_TRIGGER, SCOPE_UNDERWRITING})


@dataclass(frozen=True)
class Endpoint:
    """
    One API endpoint.

    :param name: the hook method that calls it; also used in error messages.
    :param method: HTTP method.
    :param path: path template below :data:`API_PREFIX`; ``{name}`` placeholders are ids.
    :param scope: the scope the API key needs.
    :param idempotent: True when re-sending after an unknown outcome cannot cause a second effect.
    """

    name: str
    method: str
    path: str
    scope: str
    idempotent: bool

    @property
    def path_params(self) -> tuple[str, ...]:
        """The names of the ids that go into the path, in order."""
        parts = self.path.split("{")[1:]
        return tuple(part.split("}", 1)[0] for part in parts)


def _get(name: str, path: str) -> Endpoint:
    return Endpoint(name, "GET", path, SCOPE_READ, idempotent=True)


def _post(name: str, path: str, scope: str = SCOPE_TRIGGER) -> Endpoint:
    return Endpoint(name, "POST", path, scope, idempotent=False)


ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        _get("list_workflows", "/workflows"),
        _get("get_workflow", "/workflows/{workflow_id}"),
        _post("trigger_workflow", "/workflows/trigger"),
        _get("list_executions", "/workflows/executions"),
        _get("get_execution", "/workflows/executions/{execution_id}"),
        _post("change_application_status", "/applications/{application_id}/change-status"),
        _post("advance_application_stage", "/applications/{application_id}/advance-stage"),
        _post("assign_underwriter", "/applications/{application_id}/assign-underwriter", SCOPE_UNDERWRITING),
    )
}
