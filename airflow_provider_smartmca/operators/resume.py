"""Where a task finds its previous execution again: the durable record kept across task tries.

XCom is cleared before a retry, so the execution id is also kept in ``task_state_store``
(Airflow >= 3.3), with the semantics of Airflow's ``ResumableJobMixin``. Before each POST the
POST's *intent* is kept too, so a try that died with the 202 in flight is resolved by a lookup
instead of a second POST. On Airflow < 3.3 a retry looks up the executions started since the
DAG run began.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_smartmca.errors import SmartMCAAmbiguousTriggerError, SmartMCANotFoundError
from airflow_provider_smartmca.operators.links import XCOM_EXECUTION_ID

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_smartmca.hooks.smartmca import SmartMCAHook


class ResumeMixin:
    """Record this task's execution durably, and find it again on a retry."""

    if TYPE_CHECKING:  # provided by SmartMCAExecutionOperator / BaseOperator

        @property
        def hook(self) -> SmartMCAHook: ...

        @property
        def log(self) -> Any: ...

        operation: ClassVar[str]
        _execution_id: str | None

        def lookup_filters(self) -> dict[str, str] | None: ...

    #: Key of this task's execution id in ``task_state_store``; do not rename (in-flight retries read it).
    external_id_key: ClassVar[str] = "smartmca_execution_id"
    #: Key of the start response in ``task_state_store`` (returned by a retry when not waiting).
    response_key: ClassVar[str] = "smartmca_start_response"
    #: Key of the intent of the POST in flight (what to look for if the try dies before its 202).
    pending_post_key: ClassVar[str] = "smartmca_pending_post"

    def _record(self, context: Context, execution_id: str, response: dict[str, Any] | None) -> None:
        """Log the id, push it to XCom and record it durably: before any waiting."""
        self._execution_id = execution_id
        context["ti"].xcom_push(key=XCOM_EXECUTION_ID, value=execution_id)
        store = context.get("task_state_store")
        if store is not None and response is not None:
            store.set(self.external_id_key, execution_id)
            store.set(self.response_key, response)

    def _remember_posts(self, context: Context) -> None:
        """Record each POST's intent durably just before it is sent (see ``_execution_of_lost_post``)."""
        store = context.get("task_state_store")
        if store is None:
            return

        def remember(intent: dict[str, Any]) -> None:
            # A new POST supersedes the previous (failed) execution: forget it first, so a retry
            # after a death mid-POST looks for the new execution instead of the old one.
            store.delete(self.external_id_key)
            store.set(self.pending_post_key, intent)

        self.hook.post_intent_listener = remember

    def _execution_of_lost_post(self, store: Any) -> dict[str, Any] | None:
        """
        The execution started by a POST whose try died before its 202 arrived, or None.

        The intent recorded before the POST says what to look for and which executions existed
        already: exactly one new one is this task's; none means the POST never took effect;
        more than one cannot be told apart, and the task fails rather than risk a duplicate.
        """
        from airflow_provider_smartmca.hooks.exactly_once import executions_started_by

        intent = store.get(self.pending_post_key)
        if not isinstance(intent, dict):
            return None
        found = self.hook.patiently(executions_started_by, self.hook, intent)
        if not found:
            self.log.info(
                "The previous try's POST (sent %s) started no execution; sending it now", intent["sent_at"]
            )
            return None
        if len(found) > 1:
            raise SmartMCAAmbiguousTriggerError(
                f"{self.operation}: the previous try died while its POST was in flight, and "
                f"{len(found)} executions may be its: "
                f"{', '.join(str(e.get('executionId')) for e in found)}. Check SmartMCA before retrying.",
                candidates=found,
                operation=self.operation,
            )
        execution_id = str(found[0]["executionId"])
        self.log.warning(
            "The previous try died while its POST was in flight; it started execution %s", execution_id
        )
        store.set(self.external_id_key, execution_id)
        return self.hook.patiently(self.hook.get_execution, execution_id)

    def _stored_response(self, context: Context) -> dict[str, Any] | None:
        store = context.get("task_state_store")
        value = store.get(self.response_key) if store is not None else None
        return value if isinstance(value, dict) else None

    def _previous_execution(self, context: Context) -> dict[str, Any] | None:
        """This task's previous execution, read fresh from SmartMCA, or None."""
        store = context.get("task_state_store")
        if store is not None:
            execution_id = store.get(self.external_id_key)
            if not execution_id:
                return self._execution_of_lost_post(store)
            try:
                return self.hook.patiently(self.hook.get_execution, str(execution_id))
            except SmartMCANotFoundError:
                self.log.warning("Recorded execution %s no longer exists; starting a new one", execution_id)
                return None
        return self._previous_execution_by_lookup(context)

    def _previous_execution_by_lookup(self, context: Context) -> dict[str, Any] | None:
        """Airflow < 3.3 (no task_state_store): find executions started since the DAG run began."""
        ti = context["ti"]
        if (getattr(ti, "try_number", 1) or 1) <= 1:
            return None
        filters = self.lookup_filters()
        dag_run = context.get("dag_run")
        since = getattr(dag_run, "start_date", None) or getattr(dag_run, "run_after", None)
        if filters is None or since is None:
            self.log.warning(
                "No task_state_store (Airflow < 3.3) and no way to find this task's previous execution; "
                "a new one is started"
            )
            return None
        found = self.hook.find_executions_since(
            since,
            workflow_type=filters.get("workflow_type"),
            entity_type=filters.get("entity_type"),
            entity_id=filters.get("entity_id"),
        )
        if not found:
            return None
        self.log.info(
            "Found %d execution(s) of %s since the DAG run began; using the newest", len(found), filters
        )
        return self.hook.patiently(self.hook.get_execution, str(found[0]["executionId"]))
