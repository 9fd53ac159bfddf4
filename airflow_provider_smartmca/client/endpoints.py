"""The SmartMCA API's facts, in one table: a new endpoint is one row here plus one hook method.

A row holds the path, the method, the scope, whether re-sending is harmless, and the parser of
its 2xx answer (:mod:`~airflow_provider_smartmca.client.contract`).

The emulator in :mod:`airflow_provider_smartmca.testing` keeps its own model of the API on
purpose, so that a mistake in this table shows up as a failing test instead of being mirrored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_smartmca.client import contract

API_PREFIX = "/api/public/v1"

SCOPE_READ = "workflows:read"
SCOPE_TRIGGER = "workflows:trigger"
SCOPE_UNDERWRITING = "underwriting:trigger"
KNOWN_SCOPES = frozenset({SCOPE_READ, SCOPE_TRIGGER, SCOPE_UNDERWRITING})
#: A 2xx answer's parser: (endpoint name, decoded JSON or None, lower-cased headers) -> typed object.
Parser = Callable[[str, Any, Mapping[str, str]], Any]


@dataclass(frozen=True)
class Endpoint:
    """
    One API endpoint.

    :param name: the hook method that calls it; also used in error messages.
    :param method: HTTP method.
    :param path: path template below :data:`API_PREFIX`; ``{name}`` placeholders are ids.
    :param scope: the scope the API key needs.
    :param idempotent: True when re-sending after an unknown outcome cannot cause a second effect.
    :param parse: turns the decoded JSON of a 2xx (None for an empty body) and the response headers
        into the endpoint's typed object; called with the endpoint's name for its messages.
    """

    name: str
    method: str
    path: str
    scope: str
    idempotent: bool
    parse: Parser = field(repr=False, compare=False)

    @property
    def path_params(self) -> tuple[str, ...]:
        """The names of the ids that go into the path, in order."""
        parts = self.path.split("{")[1:]
        return tuple(part.split("}", 1)[0] for part in parts)


def _get(name: str, path: str, parse: Parser) -> Endpoint:
    return Endpoint(name, "GET", path, SCOPE_READ, True, parse)


def _post(
    name: str, path: str, scope: str = SCOPE_TRIGGER, parse: Parser = contract.parse_action_response
) -> Endpoint:
    return Endpoint(name, "POST", path, scope, False, parse)


ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        _get("list_workflows", "/workflows", contract.parse_workflow_list),
        _get("get_workflow", "/workflows/{workflow_id}", contract.parse_workflow),
        _post("trigger_workflow", "/workflows/trigger", parse=contract.parse_trigger_response),
        _get("list_executions", "/workflows/executions", contract.parse_execution_page),
        _get("get_execution", "/workflows/executions/{execution_id}", contract.parse_execution),
        _post("change_application_status", "/applications/{application_id}/change-status"),
        _post("advance_application_stage", "/applications/{application_id}/advance-stage"),
        _post("assign_underwriter", "/applications/{application_id}/assign-underwriter", SCOPE_UNDERWRITING),
    )
}
