"""Blocking transport over one ``requests.Session`` (keep-alive), used on workers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
import tenacity
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError

from airflow_provider_smartmca.client import protocol
from airflow_provider_smartmca.client.settings import ClientSettings
from airflow_provider_smartmca.errors import SmartMCAConfigError


def _never_reached_server(exc: requests.ConnectionError) -> bool:
    """True when the connection itself failed (refused, DNS), so the request was never sent."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, (NewConnectionError, ConnectionRefusedError))


class SyncClient:
    """
    Sends SmartMCA requests with retries over one pooled ``requests.Session``.

    :param settings: where and how to connect.
    """

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self._session: requests.Session | None = None

    def __repr__(self) -> str:
        return f"SyncClient(base_url={self.settings.base_url!r})"

    @property
    def session(self) -> requests.Session:
        """The one session of this client, created on first use."""
        if self._session is None:
            session = requests.Session()
            # urllib3 retries are off: every retry decision is protocol.should_retry's.
            session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0))
            session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0))
            # Proxy settings are read from the environment once, not on every call: requests'
            # per-request environment scan was ~15% of a call's CPU.
            session.proxies = requests.utils.get_environ_proxies(self.settings.base_url)
            session.trust_env = False
            self._session = session
        return self._session

    def send(self, request: protocol.PreparedRequest) -> protocol.RawResponse:
        """Send once; return the raw response or raise ``SmartMCAConnectionError``."""
        protocol.log_request(request)
        try:
            resp = self.session.request(
                request.endpoint.method,
                request.url,
                params=request.params or None,
                json=request.body,
                headers=request.headers,
                timeout=(self.settings.connect_timeout, self.settings.timeout),
                # Per request: requests lets REQUESTS_CA_BUNDLE override a session-level verify.
                verify=self.settings.verify_ssl,
                allow_redirects=False,  # a redirect could carry the key elsewhere
            )
            body = resp.content
        except requests.exceptions.SSLError as exc:
            raise SmartMCAConfigError(
                f"{request.endpoint.name}: TLS to {self.settings.base_url} failed ({exc}); "
                "check the certificate or the connection extra 'verify_ssl'"
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise protocol.connection_error(request, "connect timed out", request_sent=False) from None
        except requests.exceptions.ReadTimeout:
            raise protocol.connection_error(request, "read timed out", request_sent=True) from None
        except requests.exceptions.ConnectionError as exc:
            sent = not _never_reached_server(exc)
            detail = "connection refused or unreachable" if not sent else "connection dropped"
            raise protocol.connection_error(request, detail, request_sent=sent) from None
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
            raise protocol.connection_error(request, "response body cut short", request_sent=True) from None
        return protocol.RawResponse(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, body)

    def call(
        self,
        name: str,
        *,
        path_params: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        retry: bool = True,
    ) -> dict[str, Any]:
        """
        Build, send (with the shared retry policy) and parse one call.

        :param name: the endpoint name, see :data:`~airflow_provider_smartmca.client.endpoints.ENDPOINTS`.
        :param retry: False sends exactly once.
        """
        request = protocol.build_request(self.settings, name, path_params=path_params, query=query, body=body)
        if not retry:
            return protocol.parse_response(request, self.send(request), self.settings)
        for attempt in tenacity.Retrying(**protocol.retry_policy(self.settings, request.endpoint)):
            with attempt:
                return protocol.parse_response(request, self.send(request), self.settings)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def close(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            self._session.close()
            self._session = None
