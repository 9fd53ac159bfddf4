"""Both transports against hostile servers and networks: one deadline, one body cap, one proxy/CA rule.

Every test runs the worker's transport (``SyncClient``) and the triggerer's (``AsyncClient``)
against the emulator over real HTTP on loopback: a body trickling one byte a second, an 800 MB
body, a real CONNECT proxy, a TLS emulator whose certificate only a named CA bundle trusts.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import certifi
import psutil
import pytest

from airflow_provider_smartmca.client import aio, protocol
from airflow_provider_smartmca.client.settings import ClientSettings, settings_from_connection
from airflow_provider_smartmca.client.sync import SyncClient
from airflow_provider_smartmca.errors import (
    SmartMCAConfigError,
    SmartMCAConnectionError,
    SmartMCAError,
    SmartMCAInvalidResponseError,
    SmartMCAServerError,
)
from airflow_provider_smartmca.testing import FULL_KEY
from airflow_provider_smartmca.testing.proxy import Proxy
from airflow_provider_smartmca.testing.pytest_plugin import FAST_CONFIG
from airflow_provider_smartmca.testing.server import Emulator
from airflow_provider_smartmca.testing.tls import self_signed_cert

KEY = FULL_KEY
HUGE = 800_000_000
CAP = 4 * 1024 * 1024
ENV_VARS = (
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
    "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE",
)  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or CA bundle from the machine running the tests."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def settings_for(emu: Emulator, **extra: Any) -> ClientSettings:
    return settings_from_connection(
        host=emu.base_url, port=None, password=KEY, extra={"max_retries": 0, **extra}
    )


def sync_send(settings: ClientSettings, name: str = "list_workflows", **kw: Any) -> protocol.RawResponse:
    client = SyncClient(settings)
    try:
        return client.send(protocol.build_request(settings, name, **kw))
    finally:
        client.close()


async def async_send_once(
    settings: ClientSettings, name: str = "list_workflows", timeout: float | None = None, **kw: Any
) -> protocol.RawResponse:
    async with aio.shared_session(settings) as client:
        request = protocol.build_request(settings, name, **kw)
        return await (client.send(request) if timeout is None else client.send(request, timeout=timeout))


def async_send(settings: ClientSettings, name: str = "list_workflows", **kw: Any) -> protocol.RawResponse:
    # Bounded: a transport without a deadline fails here instead of hanging the suite.
    return asyncio.run(asyncio.wait_for(async_send_once(settings, name, **kw), 10))


SENDERS = {"sync": sync_send, "async": async_send}


#: What a loaded machine may add to a deadline: the trickled bodies below take minutes at 1 byte/s,
#: so ending within the deadline plus this still proves the deadline ended the request.
MARGIN = 8.0


def bounded(fn: Callable[[], Any], limit: float = 10.0) -> tuple[Any, float]:
    """Run ``fn`` in a thread; fail if it is still running after ``limit`` s. Returns (outcome, seconds)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["outcome"] = fn()
        except BaseException as exc:
            box["outcome"] = exc

    start = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still running after {limit} s"
    return box["outcome"], time.monotonic() - start


def start_execution(emu: Emulator, entity_id: str) -> str:
    settings = settings_for(emu)
    body = {"workflowType": "wf_deal_onboarding", "entityType": "deal", "entityId": entity_id}
    raw = sync_send(settings, "trigger_workflow", body=body)
    assert raw.status == 202, raw.body
    return str(json.loads(raw.body)["executionId"])


def assert_carries_nothing(exc: BaseException) -> None:
    """What a transport raises is its own: no library exception (holding headers) behind it."""
    assert isinstance(exc, SmartMCAError), repr(exc)
    assert exc.__cause__ is None and exc.__context__ is None, repr(exc.__context__ or exc.__cause__)
    assert KEY not in str(exc) and KEY not in repr(exc)


# --- deadline (finding 4) -------------------------------------------------------------------------


@pytest.mark.slow
def test_get_execution_with_timeout_2_ends_in_2_s_against_a_trickling_body(make_hook, smartmca_emulator):
    execution_id = start_execution(smartmca_emulator, "d_trickle_sync")
    hook = make_hook(timeout=2, max_retries=0)
    smartmca_emulator.add_fault("trickle", route="get_execution", bytes_per_second=1, count=1)
    error, took = bounded(lambda: hook.get_execution(execution_id))
    assert isinstance(error, SmartMCAConnectionError), error
    assert error.request_sent is True
    assert "within 2 s" in str(error) and "get_execution" in str(error)
    assert 1.8 <= took < 2 + MARGIN, took
    assert_carries_nothing(error)


@pytest.mark.slow
def test_a_retry_after_a_trickle_gets_its_own_deadline(make_hook, smartmca_emulator):
    execution_id = start_execution(smartmca_emulator, "d_trickle_retry")
    hook = make_hook(timeout=2)
    smartmca_emulator.add_fault("trickle", route="get_execution", bytes_per_second=1, count=1)
    result, took = bounded(lambda: hook.get_execution(execution_id))
    assert not isinstance(result, BaseException), result
    assert 1.8 <= took < 2 + MARGIN, took
    # The trickled attempt is logged when the server notices the client left (up to 1 s later).
    assert smartmca_emulator.count(route="get_execution", status=200) == 1


@pytest.mark.slow
def test_async_send_ends_at_the_deadline_against_a_trickling_body(smartmca_emulator):
    execution_id = start_execution(smartmca_emulator, "d_trickle_async")
    settings = settings_for(smartmca_emulator, timeout=2)
    smartmca_emulator.add_fault("trickle", route="get_execution", bytes_per_second=1, count=1)
    start = time.monotonic()
    with pytest.raises(SmartMCAConnectionError, match="within 2 s") as err:
        async_send(settings, "get_execution", path_params={"execution_id": execution_id})
    took = time.monotonic() - start
    assert err.value.request_sent is True
    assert 1.8 <= took < 2 + MARGIN, took
    assert_carries_nothing(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["sync", "async"])
def test_a_caller_with_less_time_left_gets_a_shorter_deadline(smartmca_emulator, transport):
    """A wait near its own deadline passes its remaining time: the request ends by then."""
    execution_id = start_execution(smartmca_emulator, f"d_short_{transport}")
    settings = settings_for(smartmca_emulator, timeout=30)
    request = protocol.build_request(settings, "get_execution", path_params={"execution_id": execution_id})
    smartmca_emulator.add_fault("trickle", route="get_execution", bytes_per_second=1, count=1)

    def send() -> Any:
        if transport == "sync":
            return SyncClient(settings).send(request, timeout=1)

        async def main() -> Any:
            async with aio.shared_session(settings) as client:
                return await client.send(request, timeout=1)

        return asyncio.run(main())

    error, took = bounded(send)
    assert isinstance(error, SmartMCAConnectionError) and "within 1 s" in str(error), error
    assert 0.8 <= took < 1 + MARGIN, took


# --- body cap (finding 5) -------------------------------------------------------------------------


class PeakRss:
    """Peak resident memory growth of this process while the block runs, sampled every 5 ms."""

    def __enter__(self) -> PeakRss:
        self._proc = psutil.Process()
        self.base = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("transport", ["sync", "async"])
def test_an_800_mb_body_fails_fast_in_little_memory(smartmca_emulator, transport, chunked):
    settings = settings_for(smartmca_emulator)
    smartmca_emulator.add_fault("huge_body", route="list_workflows", size=HUGE, chunked=chunked, count=1)
    with PeakRss() as rss:
        error, took = bounded(lambda: SENDERS[transport](settings), limit=30)
    print(
        f"\n{transport} {'chunked' if chunked else 'content-length'}: {took:.2f} s, +{rss.growth_mb:.1f} MB RSS"
    )
    assert isinstance(error, SmartMCAInvalidResponseError), error
    assert "list_workflows" in str(error) and str(CAP) in str(error) and "max_response_bytes" in str(error)
    assert took < 5, took
    assert rss.growth_mb < 50, rss.growth_mb
    assert settings.max_response_bytes == CAP  # the default
    assert_carries_nothing(error)


@pytest.mark.parametrize("transport", ["sync", "async"])
def test_an_error_status_keeps_its_meaning_whatever_its_body_size(smartmca_emulator, transport):
    """A proxy's huge 502 page is a 502 (retryable), read no further than the cap."""
    settings = settings_for(smartmca_emulator)
    smartmca_emulator.add_fault("huge_body", route="list_workflows", size=HUGE, chunked=True, status=502)
    with PeakRss() as rss:
        raw, took = bounded(lambda: SENDERS[transport](settings), limit=30)
    assert isinstance(raw, protocol.RawResponse), raw
    assert raw.status == 502 and len(raw.body) == CAP
    with pytest.raises(SmartMCAServerError):
        protocol.parse_response(protocol.build_request(settings, "list_workflows"), raw, settings)
    assert took < 5 and rss.growth_mb < 50, (took, rss.growth_mb)


@pytest.mark.parametrize("transport", ["sync", "async"])
def test_a_small_cap_is_honoured_and_keep_alive_survives(smartmca_emulator, transport):
    settings = settings_for(smartmca_emulator, max_response_bytes=8192)
    smartmca_emulator.add_fault("huge_body", route="list_workflows", size=9000, count=1)
    with pytest.raises(SmartMCAInvalidResponseError, match="of 9000 bytes, over the cap of 8192 bytes"):
        SENDERS[transport](settings)
    assert SENDERS[transport](settings).status == 200


# --- proxy (finding 6) ----------------------------------------------------------------------------


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    with Proxy() as p:
        yield p


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_emulator_session(tls_files: tuple[Path, Path]) -> Iterator[Emulator]:
    with Emulator(FAST_CONFIG, tls_cert=tls_files[0], tls_key=tls_files[1]) as emu:
        yield emu


@pytest.fixture
def tls_emu(tls_emulator_session: Emulator) -> Emulator:
    tls_emulator_session.reset()
    return tls_emulator_session


@pytest.mark.parametrize("transport", ["sync", "async"])
def test_https_proxy_is_used_by_both_transports(tls_emu, tls_files, proxy, monkeypatch, transport):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    settings = settings_for(tls_emu, verify_ssl=str(tls_files[0]))
    assert SENDERS[transport](settings).status == 200
    assert [line.rsplit(" ", 1)[0] for line in proxy.request_lines] == [f"CONNECT 127.0.0.1:{tls_emu.port}"]


@pytest.mark.parametrize("transport", ["sync", "async"])
def test_http_proxy_is_used_for_a_plain_http_base_url(smartmca_emulator, proxy, monkeypatch, transport):
    monkeypatch.setenv("http_proxy", proxy.url)
    assert SENDERS[transport](settings_for(smartmca_emulator)).status == 200
    assert [line.split(" ")[0] for line in proxy.request_lines] == ["GET"]
    assert proxy.request_lines[0].split(" ")[1].startswith(smartmca_emulator.api_url)


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.0/8", "*"])
@pytest.mark.parametrize("transport", ["sync", "async"])
def test_no_proxy_bypasses_the_proxy(tls_emu, tls_files, proxy, monkeypatch, transport, no_proxy):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert SENDERS[transport](settings_for(tls_emu, verify_ssl=str(tls_files[0]))).status == 200
    assert proxy.request_lines == []


@pytest.mark.parametrize("transport", ["sync", "async"])
def test_an_unsupported_proxy_is_a_config_error_naming_the_variable(tls_emu, monkeypatch, transport):
    monkeypatch.setenv("HTTPS_PROXY", "socks5://user:proxy-secret@127.0.0.1:1080")
    with pytest.raises(SmartMCAConfigError, match="HTTPS_PROXY") as err:
        SENDERS[transport](settings_for(tls_emu))
    assert "proxy-secret" not in str(err.value)
    assert tls_emu.count() == 0


# --- trusted CAs (finding 6) ----------------------------------------------------------------------


def ca_case(monkeypatch: pytest.MonkeyPatch, cert: Path, case: str) -> dict[str, Any]:
    """Set the environment for ``case``; return the connection extras."""
    if case == "SSL_CERT_FILE":
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    elif case == "REQUESTS_CA_BUNDLE over SSL_CERT_FILE":
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    elif case == "explicit path over env":
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
        return {"verify_ssl": str(cert)}
    elif case == "explicit true still reads env":
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        return {"verify_ssl": "true"}
    elif case == "explicit false over env":
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
        return {"verify_ssl": False}
    return {}


@pytest.mark.parametrize(
    "case",
    [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE over SSL_CERT_FILE",
        "explicit path over env",
        "explicit true still reads env",
        "explicit false over env",
    ],
)
@pytest.mark.parametrize("transport", ["sync", "async"])
def test_both_transports_trust_the_same_cas(tls_emu, tls_files, monkeypatch, transport, case):
    extra = ca_case(monkeypatch, tls_files[0], case)
    assert SENDERS[transport](settings_for(tls_emu, **extra)).status == 200


@pytest.mark.parametrize("case", ["nothing set: the default store", "REQUESTS_CA_BUNDLE wrong"])
@pytest.mark.parametrize("transport", ["sync", "async"])
def test_an_untrusted_certificate_is_a_config_error_naming_the_source(tls_emu, monkeypatch, transport, case):
    if case == "REQUESTS_CA_BUNDLE wrong":
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
        monkeypatch.setenv("SSL_CERT_FILE", "/does/not/matter")
    with pytest.raises(SmartMCAConfigError, match="verify_ssl") as err:
        SENDERS[transport](settings_for(tls_emu))
    source = "REQUESTS_CA_BUNDLE" if "REQUESTS" in case else "default CA store"
    assert source in str(err.value)
    assert_carries_nothing(err.value)


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
@pytest.mark.parametrize("transport", ["sync", "async"])
def test_a_missing_ca_bundle_is_a_config_error_before_any_request(tls_emu, monkeypatch, transport, variable):
    monkeypatch.setenv(variable, "/no/such/ca-bundle.pem")
    with pytest.raises(SmartMCAConfigError, match=f"{variable} names '/no/such/ca-bundle.pem'"):
        SENDERS[transport](settings_for(tls_emu))
    assert tls_emu.count() == 0


@pytest.mark.parametrize("transport", ["sync", "async"])
def test_a_ca_bundle_that_is_not_pem_is_a_config_error(tls_emu, tmp_path, monkeypatch, transport):
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(garbage))
    with pytest.raises(SmartMCAConfigError, match="SSL_CERT_FILE") as err:
        SENDERS[transport](settings_for(tls_emu))
    assert_carries_nothing(err.value)


# --- what transports raise carries nothing of the request (finding 3, key part) ------------------


@pytest.mark.parametrize("transport", ["sync", "async"])
@pytest.mark.parametrize("fault", ["drop_before", "drop_mid_body", "refused"])
def test_transport_errors_have_no_library_exception_behind_them(smartmca_emulator, transport, fault):
    settings = settings_for(smartmca_emulator)
    if fault == "refused":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        settings = settings_from_connection(
            host=f"http://127.0.0.1:{port}", port=None, password=KEY, extra={"max_retries": 0}
        )
    else:
        # Twice: aiohttp itself sends a GET again, once, on a connection dropped before any answer.
        smartmca_emulator.add_fault(fault, route="list_workflows", count=2)
    with pytest.raises(SmartMCAConnectionError) as err:
        SENDERS[transport](settings)
    assert err.value.request_sent is (fault != "refused")
    assert_carries_nothing(err.value)


# --- a proxy between the client and the server: sent, or not? (issue 16) --------------------------

DROPS = ["connect, the server drops", "connect, the proxy drops", "forward, the proxy drops"]
TRIGGER = {"workflowType": "wf_deal_onboarding", "entityType": "deal"}


@pytest.fixture
def intercepting_proxy(tls_files: tuple[Path, Path]) -> Iterator[Proxy]:
    with Proxy(intercept=tls_files) as p:
        yield p


def drop_through_proxy(
    case: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> tuple[Emulator, str, dict[str, Any]]:
    """Route the client through a proxy that loses the answer to the next 3 POSTs, after the server
    acted: an opaque CONNECT tunnel passing on the server's close, or the proxy closing the client's
    connection itself (TLS-inspecting CONNECT, or plain forwarding). Returns (emulator, host, extras)."""
    if case == "connect, the server drops":
        emu, files, proxy = (request.getfixturevalue(n) for n in ("tls_emu", "tls_files", "proxy"))
        emu.add_fault("drop_after", route="trigger", count=3)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        return emu, emu.base_url, {"verify_ssl": str(files[0])}
    emu = request.getfixturevalue("smartmca_emulator")
    if case == "connect, the proxy drops":
        files, proxy = request.getfixturevalue("tls_files"), request.getfixturevalue("intercepting_proxy")
        proxy.drop_after_forward("POST", count=3)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        return emu, f"https://127.0.0.1:{emu.port}", {"verify_ssl": str(files[0])}
    proxy = request.getfixturevalue("proxy")
    proxy.drop_after_forward("POST", count=3)
    monkeypatch.setenv("http_proxy", proxy.url)
    return emu, emu.base_url, {}


@pytest.mark.parametrize("case", DROPS)
def test_a_post_the_server_acted_on_is_found_not_sent_again_when_a_proxy_drops_it(
    case, request, monkeypatch, make_hook
):
    """Production reaches the API through a proxy; the connection drops after the server acted."""
    emu, host, extra = drop_through_proxy(case, request, monkeypatch)
    hook = make_hook(host=host, extra={**extra, "max_retries": 2})
    intents: list[Any] = []
    result = hook.trigger_workflow("wf_deal_onboarding", "deal", "d_proxy_drop", on_intent=intents.append)
    assert emu.count(route="trigger") == 1
    assert emu.executions_created(entity_id="d_proxy_drop") == 1
    assert result.recovered is True
    assert len(intents) == 1 and intents[0] is not None  # the stored intent is kept


@pytest.mark.parametrize("transport", ["sync", "async"])
@pytest.mark.parametrize("case", DROPS)
def test_both_transports_call_a_proxy_drop_after_sending_unknown(case, transport, request, monkeypatch):
    emu, host, extra = drop_through_proxy(case, request, monkeypatch)
    settings = settings_from_connection(host=host, port=None, password=KEY, extra={"max_retries": 0, **extra})
    body = {**TRIGGER, "entityId": f"d_unknown_{transport}"}
    with pytest.raises(SmartMCAConnectionError) as err:
        SENDERS[transport](settings, "trigger_workflow", body=body)
    assert err.value.request_sent is True, err.value
    assert emu.executions_created(entity_id=body["entityId"]) == 1
    assert_carries_nothing(err.value)


def refusing_proxy(refusal: str, proxy: Proxy, monkeypatch: pytest.MonkeyPatch, count: int | None) -> None:
    if refusal == "unreachable":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{s.getsockname()[1]}")
        return
    proxy.refuse_connect(int(refusal), count=count)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)


@pytest.mark.parametrize("transport", ["sync", "async"])
@pytest.mark.parametrize("refusal", ["407", "502", "unreachable"])
def test_a_proxy_that_refused_before_forwarding_means_not_sent(
    tls_emu, tls_files, proxy, monkeypatch, transport, refusal
):
    refusing_proxy(refusal, proxy, monkeypatch, count=None)
    settings = settings_for(tls_emu, verify_ssl=str(tls_files[0]))
    with pytest.raises(SmartMCAConnectionError) as err:
        SENDERS[transport](settings, "trigger_workflow", body={**TRIGGER, "entityId": "d_refused"})
    assert err.value.request_sent is False, err.value
    assert tls_emu.count() == 0
    assert_carries_nothing(err.value)


@pytest.mark.parametrize("refusal", ["407 once", "unreachable"])
def test_a_post_a_proxy_refused_is_sent_again_and_forgotten_when_it_never_got_through(
    tls_emu, tls_files, proxy, monkeypatch, make_hook, refusal
):
    """Refused before any forward: sending again is safe, and so is forgetting the stored intent."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    hook = make_hook(host=tls_emu.base_url, extra={"verify_ssl": str(tls_files[0]), "max_retries": 2})
    intents: list[Any] = []

    def on_intent(intent: Any) -> None:
        # After the snapshot, just before the POST: the proxy turns hostile, and the pooled tunnel
        # is gone (as after a proxy's idle timeout), so the POST needs a new CONNECT.
        if not intents:
            refusing_proxy(refusal.split()[0], proxy, monkeypatch, count=1)
            hook.client.close()
        intents.append(intent)

    if refusal == "407 once":  # refused once: the retry goes through
        result = hook.trigger_workflow("wf_deal_onboarding", "deal", "d_refused", on_intent=on_intent)
        assert result.recovered is False and len(intents) == 1
        assert tls_emu.count(route="trigger") == 1 and tls_emu.executions_created(entity_id="d_refused") == 1
        assert [line.split(" ")[0] for line in proxy.request_lines] == ["CONNECT"] * 3
        return
    with pytest.raises(SmartMCAConnectionError) as err:
        hook.trigger_workflow("wf_deal_onboarding", "deal", "d_refused", on_intent=on_intent)
    assert err.value.request_sent is False
    assert tls_emu.count(route="trigger") == 0
    assert len(intents) == 2 and intents[-1] is None
