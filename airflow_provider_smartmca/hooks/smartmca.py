"""SmartMCAHook: an Airflow connection turned into safe calls to every SmartMCA endpoint."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

# Through common-compat: airflow.sdk has no BaseHook before Airflow 3.1.
from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

from airflow_provider_smartmca.client.contract import (
    Accepted,
    Execution,
    ExecutionPage,
    Workflow,
    WorkflowList,
)
from airflow_provider_smartmca.client.endpoints import ENDPOINTS
from airflow_provider_smartmca.client.executions import ExecutionWatch, check_failure_statuses
from airflow_provider_smartmca.client.listing import ListingWalk
from airflow_provider_smartmca.client.protocol import (
    Deadline,
    check_ids,
    list_executions_query,
    spending,
    validate_id,
)
from airflow_provider_smartmca.client.settings import ClientSettings, check_number, settings_from_connection
from airflow_provider_smartmca.errors import (
    SmartMCAAuthError,
    SmartMCAError,
    SmartMCAExecutionTimeoutError,
    SmartMCAValidationError,
)
from airflow_provider_smartmca.hooks.start_once import OnIntent, StartBudget, StartRequest, start_once, walk

if TYPE_CHECKING:
    from airflow_provider_smartmca.client.sync import SyncClient

T = TypeVar("T")

#: Default seconds :meth:`SmartMCAHook.patiently` keeps retrying a read through transient failures.
DEFAULT_PATIENCE = 600.0
#: The hook's own client settings, overriding the connection's.
HOOK_PARAMS = ("timeout", "max_retries", "retry_min_wait", "retry_max_wait", "retry_after_cap")


def mask_key(secret: str) -> None:
    """Register the API key with Airflow's secrets masker (also in the supervisor, when there is one)."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore[no-redef]
    mask_secret(secret)


def check_body(operation: str, body: Any) -> dict[str, Any]:
    """A POST body: a dict of JSON values (no NaN or infinity, which JSON cannot carry), or a clear error."""
    if not isinstance(body, Mapping):
        problem = f"must be a dict, got {type(body).__name__}"
        raise SmartMCAValidationError("payload", problem, operation=operation)
    try:
        json.dumps(body, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SmartMCAValidationError("payload", f"is not valid JSON: {exc}", operation=operation) from None
    return dict(body)


class SmartMCAHook(BaseHook):
    """
    Calls the SmartMCA public API through one pooled HTTP session.

    The connection is resolved once per hook instance, its API key (the connection password)
    is registered with the secrets masker, and every call goes through the shared client
    protocol: id validation, scope check, retries, error mapping, and the response contract
    (:mod:`~airflow_provider_smartmca.client.contract`): methods return typed objects, whose
    ``raw`` attribute is the JSON as received.

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
        given = (timeout, max_retries, retry_min_wait, retry_max_wait, retry_after_cap)
        self._overrides: dict[str, Any] = dict(zip(HOOK_PARAMS, given, strict=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(smartmca_conn_id={self.smartmca_conn_id!r})"

    @classmethod
    def get_connection(cls, conn_id: str) -> Any:
        """
        The connection, wherever ``airflow connections get`` finds it.

        Inside a task (or the triggerer, or DAG parsing) the Task SDK's lookup answers, through the
        supervisor. Outside one (``smartmca-check``, a plain script) Airflow 3.3's Task SDK reads only
        the environment and configured secrets backends; a connection it does not find there is read
        with ``airflow.models.Connection.get_connection_from_secrets``, which also reads the metadata
        database. "Inside" is Airflow's own test: the task runner holds its supervisor channel.
        """
        try:
            return super().get_connection(conn_id)
        except AirflowNotFoundException:
            runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
            if hasattr(runner, "SUPERVISOR_COMMS"):
                raise
            # A worker with the Task SDK only has no airflow.models: the ImportError then says so.
            from airflow.models.connection import Connection
        return Connection.get_connection_from_secrets(conn_id)

    @cached_property
    def settings(self) -> ClientSettings:
        """The client settings from the connection, resolved once per hook."""
        conn = self.get_connection(self.smartmca_conn_id)
        if conn.password:
            mask_key(conn.password)
        settings = settings_from_connection(
            host=conn.host, port=conn.port, password=conn.password, extra=conn.extra_dejson
        )
        if settings.api_key != conn.password:
            mask_key(settings.api_key)  # the masker matches exact strings: the stripped key too
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

    def reload_connection(self) -> None:
        """Forget the resolved connection, so the next call reads it again (a rotated key)."""
        self.close()
        self.__dict__.pop("client", None)
        self.__dict__.pop("settings", None)

    def list_workflows(self, entity_type: str | None = None, category: str | None = None) -> WorkflowList:
        """
        List the active workflow definitions. Needs ``workflows:read``.

        :param entity_type: only workflows for this entity type (deal, application, merchant).
        :param category: only workflows of this category.
        """
        query = check_ids("list_workflows", entity_type=entity_type, category=category)
        return self.client.call("list_workflows", query=query)

    def get_workflow(self, workflow_id: str) -> Workflow:
        """
        Get one workflow definition. Needs ``workflows:read``.

        :param workflow_id: the workflow definition id, e.g. ``wf_abc123``.
        """
        return self.client.call("get_workflow", path_params={"workflow_id": workflow_id})

    def trigger_workflow(
        self, workflow_type: str, entity_type: str, entity_id: str, *, on_intent: OnIntent | None = None
    ) -> Accepted:
        """
        Start a workflow execution for one entity, at most once. Needs ``workflows:trigger``, and
        ``workflows:read`` to recover a lost answer.

        The POST is re-sent only when the server surely did not receive it. When the outcome is
        unknown (a timeout after sending, a dropped connection, a 5xx, a 202 without
        ``executionId``), the execution it started is looked up instead; see
        :mod:`~airflow_provider_smartmca.hooks.start_once`.

        :param workflow_type: the workflow definition id.
        :param entity_type: the entity type; must match the workflow's.
        :param entity_id: the entity's id.
        :param on_intent: called with the POST's intent just before it is sent, and with None when
            the server surely did not act on it; operators store it to survive a worker's death.
        :return: the 202, or the recovered execution (``recovered=True``).
        :raises SmartMCAAmbiguousTriggerError: the outcome is unknown and the lookup could not tell.
        """
        op = "trigger_workflow"
        ids = {"workflow_type": workflow_type, "entity_type": entity_type, "entity_id": entity_id}
        for name, value in ids.items():
            validate_id(name, value, op)
        body = {"workflowType": workflow_type, "entityType": entity_type, "entityId": entity_id}
        return start_once(self, StartRequest(op, body, entity_type, entity_id, workflow_type), on_intent)

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
    ) -> ExecutionPage:
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
        :return: the page, with the server's clock from its ``Date`` header.
        """
        query = list_executions_query(
            workflow_type, entity_type, entity_id, status, page, limit, sort_by, sort_order
        )
        return self.client.call("list_executions", query=query)

    def iter_executions(
        self, limit: int = 100, *, max_pages: int = 100, **filters: Any
    ) -> Iterator[Execution]:
        """
        Yield every matching execution once, fetching pages lazily until a short page (never
        stopping at a full page because of ``total``). Needs ``workflows:read``.

        :param limit: page size, 1 to 100.
        :param max_pages: pages read at most.
        :param filters: any ``list_executions`` argument but ``page``.
        """
        if "page" in filters:
            raise SmartMCAValidationError(
                "page", "iter_executions walks every page itself", operation="iter_executions"
            )
        list_executions_query(limit=limit, **filters)  # validate before the first request is sent
        walk = ListingWalk(limit, max_pages)
        while (fetch := walk.next()) is not None:
            yield from walk.feed(self.list_executions(page=fetch.page, limit=limit, **filters))

    def get_execution(self, execution_id: str) -> Execution:
        """
        Get one execution with node-level detail. Needs ``workflows:read``.

        :param execution_id: the ``executionId`` returned by a trigger.
        """
        return self.client.call("get_execution", path_params={"execution_id": execution_id})

    def change_application_status(
        self,
        application_id: str,
        payload: Mapping[str, Any] | None = None,
        *,
        workflow_type: str | None = None,
        on_intent: OnIntent | None = None,
    ) -> Accepted:
        """
        Change an application's status. Needs ``workflows:trigger``.

        The body's fields are not given by the reference; ``{"status": "approved", "reason": ...}``
        is assumed (see ``docs/api-contract.md``).

        :param application_id: the application id.
        :param payload: the JSON body.
        :param workflow_type: the workflow the action starts, if known: lets a lost answer be
            recovered (see :mod:`~airflow_provider_smartmca.hooks.start_once`).
        :param on_intent: see :meth:`trigger_workflow`.
        :return: the answer; ``execution_id`` is None when the action started nothing to wait for.
        """
        return self._act("change_application_status", application_id, payload, workflow_type, on_intent)

    def advance_application_stage(
        self,
        application_id: str,
        payload: Mapping[str, Any] | None = None,
        *,
        workflow_type: str | None = None,
        on_intent: OnIntent | None = None,
    ) -> Accepted:
        """
        Advance an application to its next stage. Needs ``workflows:trigger``.

        :param application_id: the application id.
        :param payload: the JSON body, if any.
        :param workflow_type: see :meth:`change_application_status`.
        :param on_intent: see :meth:`trigger_workflow`.
        """
        return self._act("advance_application_stage", application_id, payload, workflow_type, on_intent)

    def assign_underwriter(
        self,
        application_id: str,
        payload: Mapping[str, Any] | None = None,
        *,
        workflow_type: str | None = None,
        on_intent: OnIntent | None = None,
    ) -> Accepted:
        """
        Assign an underwriter to an application. Needs ``underwriting:trigger``.

        :param application_id: the application id.
        :param payload: the JSON body; ``{"underwriterId": "uw_1"}`` is assumed.
        :param workflow_type: see :meth:`change_application_status`.
        :param on_intent: see :meth:`trigger_workflow`.
        """
        return self._act("assign_underwriter", application_id, payload, workflow_type, on_intent)

    def _act(
        self,
        name: str,
        application_id: str,
        payload: Mapping[str, Any] | None,
        workflow_type: str | None,
        on_intent: OnIntent | None,
    ) -> Accepted:
        """An application action: its arguments checked before any request, its POST started once."""
        body = check_body(name, payload or {})
        validate_id("application_id", application_id, name)
        check_ids(name, workflow_type=workflow_type)
        request = StartRequest(name, body, "application", application_id, workflow_type, application_id)
        return start_once(self, request, on_intent)

    def find_executions_since(
        self,
        since: datetime,
        *,
        workflow_type: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
    ) -> list[Execution]:
        """
        Executions matching the filters that started at or after ``since``, newest first.

        Pages are walked without trusting the server's order, and at most
        :data:`~airflow_provider_smartmca.hooks.start_once.MAX_PAGES` of them, within the
        ``lookup`` time of :class:`~airflow_provider_smartmca.hooks.start_once.StartBudget` (or an
        enclosing deadline, when shorter), spent by the whole walk. An execution
        without ``startedAt`` (not started yet) counts as recent. ``since`` is compared with the
        server's timestamps: allow for clock skew.

        :param since: an aware datetime (e.g. ``datetime.now(timezone.utc) - timedelta(hours=1)``).
        :param workflow_type: filter by workflow definition id.
        :param entity_type: filter by entity type.
        :param entity_id: filter by entity id.
        """
        if not isinstance(since, datetime) or since.tzinfo is None:
            problem = f"must be a timezone-aware datetime, got {since!r}"
            raise SmartMCAValidationError("since", problem, operation="find_executions_since")
        ids = {"workflow_type": workflow_type, "entity_type": entity_type, "entity_id": entity_id}
        filters = check_ids("find_executions_since", **ids)
        with spending(Deadline.after(StartBudget.of(self.settings).lookup)):
            found, _, _ = walk(self, filters, since)
        return sorted(found, key=lambda e: (e.started_at is not None, e.started_at), reverse=True)

    def patiently(
        self, read: Callable[..., T], *args: Any, patience: float = DEFAULT_PATIENCE, **kwargs: Any
    ) -> T:
        """
        Call a read-only method, riding out an API storm, for reads a task cannot do without.

        Inside, every request is retried through transient failures (network, 429, 5xx), with
        backoff honouring ``Retry-After``, until ``patience`` seconds are spent, whatever
        ``max_retries``; other errors raise at once. It adds no loop of its own: it is the one
        retry policy (:func:`~airflow_provider_smartmca.client.protocol.retrying`) with a patient
        deadline, cut to the deadline of an enclosing one (a start's budget), never longer. Never
        use it for a POST: those are handled by the start-once logic instead.

        :param read: the read, e.g. ``hook.get_execution``.
        :param patience: seconds to keep trying, at most.
        """
        seconds = check_number("patience", patience, operation="patiently")
        with spending(Deadline.after(seconds), patient=True):
            return read(*args, **kwargs)

    def wait_for_execution(
        self,
        execution_id: str,
        *,
        poll_interval: float = 30.0,
        deadline: float | None = None,
        failure_statuses: Collection[str] = (),
    ) -> Execution:
        """
        Poll an execution on this worker until it ends, and return it (whatever its end status).

        Transient errors (network, 429, 5xx), once the per-call retries are spent, are logged and
        polled again: they never fail the wait. A contract error fails it after a few polls. A
        401 re-reads the connection once (a rotated key) before failing. Unknown statuses keep
        waiting, with one warning each. Each poll is one attempt bounded by the time left: this
        loop is the retry policy (as in the trigger), so no poll outlives the deadline in a retry cycle.

        :param execution_id: the execution to wait for.
        :param poll_interval: seconds between polls.
        :param deadline: absolute epoch seconds (``time.time()``) after which to give up, or None.
        :param failure_statuses: extra statuses that end the wait (e.g. ``paused``).
        :raises SmartMCAExecutionTimeoutError: the deadline passed; the execution is not cancelled.
        """
        validate_id("execution_id", execution_id, "wait_for_execution")
        failure_statuses = check_failure_statuses(failure_statuses, "wait_for_execution")
        poll_interval = check_number("poll_interval", poll_interval, operation="wait_for_execution")
        if deadline is not None:
            deadline = check_number("deadline", deadline, operation="wait_for_execution")
        watch = ExecutionWatch(execution_id, self.log, failure_statuses)
        reloaded, ids = False, {"execution_id": execution_id}
        while True:
            wait = poll_interval
            remaining = None if deadline is None else max(0.001, deadline - time.time())
            try:
                execution = self.client.call("get_execution", path_params=ids, retry=False, timeout=remaining)
            except SmartMCAAuthError:
                if reloaded:
                    raise
                self.log.warning(
                    "SmartMCA answered 401; reading the connection again in case the key was rotated"
                )
                self.reload_connection()
                reloaded = True
                continue
            except SmartMCAError as exc:
                wait = watch.failed(exc, self.settings, poll_interval)
            else:
                if watch.seen(execution).ended:
                    return execution
            left = math.inf if deadline is None else deadline - time.time()
            if left <= 0:
                raise SmartMCAExecutionTimeoutError(
                    watch.timeout_message(), execution_id=execution_id, execution_status=watch.last_status
                )
            time.sleep(min(wait, left))

    def test_connection(self) -> tuple[bool, str]:
        """Check the connection with one cheap read-only call (``GET /workflows``), without retries."""
        try:
            settings = self.settings
            if unknown := settings.unknown_extras_message():  # a typo must not pass as a working connection
                return False, f"SmartMCA connection {self.smartmca_conn_id!r}: {unknown}"
            result = self.client.call("list_workflows", retry=False)
        except SmartMCAError as exc:
            where = self.settings.base_url if "settings" in self.__dict__ else self.smartmca_conn_id
            return False, f"SmartMCA connection to {where} failed: {exc}"
        return True, f"Connected to {settings.base_url}: {len(result.items)} workflow(s) visible"


# Each method declares the scope its endpoint needs (docs and tests read it); iter_executions lists executions.
for _name, _endpoint in {**ENDPOINTS, "iter_executions": ENDPOINTS["list_executions"]}.items():
    getattr(SmartMCAHook, _name).required_scope = _endpoint.scope
