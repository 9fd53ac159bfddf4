"""How a connection's fields become client settings."""

from __future__ import annotations

import pytest

from airflow_provider_smartmca.client.settings import (
    normalize_base_url,
    parse_scopes,
    settings_from_connection,
)
from airflow_provider_smartmca.errors import SmartMCAConfigError


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, "https://api.smartmca.com"),
        ("api.smartmca.com", None, "https://api.smartmca.com"),
        ("https://api.smartmca.com/", None, "https://api.smartmca.com"),
        ("https://api.smartmca.com/api/public/v1", None, "https://api.smartmca.com"),
        ("http://127.0.0.1:8080", None, "http://127.0.0.1:8080"),
        ("http://localhost", 9000, "http://localhost:9000"),
        ("http://[::1]:81", None, "http://[::1]:81"),
    ],
)
def test_base_url(host, port, expected):
    assert normalize_base_url(host, port) == expected


def test_plain_http_refused_off_loopback_unless_allowed():
    with pytest.raises(SmartMCAConfigError, match="allow_insecure_http"):
        normalize_base_url("http://api.smartmca.com")
    assert normalize_base_url("http://api.internal", allow_insecure_http=True) == "http://api.internal"
    with pytest.raises(SmartMCAConfigError, match="allow_insecure_http"):
        settings_from_connection(host="http://10.0.0.5", port=None, password="k" * 10, extra={})
    s = settings_from_connection(
        host="http://10.0.0.5", port=None, password="k" * 10, extra={"allow_insecure_http": "true"}
    )
    assert s.base_url == "http://10.0.0.5"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("workflows:read workflows:trigger", {"workflows:read", "workflows:trigger"}),
        ("workflows:read,underwriting:trigger", {"workflows:read", "underwriting:trigger"}),
        (["workflows:read"], {"workflows:read"}),
        ("", None),
        (None, None),
    ],
)
def test_scopes(value, expected):
    assert parse_scopes(value) == (frozenset(expected) if expected else None)


def test_unknown_scope_refused():
    with pytest.raises(SmartMCAConfigError, match="workflows:write"):
        parse_scopes("workflows:write")


def test_extras_are_typed_and_validated():
    s = settings_from_connection(
        host="h.example",
        port=None,
        password="secret-key",
        extra='{"timeout": "12.5", "max_retries": "2", "verify_ssl": "false"}',
    )
    assert (s.timeout, s.max_retries, s.verify_ssl) == (12.5, 2, False)
    with pytest.raises(SmartMCAConfigError, match="max_retries"):
        settings_from_connection(host=None, port=None, password="secret-key", extra={"max_retries": "lots"})
    with pytest.raises(SmartMCAConfigError, match="timeout"):
        settings_from_connection(host=None, port=None, password="secret-key", extra={"timeout": -1})


def test_missing_key_refused():
    with pytest.raises(SmartMCAConfigError, match="API key"):
        settings_from_connection(host=None, port=None, password=None, extra=None)


def test_key_not_in_repr():
    s = settings_from_connection(host=None, port=None, password="smca_live_TOPSECRET", extra={})
    assert "TOPSECRET" not in repr(s)


@pytest.mark.parametrize(
    ("env", "proxy"),
    [
        ({}, None),
        ({"HTTPS_PROXY": "proxy.corp:3128"}, "http://proxy.corp:3128"),
        ({"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2"}, "http://lower:1"),
        ({"ALL_PROXY": "http://all:3"}, "http://all:3"),
        ({"HTTP_PROXY": "http://plain:4"}, None),  # an https:// base URL uses HTTPS_PROXY only
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".smartmca.com"}, None),
        ({"HTTPS_PROXY": "http://p:1", "no_proxy": "other.example, smartmca.com"}, None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "smartmca.co"}, "http://p:1"),
    ],
)
def test_one_proxy_rule(env, proxy):
    from airflow_provider_smartmca.client.settings import ClientSettings
    from airflow_provider_smartmca.client.transport import resolve_route

    assert resolve_route(ClientSettings(), env).proxy == proxy


def test_one_ca_rule(tmp_path):
    from airflow_provider_smartmca.client.settings import ClientSettings
    from airflow_provider_smartmca.client.transport import resolve_route

    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    default = resolve_route(ClientSettings(), {})
    assert default.verify is True and default.ca_path and default.ca_path.endswith(".pem")
    env = {"REQUESTS_CA_BUNDLE": str(bundle), "SSL_CERT_FILE": "/elsewhere.pem"}
    assert resolve_route(ClientSettings(), env).verify == str(bundle)
    assert resolve_route(ClientSettings(), {"SSL_CERT_FILE": str(bundle)}).verify == str(bundle)
    assert resolve_route(ClientSettings(verify_ssl=False), env).verify is False
    assert resolve_route(ClientSettings(verify_ssl=str(bundle)), {"REQUESTS_CA_BUNDLE": "/x"}).verify == str(
        bundle
    )
    with pytest.raises(SmartMCAConfigError, match="REQUESTS_CA_BUNDLE"):
        resolve_route(ClientSettings(), {"REQUESTS_CA_BUNDLE": "/no/such.pem"})
