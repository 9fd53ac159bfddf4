"""RequestBudget: one request budget per SmartMCA key, shared by everything a triggerer sends with it.

A triggerer runs every deferred wait (and every asset watcher) of the deployment on one event
loop. Were each of them to find out about a ``429`` on its own, one rate-limit answer would turn
into a thousand more requests sure to be refused. A budget is the single gate all of them pass
through:

* **A 429 pauses the key once.** The first ``429`` sets a pause (its ``Retry-After``, capped by
  the connection's ``retry_after_cap``; without one, an exponential backoff). Every request on
  that key, from any wait, waits for the pause to end; more ``429`` answers during the pause
  only extend it to their own ``Retry-After``, they never add up. The pause is logged once.
* **Concurrency is bounded.** At most ``concurrency`` requests of the key are in flight; the
  others queue here, each bounded by its own time limit.
* **Metrics.** Every request is counted by kind (``smartmca.requests.<endpoint>``) and every
  429 (``smartmca.rate_limited``), through Airflow's ``Stats``.

One budget exists per event loop and API key: in a triggerer, one per key in the process. The
loop's :class:`~airflow_provider_smartmca.triggers.context.TriggererContext` keeps them; they
are held by their users and vanish with the last of them.

Usage, from any trigger (the execution waits, their poller and the event watchers alike)::

    budget = context.current().budget(settings)  # keep a reference while in use
    raw = await budget.send(client, request, timeout=seconds_left)
    result = protocol.parse_response(request, raw, settings)
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING

# Stats: Airflow's metrics facade (statsd, OpenTelemetry or nothing, as the deployment
# configures), where incr() counts. Common-compat (>= 1.23, required) knows where each Airflow
# 3.x keeps it.
from airflow.providers.common.compat.sdk import Stats

from airflow_provider_smartmca.client import protocol
from airflow_provider_smartmca.errors import SmartMCARateLimitError

if TYPE_CHECKING:
    from airflow_provider_smartmca.client.aio import AsyncClient
    from airflow_provider_smartmca.client.settings import ClientSettings

log = logging.getLogger(__name__)

#: Requests of one key in flight at once, by default: the shared session's connection bound.
DEFAULT_CONCURRENCY = 32


def incr(stat: str, count: int = 1) -> None:
    """Count ``stat`` (prefixed ``smartmca.``); a metrics backend that fails never fails a wait."""
    if count:
        try:
            Stats.incr(f"smartmca.{stat}", count)
        except Exception:  # pragma: no cover - a broken metrics backend
            log.debug("metrics backend failed for %s", stat, exc_info=True)


class RequestBudget:
    """
    The request budget of one SmartMCA key in one event loop (see the module docstring).

    :param settings: the connection's settings (``retry_after_cap`` and the backoff used when a
        429 has no ``Retry-After``).
    :param concurrency: requests in flight at once, at most.
    """

    def __init__(self, settings: ClientSettings, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.settings, self.concurrency = settings, concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._paused_until = 0.0  # time.monotonic()
        self._refusals = 0  # 429s in a row, for the backoff of one without Retry-After

    def __repr__(self) -> str:
        return f"RequestBudget(base_url={self.settings.base_url!r}, concurrency={self.concurrency})"

    def pause_left(self) -> float:
        """Seconds until requests on this key may be sent again (0 when not paused)."""
        return max(0.0, self._paused_until - time.monotonic())

    def pause(self, seconds: float) -> None:
        """
        Pause every request on this key for ``seconds`` from now; a longer pause already set wins.

        :param seconds: how long; capped by the connection's ``retry_after_cap``.
        """
        seconds = min(max(0.0, seconds), self.settings.retry_after_cap)
        until = time.monotonic() + seconds
        if until <= self._paused_until:
            return
        if self.pause_left() == 0:
            msg = "SmartMCA answered 429 (rate limited): pausing every request with this key for %.1f s"
            log.warning(msg, seconds)
        self._paused_until = until

    async def send(
        self, client: AsyncClient, request: protocol.PreparedRequest, *, timeout: float | None = None
    ) -> protocol.RawResponse:
        """
        Send ``request`` once through the budget: after any pause, in a free slot, then count it.

        :param client: the transport.
        :param request: the request to send.
        :param timeout: the caller's time limit in seconds, pause and queue included, or None. A
            request that waited for neither gets it whole, so the transport can tell the 'timeout'
            setting from a caller's shorter limit.
        :raises SmartMCARateLimitError: the key is paused beyond ``timeout``: nothing was sent.
        :raises SmartMCAConnectionError: the transport failed, or no slot freed up within ``timeout``.
        """
        start = time.monotonic()
        end = math.inf if timeout is None else start + timeout
        while True:
            while (wait := self.pause_left()) > 0:
                if time.monotonic() + wait >= end:
                    raise SmartMCARateLimitError(
                        f"{request.label} not sent: requests with this key are paused for {wait:.1f} s "
                        f"after a 429 (Retry-After: {wait:.1f})",
                        retry_after=wait,
                        **request.context(),
                    )
                await asyncio.sleep(wait)
            try:  # a free slot is taken at once; only a queue is bounded by the time limit
                await asyncio.wait_for(
                    self._slots.acquire(),
                    end - time.monotonic() if self._slots.locked() and end < math.inf else None,
                )
            except TimeoutError:
                raise protocol.connection_error(
                    request, "no free connection slot before the time limit", request_sent=False
                ) from None
            if self.pause_left() == 0:
                break
            self._slots.release()  # a 429 arrived while this request queued: wait it out too
        try:
            incr(f"requests.{request.endpoint.name}")
            left = timeout  # whole, unless a pause or a queue spent some of it (over a millisecond)
            if timeout is not None and (now := time.monotonic()) - start > 0.001:
                left = max(0.001, end - now)
            raw = await client.send(request, timeout=left)
        finally:
            self._slots.release()
        if raw.status != 429:
            self._refusals = 0
            return raw
        # The one retry rule (Retry-After, else exponential backoff), for every wait on the key.
        incr("rate_limited")
        self._refusals += 1
        self.pause(
            protocol.backoff_seconds(
                self.settings, self._refusals, protocol.error_for_status(request, raw, self.settings)
            )
        )
        return raw
