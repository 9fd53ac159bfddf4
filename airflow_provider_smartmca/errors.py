"""Every error this provider raises, in one small hierarchy.

Each HTTP error message names the hook method, the HTTP method and path, the status and the
server's own error text, so an on-call engineer can act on the log line alone. Messages are
built by :mod:`airflow_provider_smartmca.client.protocol`, which redacts the API key first.
"""

from __future__ import annotations

from typing import Any

from airflow.exceptions import AirflowException


class SmartMCAError(AirflowException):
    """
    Base class of every SmartMCA error.

    :param message: the full, already redacted, message.
    :param operation: the hook method or endpoint name, e.g. ``get_execution``.
    :param method: the HTTP method, when a request was involved.
    :param path: the URL path, when a request was involved.
    :param status: the HTTP status, when a response was received.
    :param server_message: the server's own error text, when it sent one.
    :param details: the attributes a subclass declares (``scope``, ``request_sent``, ...), set on
        the error; one not given reads the class's default (None where there is one).
    """

    operation: str | None = None
    method: str | None = None
    path: str | None = None
    status: int | None = None
    server_message: str | None = None

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        vars(self).update(details)


class SmartMCAValidationError(SmartMCAError, ValueError):
    """An argument is invalid; raised before any request is built.

    :param field: the name of the offending argument or field.
    """

    def __init__(self, field: str, problem: str, *, operation: str | None = None) -> None:
        where = f"{operation}: " if operation else ""
        super().__init__(f"{where}invalid {field!r}: {problem}", operation=operation)
        self.field = field


class SmartMCAConfigError(SmartMCAError):
    """The Airflow connection is unusable (bad base URL, insecure HTTP, bad extra value)."""


class SmartMCAAuthError(SmartMCAError):
    """401: the API key is missing, wrong or revoked. Fix the connection's password."""


class SmartMCAScopeError(SmartMCAError):
    """The key lacks a scope the call needs (checked locally, or a 403 from the server).

    :param scope: the scope the call needs.
    """

    scope: str


class SmartMCANotFoundError(SmartMCAError):
    """404: the workflow, execution or application does not exist."""


class SmartMCABadRequestError(SmartMCAError):
    """400/409/422: the server rejected the request; its message says why."""


class SmartMCARateLimitError(SmartMCAError):
    """429: too many requests.

    :param retry_after: seconds the server asked us to wait, already capped, or None.
    """

    retry_after: float | None = None


class SmartMCAServerError(SmartMCAError):
    """5xx: the server failed. GETs are retried; a POST is never blindly re-sent."""


class SmartMCAInvalidResponseError(SmartMCAError):
    """The response is not what the API promises: not JSON, an HTML page, truncated, missing a field."""


class SmartMCAContractError(SmartMCAInvalidResponseError):
    """A 2xx whose JSON has the wrong shape: the API differs from what the provider was written against.

    Not transient: a read is retried a few times at most, a wait fails instead of polling on, and a
    POST answered this way is looked up, never re-sent. See :mod:`airflow_provider_smartmca.client.contract`.

    :param endpoint: the endpoint whose response broke the contract.
    :param field: the field, as a path such as ``data[3].executionId``.
    :param present_keys: the keys the object did have (never their values).
    """

    endpoint: str
    field: str
    present_keys: tuple[str, ...]

    def __init__(self, message: str, *, endpoint: str, field: str, present_keys: tuple[str, ...]) -> None:
        super().__init__(
            message, operation=endpoint, endpoint=endpoint, field=field, present_keys=present_keys
        )


class SmartMCAConnectionError(SmartMCAError):
    """The request did not complete at the network level.

    :param request_sent: False when the server surely never saw the request (connection refused,
        connect timeout). True when it may have acted on it (read timeout, connection dropped
        after sending), which makes a POST ambiguous.
    """

    request_sent: bool


class SmartMCAAmbiguousTriggerError(SmartMCAError):
    """A trigger POST may or may not have started an execution, and the lookup could not tell.

    :param candidates: the executions the lookup found (summaries), possibly empty.
    """

    candidates: list[dict[str, Any]]


class SmartMCAExecutionError(SmartMCAError):
    """A workflow execution ended failed or cancelled, or the wait for it failed.

    :param execution_id: the execution concerned.
    :param execution_status: its last known status.
    """

    execution_id: str | None = None
    execution_status: str | None = None


class SmartMCAExecutionTimeoutError(SmartMCAExecutionError):
    """The wait deadline passed before the execution ended. The provider does not cancel the execution."""
