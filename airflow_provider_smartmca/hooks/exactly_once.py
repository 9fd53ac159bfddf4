"""Exactly-once POSTs: a POST that starts an execution is never blindly re-sent.

The retry policy (``client.protocol.should_retry``) re-sends a POST only when the server surely
did not act (connection refused, connect timeout, 429). When the outcome is unknown (timeout
after sending, dropped connection, 5xx, unreadable 2xx), this module looks the execution up
instead: the entity's recent executions are listed before the POST, so the lookup after it can
tell the new execution from earlier ones even when clocks disagree.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_smartmca.client.protocol import build_request
from airflow_provider_smartmca.errors import (
    SmartMCAAmbiguousTriggerError,
    SmartMCAConnectionError,
    SmartMCAError,
    SmartMCAInvalidResponseError,
    SmartMCAServerError,
)

if TYPE_CHECKING:
    from airflow_provider_smartmca.hooks.smartmca import SmartMCAHook


def post_once(
    hook: SmartMCAHook,
    name: str,
    path_params: dict[str, Any] | None,
    body: dict[str, Any],
    lookup: dict[str, str],
) -> dict[str, Any]:
    """
    Send a POST that starts an execution; on an unknown outcome, find the execution instead.

    Just before sending, ``hook.post_intent_listener`` (if set) receives the POST's intent, a
    JSON dict that :func:`executions_started_by` can resolve later: operators store it durably so
    that a retry after a worker died mid-POST finds the execution instead of sending it again.

    :param hook: the hook whose client sends the requests.
    :param name: the endpoint name.
    :param path_params: ids for the path, if any.
    :param body: the JSON body.
    :param lookup: ``find_executions_since`` filters that match the execution this POST starts.
    :return: the response, or the found execution's summary with ``"recovered": True``.
    :raises SmartMCAAmbiguousTriggerError: the outcome is unknown and the lookup could not tell.
    """
    build_request(hook.settings, name, path_params=path_params, body=body)  # scope and ids, before any GET
    intent = {
        "operation": name,
        "lookup": lookup,
        "before": _recent_execution_ids(hook, lookup),
        "sent_at": datetime.now(timezone.utc).isoformat(),
    }
    if hook.post_intent_listener is not None:
        hook.post_intent_listener(intent)
    try:
        return hook.client.call(name, path_params=path_params, body=body)
    except (SmartMCAConnectionError, SmartMCAServerError, SmartMCAInvalidResponseError) as exc:
        if isinstance(exc, SmartMCAConnectionError) and not exc.request_sent:
            raise
        return _recover(hook, exc, intent)


def executions_started_by(hook: SmartMCAHook, intent: dict[str, Any]) -> list[dict[str, Any]]:
    """
    The executions that a POST described by ``intent`` may have started: those matching its
    lookup, started since it was sent (less ``clock_skew``), and not seen just before it.

    :param hook: the hook to list executions with.
    :param intent: the dict given to ``post_intent_listener``.
    """
    sent_at = datetime.fromisoformat(intent["sent_at"])
    before = set(intent["before"]) if intent.get("before") is not None else None
    candidates = hook.find_executions_since(_window_start(hook, sent_at), **intent["lookup"])
    return [c for c in candidates if before is None or c.get("executionId") not in before]


def _window_start(hook: SmartMCAHook, at: datetime) -> datetime:
    return at - timedelta(seconds=hook.settings.clock_skew)


def _recent_execution_ids(hook: SmartMCAHook, lookup: dict[str, str]) -> list[str] | None:
    """Ids of the entity's recent executions before the POST; None when they cannot be read."""
    try:
        since = _window_start(hook, datetime.now(timezone.utc))
        return sorted(e["executionId"] for e in hook.find_executions_since(since, **lookup))
    except SmartMCAError as exc:
        hook.log.info("No pre-trigger snapshot of executions (%s); the time window alone will be used", exc)
        return None


def _recover(hook: SmartMCAHook, exc: SmartMCAError, intent: dict[str, Any]) -> dict[str, Any]:
    hook.log.warning("%s; looking for the execution it may have started before doing anything else", exc)
    name, lookup = intent["operation"], intent["lookup"]
    try:
        new = executions_started_by(hook, intent)
    except SmartMCAError as lookup_exc:
        raise SmartMCAAmbiguousTriggerError(
            f"{exc}. The request may have started an execution, and the lookup failed too "
            f"({lookup_exc}). Check the executions of {lookup} before retrying.",
            candidates=[],
            operation=name,
        ) from exc
    if len(new) == 1:
        hook.log.warning("Found execution %s started by the request; using it", new[0].get("executionId"))
        return {**new[0], "recovered": True}
    found = (
        ", ".join(f"{c.get('executionId')} ({c.get('status')}, {c.get('startedAt')})" for c in new) or "none"
    )
    raise SmartMCAAmbiguousTriggerError(
        f"{exc}. The request may or may not have started an execution; found {len(new)} candidate(s) "
        f"for {lookup} since {intent['sent_at']}: {found}. Check SmartMCA before retrying.",
        candidates=new,
        operation=name,
    ) from exc
