"""Blocking transport over one ``requests.Session`` (keep-alive), used on workers.

It follows the transport rules of :mod:`~airflow_provider_smartmca.client.transport` (total
deadline, body cap, proxy, trusted CAs, what a failure means), like the triggerer's
:mod:`~airflow_provider_smartmca.client.aio`.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Mapping
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from airflow_provider_smartmca.client import protocol, transport
from airflow_provider_smartmca.client.settings import ClientSettings

# What requests (its errors are OSErrors), urllib3, http.client and sockets raise; see transport.failure.
_TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)


def _read_chunk(
    resp: requests.Response,
    request: protocol.PreparedRequest,
    seconds: float,
    deadline: float,
    setting: float,
) -> bytes:
    """The next chunk of the body (empty at its end), read within the request's deadline: ``read1``
    returns whatever has arrived (a trickle cannot stretch one read), decoded, at most a chunk."""
    if (remaining := deadline - time.monotonic()) <= 0:
        raise protocol.connection_error(
            request, transport.deadline_detail(seconds, setting), request_sent=True
        )
    if (sock := getattr(resp.raw.connection, "sock", None)) is not None:
        sock.settimeout(remaining)  # no single read outlives the request's deadline
    return resp.raw.read1(transport.READ_CHUNK, decode_content=True)


class SyncClient:
    """
    Sends SmartMCA requests with retries over one pooled ``requests.Session``.

    :param settings: where and how to connect.
    """

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self._session: requests.Session | None = None
        self._route = transport.Route()

    def __repr__(self) -> str:
        return f"SyncClient(base_url={self.settings.base_url!r})"

    @property
    def session(self) -> requests.Session:
        """
        The one session of this client, created on first use.

        The route is read once, not on every call: requests' per-request environment scan was ~15%
        of a call's CPU. ``trust_env`` is off so that the route is the only source of proxy and CA
        decisions (the triggerer's too), and no ``.netrc`` entry replaces the bearer key. urllib3
        retries are off: every retry decision is ``protocol.retrying``'s.

        :raises SmartMCAConfigError: the proxy or CA rule cannot be met (see ``resolve_route``).
        """
        if self._session is None:
            route = transport.resolve_route(self.settings)
            session = requests.Session()
            for prefix in ("https://", "http://"):
                session.mount(prefix, HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0))
            session.trust_env = False
            session.proxies = {"http": route.proxy, "https": route.proxy} if route.proxy else {}
            session.verify = route.verify
            self._session, self._route = session, route
        return self._session

    def send(
        self, request: protocol.PreparedRequest, *, timeout: float | None = None
    ) -> protocol.RawResponse:
        """
        Send once; return the raw response or raise ``SmartMCAConnectionError``.

        The error is raised outside the ``except`` block, so the library's exception (whose
        ``.request`` holds the Authorization header) is neither its cause nor its context.

        :param request: the request, from :func:`~airflow_provider_smartmca.client.protocol.build_request`.
        :param timeout: a shorter total limit than the ``timeout`` setting for this request, seconds.
        """
        protocol.log_request(request)
        seconds = self.settings.request_seconds(timeout)
        try:
            return self._exchange(request, seconds)
        except _TRANSPORT_ERRORS as exc:
            error = transport.failure(request, exc, self._route, seconds, self.settings.timeout)
        raise error

    def _exchange(self, request: protocol.PreparedRequest, seconds: float) -> protocol.RawResponse:
        """The read timeout bounds the wait for the headers; ``_read_chunk`` bounds the rest."""
        deadline = time.monotonic() + seconds
        timeout = (min(self.settings.connect_timeout, seconds), seconds)
        resp = self.session.request(**request.http_arguments(), timeout=timeout, stream=True)
        with transport.CappedBody(request, resp.status_code, resp.headers, self.settings, resp.close) as body:
            while body.take(_read_chunk(resp, request, seconds, deadline, self.settings.timeout)):
                pass
        return body.response()

    def call(
        self,
        name: str,
        *,
        path_params: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        retry: bool = True,
        timeout: float | None = None,
    ) -> Any:
        """
        Build, send (with the one retry policy, :func:`~airflow_provider_smartmca.client.protocol.retrying`)
        and parse one call, within the deadline of any enclosing
        :func:`~airflow_provider_smartmca.client.protocol.spending`.

        :param name: the endpoint name, see :data:`~airflow_provider_smartmca.client.endpoints.ENDPOINTS`.
        :param retry: False sends exactly once.
        :param timeout: a shorter total limit than the ``timeout`` setting, per attempt, seconds.
        """
        request = protocol.build_request(self.settings, name, path_params=path_params, query=query, body=body)

        def attempt(seconds: float | None) -> Any:
            return protocol.parse_response(request, self.send(request, timeout=seconds), self.settings)

        return protocol.retrying(self.settings, request, attempt, retry=retry, timeout=timeout)

    def close(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            self._session.close()
            self._session = None
