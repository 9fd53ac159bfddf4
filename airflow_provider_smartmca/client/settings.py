"""Client settings: what an Airflow connection (plus hook arguments) means for the HTTP client.

This module knows nothing of Airflow: it takes the connection's plain fields, so the worker
(sync ``get_connection``) and the triggerer (async connection API) share one interpretation.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_smartmca.client.endpoints import API_PREFIX, KNOWN_SCOPES
from airflow_provider_smartmca.errors import SmartMCAConfigError

DEFAULT_BASE_URL = "https://api.smartmca.com"


@dataclass(frozen=True)
class ClientSettings:
    """
    Everything the HTTP client needs. The API key is excluded from ``repr`` and comparisons.

    :param base_url: scheme://host[:port], no trailing slash, no API prefix.
    :param api_key: the bearer key (from ``Connection.password`` only).
    :param scopes: the scopes the key declares, or None when undeclared (then the server decides).
    :param timeout: read timeout of one request, seconds.
    :param connect_timeout: connect timeout of one request, seconds.
    :param max_retries: retries after the first attempt for a retryable failure (0 disables).
    :param retry_min_wait: first backoff wait, seconds; doubles per attempt, with jitter.
    :param retry_max_wait: cap of one backoff wait, seconds.
    :param retry_after_cap: cap applied to a server's ``Retry-After``, seconds.
    :param verify_ssl: verify TLS certificates; or a CA bundle path.
    :param clock_skew: seconds of tolerance when matching executions to a trigger request by time.
    :param execution_url_template: optional UI link, e.g. ``https://app.smartmca.com/executions/{execution_id}``.
    """

    base_url: str = DEFAULT_BASE_URL
    api_key: str = field(default="", repr=False, compare=False)
    scopes: frozenset[str] | None = None
    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_retries: int = 5
    retry_min_wait: float = 0.5
    retry_max_wait: float = 30.0
    retry_after_cap: float = 60.0
    verify_ssl: bool | str = True
    clock_skew: float = 30.0
    execution_url_template: str | None = None

    @property
    def api_root(self) -> str:
        """The base URL plus the API prefix."""
        return self.base_url + API_PREFIX

    def with_overrides(self, **overrides: Any) -> ClientSettings:
        """Return a copy with the non-None ``overrides`` applied and validated."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise SmartMCAConfigError(f"unknown client setting(s): {', '.join(sorted(unknown))}")
        values = {k: v for k, v in overrides.items() if v is not None}
        for name, value in values.items():
            values[name] = _coerce(name, value)
        if "scopes" in values:
            values["scopes"] = parse_scopes(values["scopes"])
        return replace(self, **values)


_NUMBERS = {
    "timeout": (float, 0.001),
    "connect_timeout": (float, 0.001),
    "max_retries": (int, 0),
    "retry_min_wait": (float, 0.0),
    "retry_max_wait": (float, 0.0),
    "retry_after_cap": (float, 0.0),
    "clock_skew": (float, 0.0),
}


def _coerce(name: str, value: Any) -> Any:
    """Turn an extra's value (often a string from the UI) into the setting's type, or fail naming it."""
    if name in _NUMBERS:
        kind, minimum = _NUMBERS[name]
        try:
            if isinstance(value, bool):
                raise ValueError
            number = kind(value)
        except (TypeError, ValueError):
            raise SmartMCAConfigError(f"connection extra {name!r} must be a number, got {value!r}") from None
        if number < minimum:
            raise SmartMCAConfigError(f"connection extra {name!r} must be >= {minimum}, got {value!r}")
        return number
    if name == "verify_ssl":
        return _parse_bool_or_path(value)
    return value


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise SmartMCAConfigError(f"connection extra {name!r} must be true or false, got {value!r}")


def _parse_bool_or_path(value: Any) -> bool | str:
    if isinstance(value, str) and value.strip().lower() not in ("true", "false", "1", "0", "yes", "no", ""):
        return value  # a CA bundle path, as requests and aiohttp accept
    return _parse_bool("verify_ssl", value)


def parse_scopes(value: Any) -> frozenset[str] | None:
    """Parse declared scopes: a list, or a space/comma separated string. Empty means undeclared."""
    if value is None:
        return None
    if isinstance(value, str):
        items: Iterable[Any] = value.replace(",", " ").split()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        raise SmartMCAConfigError(f"connection extra 'scopes' must be a list or a string, got {value!r}")
    scopes = frozenset(str(s).strip() for s in items if str(s).strip())
    unknown = scopes - KNOWN_SCOPES
    if unknown:
        raise SmartMCAConfigError(
            f"connection extra 'scopes' has unknown scope(s) {sorted(unknown)}; known: {sorted(KNOWN_SCOPES)}"
        )
    return scopes or None


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def normalize_base_url(
    host: str | None, port: int | None = None, *, allow_insecure_http: bool = False
) -> str:
    """
    Build the base URL from the connection host, with or without a scheme.

    Plain ``http://`` is refused except on loopback, or when ``allow_insecure_http`` is set,
    because the key would cross the network in clear text.
    """
    raw = (host or "").strip()
    if not raw:
        return DEFAULT_BASE_URL
    if "://" not in raw:
        raw = "https://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SmartMCAConfigError(f"connection host {host!r} is not a valid http(s) base URL")
    if parts.query or parts.fragment or parts.username:
        raise SmartMCAConfigError(f"connection host {host!r} must not contain credentials, query or fragment")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise SmartMCAConfigError(
            f"connection host {host!r} uses plain http:// on a non-loopback host; use https:// "
            "or set the extra 'allow_insecure_http' to true"
        )
    netloc = parts.netloc
    if port and parts.port is None:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    if path.endswith(API_PREFIX):
        path = path[: -len(API_PREFIX)]
    return f"{parts.scheme}://{netloc}{path}"


_EXTRA_SETTINGS = ("scopes", *_NUMBERS, "verify_ssl", "execution_url_template")


def settings_from_connection(
    *, host: str | None, port: int | None, password: str | None, extra: Mapping[str, Any] | str | None
) -> ClientSettings:
    """
    Interpret an Airflow connection's fields.

    :param host: the connection host (base URL, scheme optional).
    :param port: the connection port, if any (hidden in the UI, honoured if set).
    :param password: the API key.
    :param extra: the connection extras, as a dict or JSON text.
    """
    if isinstance(extra, str):
        try:
            extra = json.loads(extra) if extra.strip() else {}
        except ValueError:
            raise SmartMCAConfigError("connection extra is not valid JSON") from None
    extra = dict(extra or {})
    if not password:
        raise SmartMCAConfigError(
            "the connection has no API key: set its password field (shown as 'API key' in the UI)"
        )
    base_url = normalize_base_url(
        host,
        port,
        allow_insecure_http=_parse_bool("allow_insecure_http", extra.get("allow_insecure_http", False)),
    )
    overrides = {name: extra.get(name) for name in _EXTRA_SETTINGS if extra.get(name) not in (None, "")}
    return ClientSettings(base_url=base_url, api_key=password).with_overrides(**overrides)
