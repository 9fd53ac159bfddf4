"""A connection typed by a hurried human: typos, nan, odd ports, a key with a newline, credentials in the URL.

Each is a clear ``SmartMCAConfigError`` naming the field, raised before any request, and never
repeating the key or a password; the one exception, an unknown extra key, is a warning and a
failing ``test_connection``, both naming the closest valid key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time

import pytest

from airflow_provider_smartmca.client.settings import (
    ClientSettings,
    normalize_base_url,
    settings_from_connection,
)
from airflow_provider_smartmca.errors import SmartMCAConfigError
from airflow_provider_smartmca.testing import FULL_KEY

KEY = FULL_KEY


def from_extra(**extra: object) -> ClientSettings:
    return settings_from_connection(host=None, port=None, password="smca_live_k3y", extra=extra)


def assert_no_part_of(secret: str, text: str) -> None:
    """Not the secret, and no piece of it (5 characters or more) either."""
    for size in range(5, len(secret) + 1):
        for start in range(len(secret) - size + 1):
            assert secret[start : start + size] not in text, (secret[start : start + size], text)


# --- unknown extra keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typo", "closest"),
    [
        ("max_retry", "max_retries"),
        ("timout", "timeout"),
        ("verify_tls", "verify_ssl"),
        ("Scopes", "scopes"),
        ("extra__smartmca__timeout", "timeout"),
        ("max_response_size", "max_response_bytes"),
    ],
)
def test_an_unknown_extra_is_a_warning_naming_the_closest_key(caplog, typo, closest):
    with caplog.at_level(logging.WARNING, logger="airflow_provider_smartmca.client"):
        settings = from_extra(**{typo: "2"})
    assert settings.unknown_extras == (typo,)
    assert settings.max_retries == ClientSettings().max_retries  # the typo changed nothing
    message = settings.unknown_extras_message()
    assert message and repr(typo) in message and f"did you mean {closest!r}" in message
    assert message in caplog.text


def test_an_unknown_extra_without_a_close_match_lists_the_valid_keys(caplog):
    from airflow_provider_smartmca.client.settings import KNOWN_EXTRAS

    settings = from_extra(zzz=1)
    assert all(key in (settings.unknown_extras_message() or "") for key in KNOWN_EXTRAS)


def test_every_known_extra_is_accepted_silently(caplog):
    with caplog.at_level(logging.WARNING):
        settings = from_extra(
            scopes="workflows:read",
            timeout=5,
            connect_timeout=2,
            max_retries=1,
            retry_min_wait=0.1,
            retry_max_wait=1,
            retry_after_cap=10,
            verify_ssl=True,
            clock_skew=5,
            max_response_bytes=65536,
            execution_url_template="https://app.example/{execution_id}",
            allow_insecure_http=False,
        )
    assert settings.unknown_extras == () and settings.unknown_extras_message() is None
    assert "unknown connection extra" not in caplog.text


def test_an_extra_named_like_the_key_does_not_log_the_key(caplog):
    with caplog.at_level(logging.WARNING):
        settings = settings_from_connection(
            host=None, port=None, password="smca_live_k3y", extra={"key=smca_live_k3y": ""}
        )
    assert "smca_live_k3y" not in caplog.text and "smca_live_k3y" not in repr(settings)


def test_test_connection_fails_naming_the_closest_key(make_hook, smartmca_emulator):
    ok, message = make_hook(extra={"max_retry": 2}).test_connection()
    assert not ok
    assert "'max_retry'" in message and "did you mean 'max_retries'" in message


def test_test_connection_passes_on_a_clean_connection(make_hook, smartmca_emulator):
    ok, message = make_hook().test_connection()
    assert ok, message


# --- verify_ssl -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hint"),
    [("ture", "did you mean 'true'"), ("Flase", "did you mean 'false'"), ("/no/such/ca.pem", "")],
)
def test_verify_ssl_that_is_neither_a_boolean_nor_a_path_is_a_config_error(value, hint):
    with pytest.raises(SmartMCAConfigError, match="verify_ssl") as err:
        from_extra(verify_ssl=value)
    assert hint in str(err.value)
    assert "CA bundle" in str(err.value)


def test_verify_ssl_path_that_exists_is_kept(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    assert from_extra(verify_ssl=str(bundle)).verify_ssl == str(bundle)
    assert from_extra(verify_ssl=" FALSE ").verify_ssl is False


def test_the_trigger_reports_a_bad_ca_path_as_an_error_event(smartmca_emulator, monkeypatch):
    """In the triggerer too: an event naming the field, never a raw OSError."""
    from airflow_provider_smartmca.triggers import ExecutionTrigger

    conn = {
        "conn_type": "smartmca",
        "host": smartmca_emulator.base_url,
        "password": KEY,
        "extra": {"verify_ssl": "/no/such/ca.pem"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_BADCA", json.dumps(conn))
    trigger = ExecutionTrigger("smartmca_badca", "exec_1", poll_interval=0.1, deadline=time.time() + 5)

    async def first() -> dict[str, object]:
        agen = trigger.run()
        try:
            return (await asyncio.wait_for(agen.__anext__(), 10)).payload
        finally:
            await agen.aclose()

    event = asyncio.run(first())
    assert event["status"] == "error" and "verify_ssl" in str(event["message"])
    assert smartmca_emulator.count() == 0


# --- numbers --------------------------------------------------------------------------------------

NUMERIC = (
    "timeout",
    "connect_timeout",
    "max_retries",
    "retry_min_wait",
    "retry_max_wait",
    "retry_after_cap",
    "clock_skew",
    "max_response_bytes",
)
BAD_NUMBERS = [math.nan, "nan", math.inf, "-inf", "1e400", -1, 1e30, True, "abc", [], {"a": 1}]


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=repr)
@pytest.mark.parametrize("name", NUMERIC)
def test_a_bad_number_in_an_extra_is_a_config_error_naming_it(name, value):
    with pytest.raises(SmartMCAConfigError, match=f"connection extra '{name}'"):
        from_extra(**{name: value})


@pytest.mark.parametrize("value", [2.5, "2.5"])
@pytest.mark.parametrize("name", ["max_retries", "max_response_bytes"])
def test_a_fractional_count_is_refused(name, value):
    with pytest.raises(SmartMCAConfigError, match=f"'{name}' must be an integer"):
        from_extra(**{name: value})


def test_numbers_as_the_ui_stores_them_are_read():
    settings = from_extra(timeout=" 12.5 ", max_retries="2", max_response_bytes="1e6", connect_timeout=3)
    assert (settings.timeout, settings.max_retries, settings.max_response_bytes) == (12.5, 2, 1_000_000)


@pytest.mark.parametrize(
    "kwargs",
    [{"timeout": math.nan}, {"timeout": math.inf}, {"max_retries": -1}, {"retry_max_wait": math.nan}],
)
def test_a_bad_hook_argument_is_a_config_error_before_any_request(make_hook, smartmca_emulator, kwargs):
    (name,) = kwargs
    hook = make_hook(**kwargs)
    with pytest.raises(SmartMCAConfigError, match=f"argument '{name}'"):
        hook.get_workflow("wf_deal_onboarding")
    assert smartmca_emulator.count() == 0


def test_settings_built_directly_are_checked_too():
    with pytest.raises(SmartMCAConfigError, match="'timeout'"):
        ClientSettings(timeout=math.nan)
    with pytest.raises(SmartMCAConfigError, match="API key"):
        ClientSettings(api_key="smca live")


# --- ports ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("https://api.example.com:99999", None),
        ("https://api.example.com:0", None),
        ("http://127.0.0.1:65536", None),
        ("api.example.com:-1", None),
        ("api.example.com:http", None),
        ("https://api.example.com", 99999),
        ("https://api.example.com", 0),
        ("https://api.example.com", -5),
        ("https://api.example.com:8443", 9443),
    ],
)
def test_a_bad_port_is_a_config_error(host, port):
    with pytest.raises(SmartMCAConfigError, match="port"):
        settings_from_connection(host=host, port=port, password="smca_live_k3y", extra={})


def test_good_ports_are_kept():
    assert normalize_base_url("https://api.example.com:8443", 8443) == "https://api.example.com:8443"
    assert normalize_base_url("https://api.example.com", 65535) == "https://api.example.com:65535"


# --- the key --------------------------------------------------------------------------------------


@pytest.mark.parametrize("password", [KEY + "\n", KEY + "\r\n", f"  {KEY}\t", "\ufeff" + KEY])
def test_surrounding_white_space_of_the_key_is_removed_and_calls_work(make_hook, smartmca_emulator, password):
    if password.startswith("\ufeff"):  # a byte order mark is not white space: refused, not stripped
        with pytest.raises(SmartMCAConfigError, match="position 1 of"):
            make_hook(key=password).get_workflow("wf_deal_onboarding")
        return
    hook = make_hook(key=password)
    assert hook.settings.api_key == KEY
    hook.get_workflow("wf_deal_onboarding")
    assert smartmca_emulator.count(route="get_workflow", status=200) == 1


@pytest.mark.parametrize(
    "password",
    [
        "smca_live_Zq9v Xk2wPl7",
        "smca_live_Zq9v\x00Xk2wPl7",
        "smca_live_Zq9v\nXk2wPl7",
        "smca_live_Zq9v\r\nX-Evil: Xk2wPl7",
        "smca_live_Zq9vé Xk2wPl7",
        "smca_live_Zq9v\u2028Xk2wPl7",
    ],
    ids=repr,
)
def test_a_key_a_header_cannot_carry_is_refused_without_quoting_it(make_hook, smartmca_emulator, password):
    hook = make_hook(key=password)
    with pytest.raises(SmartMCAConfigError, match="API key") as err:
        hook.get_workflow("wf_deal_onboarding")
    for text in (str(err.value), repr(err.value)):
        assert_no_part_of(password.strip(), text)
    assert err.value.__context__ is None and err.value.__cause__ is None
    assert smartmca_emulator.count() == 0


def test_a_missing_or_blank_key_is_refused():
    for password in (None, "", " \n"):
        with pytest.raises(SmartMCAConfigError, match="no API key"):
            settings_from_connection(host=None, port=None, password=password, extra={})


# --- credentials in the base URL ------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "https://:smca_pw_S3cretValue@api.example.com",
        "https://user@api.example.com",
        "https://user:smca_pw_S3cretValue@api.example.com:443/api/public/v1",
        "user:smca_pw_S3cretValue@api.example.com",
        "http://u:smca_pw_S3cretValue@10.0.0.5",
        "ftp://u:smca_pw_S3cretValue@api.example.com",
        "https://u:smca_pw_S3cretValue@api.example.com:99999",
        "https://u:smca_pw_S3cretValue@api.example.com/?q=1",
    ],
)
def test_credentials_in_the_base_url_are_refused_without_repeating_them(host):
    with pytest.raises(SmartMCAConfigError, match="credentials") as err:
        settings_from_connection(host=host, port=None, password="smca_live_k3y", extra={})
    assert_no_part_of("smca_pw_S3cretValue", str(err.value))
    assert "password field" in str(err.value)


def test_an_at_sign_in_the_path_is_not_credentials():
    assert normalize_base_url("https://api.example.com/a@b") == "https://api.example.com/a@b"


def test_extra_that_is_not_an_object_is_refused():
    with pytest.raises(SmartMCAConfigError, match="JSON object"):
        settings_from_connection(host=None, port=None, password="smca_live_k3y", extra="[1, 2]")


@pytest.mark.parametrize("odd", [None, 0])
def test_a_verify_ssl_that_is_not_false_nor_a_path_still_verifies(odd):
    """Settings built in code skip the connection's parsing: an odd verify_ssl fails closed."""
    from airflow_provider_smartmca.client.transport import resolve_route

    route = resolve_route(ClientSettings(base_url="https://api.example.com", verify_ssl=odd), environ={})
    assert route.verify is True or (isinstance(route.verify, str) and route.verify)
