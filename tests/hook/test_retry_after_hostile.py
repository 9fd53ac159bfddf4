"""A hostile ``Retry-After`` never raises and never yields nan, inf or a negative wait (issue 9, finding 8).

``float()`` accepts ``nan``, ``inf``, ``1_0`` and non-ASCII digits; ``nan`` slipped through
``min``/``max`` and then made the retry sleep raise a raw ``ValueError``.
"""

from __future__ import annotations

import math
import time
from email.utils import formatdate

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from airflow_provider_smartmca.client.protocol import parse_retry_after
from airflow_provider_smartmca.errors import SmartMCARateLimitError

CAP = 60.0


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=60) | st.from_regex(r"\A-?[0-9]{0,400}(\.[0-9]*)?([eE][+-]?[0-9]{1,4})?\Z"))
@example("nan")
@example("NaN")
@example("-nan")
@example("inf")
@example("-inf")
@example("Infinity")
@example("1e400")
@example("9" * 5000)
@example("Mon, 01 Jan 99999 00:00:00 GMT")
@example("Mon, 01 Jan 99999999999999999999 00:00:00 GMT")  # OverflowError in email.utils
@example("Mon, 99 Jan 2020 00:00:00 GMT")
@example("Mon, 01 Jan 2020 99:99:99 +9999")
def test_any_header_value_gives_none_or_a_finite_capped_wait(value):
    wait = parse_retry_after(value, CAP)
    assert wait is None or (math.isfinite(wait) and 0.0 <= wait <= CAP)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("3600", CAP),
        ("9" * 400, CAP),  # a number float() reads as inf: capped, not inf
        ("nan", None),
        ("inf", None),
        ("-5", None),  # not delta-seconds (RFC 9110: 1*DIGIT)
        ("1_0", None),  # float() would read 10
        ("\u0663", None),  # ARABIC-INDIC DIGIT THREE: float() would read 3
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_values(value, expected):
    assert parse_retry_after(value, CAP) == expected


def test_retry_after_as_http_date():
    assert parse_retry_after(formatdate(time.time() - 100, usegmt=True), CAP) == 0.0
    assert parse_retry_after(formatdate(time.time() + 10_000, usegmt=True), CAP) == CAP
    assert 5 <= parse_retry_after(formatdate(time.time() + 20, usegmt=True), CAP) <= 20


@pytest.mark.parametrize("header", ["nan", "inf", "-5", "1e400", "9" * 400, "garbage", "Mon, 99 Foo"])
def test_429_with_a_hostile_retry_after_is_retried_and_succeeds(make_hook, smartmca_emulator, header):
    """The emulator sends the header verbatim; the retry waits a finite, capped time."""
    hook = make_hook(extra={"retry_after_cap": 0.2, "max_retries": 2})
    smartmca_emulator.add_fault("status", route="get_workflow", status=429, retry_after=header, count=1)
    start = time.monotonic()
    assert hook.get_workflow("wf_deal_onboarding").id == "wf_deal_onboarding"
    assert time.monotonic() - start < 30  # capped at 0.2 s (the default cap is 60 s); margin for load
    assert smartmca_emulator.count(route="get_workflow", status=429) == 1


@pytest.mark.parametrize("header", ["nan", "inf", "-5"])
def test_429_error_carries_no_nan(make_hook, smartmca_emulator, header):
    hook = make_hook(extra={"max_retries": 0})
    smartmca_emulator.add_fault("status", route="get_workflow", status=429, retry_after=header, count=1)
    with pytest.raises(SmartMCARateLimitError) as err:
        hook.get_workflow("wf_deal_onboarding")
    assert err.value.retry_after is None
    assert "nan" not in str(err.value) and "inf" not in str(err.value)
