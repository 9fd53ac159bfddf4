"""SmartMCAHook: an Airflow connection turned into safe calls to every SmartMCA endpoint."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

# Through common-compat: airflow.sdk has no BaseHook before Airflow 3.1.
from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_smartmca.client.endpoints import ENDPOINTS
from airflow_provider_smartmca.client.executions import ExecutionWatch, Verdict
from airflow_provider_smartmca.client.protocol import backoff_seconds, list_executions_query, validate_id
from airflow_provider_smartmca.client.settings import ClientSettings, settings_from_connection
from airflow_provider_smartmca.errors import (
    SmartMCAError,
    SmartMCAExecutionTimeoutError,
    SmartMCAValidationError,
    is_transient,
)
from airflow_provider_smartmca.hooks.exactly_once import post_once

if TYPE_CHECKING:
    from airflow_provider_smartmca.client.sync import SyncClient

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: Default seconds :meth:`SmartMCAHook.patiently` keeps retrying a read through transient failures.
DEFAULT_PATIENCE = 600.0


def mask_key(secret: str) -> None:
    """Register the API key with Airflow's secrets masker (also in the supervisor, when there is one)."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore[no-redef]
    mask_secret(secret)


def requires_scope(endpoint_name: str) -> Callable[[F], F]:
    """Declare which endpoint (and so which scope) a hook method calls; read by docs and tests."""
    endpoint = ENDPOINTS[endpoint_name]

    def mark(func: F) -> F:
        func.required_scope = endpoint.scope  # type: ignore[attr-defined]
        func.endpoint = endpoint  # type: ignore[attr-defined]
        return func

    return mark


def parse_timestamp(value: Any) -> datetime | None:
    """Parse an API timestamp (ISO 8601, ``Z`` allowed); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class SmartMCAHook(BaseHook):
    """
    Calls the SmartMCA public API through one pooled HTTP session.

    The connection is resolved once per hook instance, its API key (the connection password)
    is registered with the secrets masker, and every call goes through the shared client
    protocol: id validation, scope check, retries, error mapping.

    :param smartmca_conn_id: the Airflow connection id.
    :param timeout: read timeout per request, seconds (overrides the connection extra).
    :param max_retries: retries for retryable failures (overrides the connection extra).
    :param retry_min_wait: first backoff wait, seconds (overrides the connection extra).
    :param retry_max_wait: cap of one backoff wait, seconds (overrides the connection extra).
    :param retry_after_cap: cap on a server's ``Retry-After``, seconds (overrides the connection extra).
    """

    conn_name_attr = "smartmca_conn_id"
    default_conn_name = "smartmca_default"
    conn_type = "smartmca"
    hook_name = "SmartMCA"

    def __init__(
        self,
        smartmca_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry_min_wait: float | None = None,
        retry_max_wait: float | None = None,
        retry_after_cap: float | None = None,
    ) -> None:
        super().__init__()
        self.smartmca_conn_id = smartmca_conn_id
        #: Called with a JSON "intent" just before each POST that starts an execution; see
        #: :func:`~airflow_provider_smartmca.hooks.exactly_once.post_once`.
        self.post_intent_listener: Callable[[dict[str, Any]], None] | None = None
        self._overrides: dict[str, Any] = dict(
            timeout=timeout,
            max_retries=max_retries,
            retry_min_wait=retry_min_wait,
            retry_max_wait=retry_max_wait,
            retry_after_cap=retry_after_cap,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(smartmca_conn_id={self.smartmca_conn_id!r})"

    @cached_property
    def settings(self) -> ClientSettings:
        """The client settings from the connection, resolved once per hook."""
        conn = self.get_connection(self.smartmca_conn_id)
        if conn.password:
            mask_key(conn.password)
        settings = settings_from_connection(
            host=conn.host, port=conn.port, password=conn.password, extra=conn.extra_dejson
        )
        return settings.with_overrides(**self._overrides)

    @cached_property
    def client(self) -> SyncClient:
        """The sync client, with one keep-alive ``requests.Session`` for this hook's life."""
        from airflow_provider_smartmca.client.sync import SyncClient  # requests is imported only here

        return SyncClient(self.settings)

    def get_conn(self) -> SyncClient:
        """Return the sync client (Airflow's hook interface)."""
        return self.client

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        if "client" in self.__dict__:
            self.client.close()

    # --- workflows -------------------------------------------------------------------------------

    @requires_scope("list_workflows")
    def list_workflows(self, entity_type: str | None = None, category: str | None = None) -> dict[str, Any]:
        """
        List the active workflow definitions. Needs ``workflows:read``.

        :param entity_type: only workflows for this entity type (deal, application, merchant).
        :param category: only workflows of this category.
        :return: ``{"data": [workflow, ...], "total": n}``
        """
        query = {}
        if entity_type is not None:
            query["entity_type"] = validate_id("entity_type", entity_type, "list_workflows")
        if category is not None:
            query["category"] = validate_id("category", category, "list_workflows")
        return self.client.call("list_workflows", query=query)

    @requires_scope("get_workflow")
    def get_workflow(self, workflow_id: str) -> dict[str, Any]:
        """
        Get one workflow definition. Needs ``workflows:read``.

        :param workflow_id: the workflow definition id, e.g. ``wf_abc123``.
        """
        return self.client.call("get_workflow", path_params={"workflow_id": workflow_id})

    @requires_scope("trigger_workflow")
    def trigger_workflow(self, workflow_type: str, entity_type: str, entity_id: str) -> dict[str, Any]:
        """
        Start a workflow execution for one entity. Needs ``workflows:trigger``.

        The POST is re-sent only when the server surely did not act on it. When the outcome is
        unknown (timeout after sending, dropped connection, 5xx), the hook looks up executions of
        this workflow and entity started since the request instead, and returns the one it finds.

        :param workflow_type: the workflow definition id.
        :param entity_type: the entity type; must match the workflow's.
        :param entity_id: the entity's id.
        :return: the 202 body, with ``executionId``.
        :raises SmartMCAAmbiguousTriggerError: the outcome is unknown and the lookup could not tell.
        """
        op = "trigger_workflow"
        body = {
            "workflowType": validate_id("workflow_type", workflow_type, op),
            "entityType": validate_id("entity_type", entity_type, op),
            "entityId": validate_id("entity_id", entity_id, op),
        }
        lookup = {"workflow_type": workflow_type, "entity_type": entity_type, "entity_id": entity_id}
        return post_once(self, op, None, body, lookup)

    @requires_scope("list_executions")
    def list_executions(
        self,
        workflow_type: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        status: str | None = None,
        page: int = 1,
        limit: int = 20,
        sort_by: str = "startedAt",
        sort_order: str = "desc",
    ) -> dict[str, Any]:
        """
        List one page of executions. Needs ``workflows:read``.

        :param workflow_type: filter by workflow definition id.
        :param entity_type: filter by entity type.
        :param entity_id: filter by entity id.
        :param status: one of pending, running, completed, failed, cancelled.
        :param page: page number, from 1.
        :param limit: items per page, 1 to 100.
        :param sort_by: sort field, ``startedAt`` by default.
        :param sort_order: ``asc`` or ``desc``.
        :return: ``{"data": [...], "total": n, ...}``
        """
        query = list_executions_query(
            workflow_type=workflow_type,
            entity_type=entity_type,
            entity_id=entity_id,
            status=status,
            page=page,
            limit=limit,
            sort_by=sort_by,
            sort_order=sort_order,
        )
        return self.client.call("list_executions", query=query)

    @requires_scope("list_executions")
    def iter_executions(self, limit: int = 100, **filters: Any) -> Iterator[dict[str, Any]]:
        """
        Yield every matching execution, fetching pages lazily. Needs ``workflows:read``.

        :param limit: page size, 1 to 100.
        :param filters: any ``list_executions`` argument but ``page``.
        """
        if "page" in filters:
            raise SmartMCAValidationError(
                "page", "iter_executions walks every page itself", operation="iter_executions"
            )
        list_executions_query(limit=limit, **filters)  # validate before the first request is sent
        page = 1
        while True:
            result = self.list_executions(page=page, limit=limit, **filters)
            items = result["data"]
            yield from items
            total = result.get("total")
            if not items or len(items) < limit or (isinstance(total, int) and page * limit >= total):
                return
            page += 1

    @requires_scope("get_execution")
    def get_execution(self, execution_id: str) -> dict[str, Any]:
        """
        Get one execution with node-level detail. Needs ``workflows:read``.

        :param execution_id: the ``executionId`` returned by a trigger.
        """
        return self.client.call("get_execution", path_params={"execution_id": execution_id})

    # --- applications ----------------------------------------------------------------------------

    @requires_scope("change_application_status")
    def change_application_status(self, application_id: str, **body: Any) -> dict[str, Any]:
        """
        Change an application's status. Needs ``workflows:trigger``.

        :param application_id: the application id.
        :param body: the JSON body, e.g. ``status="approved", reason="..."``.
        """
        return self._application_action("change_application_status", application_id, body)

    @requires_scope("advance_application_stage")
    def advance_application_stage(self, application_id: str, **body: Any) -> dict[str, Any]:
        """
        Advance an application to its next stage. Needs ``workflows:trigger``.

        :param application_id: the application id.
        :param body: the JSON body, if any.
        """
        return self._application_action("advance_application_stage", application_id, body)

    @requires_scope("assign_underwriter")
    def assign_underwriter(self, application_id: str, **body: Any) -> dict[str, Any]:
        """
        Assign an underwriter to an application. Needs ``underwriting:trigger``.

        :param application_id: the application id.
        :param body: the JSON body, e.g. ``underwriterId="uw_1"``.
        """
        return self._application_action("assign_underwriter", application_id, body)

    def _application_action(self, name: str, application_id: str, body: dict[str, Any]) -> dict[str, Any]:
        validate_id("application_id", application_id, name)
        try:
            json.dumps(body)
        except (TypeError, ValueError) as exc:
            raise SmartMCAValidationError(
                "body", f"is not JSON serializable: {exc}", operation=name
            ) from None
        lookup = {"entity_type": "application", "entity_id": application_id}
        return post_once(self, name, {"application_id": application_id}, body, lookup)

    # --- finding executions ------------------------------------------------------------------

    def find_executions_since(
        self,
        since: datetime,
        *,
        workflow_type: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """
        Executions matching the filters that started at or after ``since``, newest first.

        Pages are walked newest first and the walk stops at the first older execution.
        An execution without ``startedAt`` (not started yet) counts as recent.

        :param since: an aware datetime.
        :param workflow_type: filter by workflow definition id.
        :param entity_type: filter by entity type.
        :param entity_id: filter by entity id.
        """
        found = []
        executions = self.iter_executions(
            workflow_type=workflow_type,
            entity_type=entity_type,
            entity_id=entity_id,
            sort_by="startedAt",
            sort_order="desc",
        )
        for execution in executions:
            started = parse_timestamp(execution.get("startedAt"))
            if started is not None and started < since:
                break  # sorted newest first: the rest is older
            found.append(execution)
        return found

    # --- riding out an API storm --------------------------------------------------------------

    def patiently(
        self, read: Callable[..., T], *args: Any, patience: float = DEFAULT_PATIENCE, **kwargs: Any
    ) -> T:
        """
        Call a read-only method, riding out an API storm, for reads a task cannot do without.

        Transient failures (network, 429, 5xx) that outlast the per-call retries are retried with
        backoff (honouring ``Retry-After``) for up to ``patience`` seconds; other errors raise at once.
        Never use it for a POST: those are handled by the exactly-once logic instead.

        :param read: the read, e.g. ``hook.get_execution``.
        :param patience: seconds to keep trying after the first failure.
        """
        deadline = time.monotonic() + patience
        failures = 0
        while True:
            try:
                return read(*args, **kwargs)
            except SmartMCAError as exc:
                if not is_transient(exc) or time.monotonic() >= deadline:
                    raise
                failures += 1
                wait = min(
                    backoff_seconds(self.settings, failures, exc), max(0.0, deadline - time.monotonic())
                )
                self.log.warning("%s; the API looks overloaded, reading again in %.1f s", exc, wait)
                time.sleep(wait)

    # --- waiting ---------------------------------------------------------------------------------

    def wait_for_execution(
        self, execution_id: str, *, poll_interval: float = 30.0, deadline: float | None = None
    ) -> dict[str, Any]:
        """
        Poll an execution on this worker until it ends, and return it (whatever its end status).

        Transient errors (network, 429, 5xx), once the per-call retries are spent, are logged and
        polled again: they never fail the wait. Unknown statuses keep waiting, with a warning.

        :param execution_id: the execution to wait for.
        :param poll_interval: seconds between polls.
        :param deadline: absolute epoch seconds after which to give up, or None.
        :raises SmartMCAExecutionTimeoutError: the deadline passed; the execution is left running.
        """
        validate_id("execution_id", execution_id, "wait_for_execution")
        watch = ExecutionWatch(execution_id, self.log)
        while True:
            wait = poll_interval
            try:
                execution = self.get_execution(execution_id)
            except SmartMCAError as exc:
                if not is_transient(exc):
                    raise
                wait = watch.failed(exc, self.settings, poll_interval)
            else:
                if watch.seen(execution) in (Verdict.SUCCESS, Verdict.FAILURE):
                    return execution
            if deadline is not None and time.time() + wait > deadline:
                if time.time() >= deadline:
                    raise SmartMCAExecutionTimeoutError(
                        watch.timeout_message(), execution_id=execution_id, execution_status=watch.last_status
                    )
                wait = max(0.0, deadline - time.time())
            time.sleep(wait)

    # --- connection test -------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Check the connection with one cheap read-only call (``GET /workflows``), without retries."""
        try:
            settings = self.settings
            result = self.client.call("list_workflows", retry=False)
        except SmartMCAError as exc:
            where = self.settings.base_url if "settings" in self.__dict__ else self.smartmca_conn_id
            return False, f"SmartMCA connection to {where} failed: {exc}"
        return True, f"Connected to {settings.base_url}: {len(result['data'])} workflow(s) visible"
