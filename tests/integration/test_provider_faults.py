"""Provider faults end to end: a real ChannelGateway and WebhookProvider against real HTTP
servers on 127.0.0.1 (no Ray) that answer 500, answer 429 with Retry-After, hang past the
timeout, refuse connections or are merely slow; throttled items that expire; and the
circuit breaker that stops calling an endpoint which no longer answers, probes it later and
then delivers everything it held back.

Timeouts are 1 s (the config's minimum), so each hanging attempt costs a second; where
the breaker's `open_for` matters the gateway runs on a clock the test moves by hand.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from itinerary.actors import metrics as metrics_module
from itinerary.actors.metrics import GatewayMetrics
from itinerary.channels.gateway import ChannelGateway
from itinerary.config.channels import LimitConfig, RetryConfig, WebhookChannelConfig
from itinerary.engine.circuit import CLOSED, HALF_OPEN, OPEN
from itinerary.engine.messages import EXPIRED, FAILED, FINAL_OUTCOMES, SENT, THROTTLED, Outcome
from itinerary.receivers import WebhookReceiver, free_port, wait_until
from tests.integration.test_gateway import (
    HOUR,
    SECOND,
    TOKEN,
    FakeClock,
    GatewayFactory,
    Sink,
    ms,
    request,
    webhook_config,
)

# Small numbers so that a handful of messages trips the breaker within a second or two.
BREAKER = {"window": 20, "min_calls": 10, "failure_ratio": 0.5, "open_for": "PT30S"}


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = WebhookReceiver(token=TOKEN)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayFactory]:
    started: list[ChannelGateway] = []

    async def make(config: WebhookChannelConfig, **kwargs: Any) -> tuple[ChannelGateway, Sink]:
        sink = Sink()
        kwargs.setdefault("rng", random.Random(11))
        gw = ChannelGateway("hook", config, outcome_sink=sink, **kwargs)
        await gw.start()
        started.append(gw)
        return gw, sink

    yield make
    for gw in started:
        await gw.stop()


def final_once(sink: Sink) -> dict[str, Outcome]:
    """Final outcomes by id, checking that no message got two."""
    ids = [o["id"] for o in sink.outcomes if o["outcome"] in FINAL_OUTCOMES]
    assert len(ids) == len(set(ids)), "a message got more than one final outcome"
    return sink.final()


# -- answers that are retried -----------------------------------------------------------


async def test_server_errors_are_retried_and_delivered_once(receiver: WebhookReceiver, gateway: GatewayFactory) -> None:
    receiver.script([500, 502, 500])
    gw, sink = await gateway(webhook_config(receiver.url, max_connections=1))
    gw.submit([request(i) for i in range(5)])
    assert await sink.wait_final(5)
    final = final_once(sink)
    assert {o["outcome"] for o in final.values()} == {SENT}
    assert sum(o["attempts"] for o in final.values()) == 8
    assert sorted(a.status for a in receiver.requests) == [200] * 5 + [500, 500, 502]
    assert receiver.unique_keys == {request(i)["id"] for i in range(5)} and receiver.duplicates == 0
    stats = gw.stats()
    assert stats["retries"] == 3
    # Error answers show the endpoint is there: they never count against it.
    assert (stats["circuit"]["state"], stats["circuit"]["recent_unanswered"]) == (CLOSED, 0)


async def test_retry_after_of_a_429_is_honoured(receiver: WebhookReceiver, gateway: GatewayFactory) -> None:
    receiver.script([(429, {"Retry-After": "1"})])
    gw, sink = await gateway(webhook_config(receiver.url))  # backoff would be 10-50 ms
    gw.submit([request(1)])
    assert await sink.wait_final(1)
    outcome = final_once(sink)[request(1)["id"]]
    assert (outcome["outcome"], outcome["status"], outcome["attempts"]) == (SENT, 200, 2)
    first, second = receiver.requests
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at == pytest.approx(1.0, abs=0.2)
    assert gw.stats()["retries"] == 1


# -- no answer at all -------------------------------------------------------------------


async def test_a_hanging_endpoint_times_out_is_retried_then_fails(
    receiver: WebhookReceiver, gateway: GatewayFactory
) -> None:
    receiver.delay = 1.5  # longer than the 1 s timeout
    retry = RetryConfig(max_retries=1, backoff=ms(10), max_backoff=ms(20))
    gw, sink = await gateway(webhook_config(receiver.url, timeout=SECOND, retry=retry))
    started = time.monotonic()
    gw.submit([request(1)])
    assert await sink.wait_final(1, timeout=4.0)
    outcome = final_once(sink)[request(1)["id"]]
    assert (outcome["outcome"], outcome["attempts"], outcome["status"]) == (FAILED, 2, None)
    assert outcome["reason"] == "timeout after 1.0s"
    assert time.monotonic() - started >= 2.0  # two whole timeouts
    assert receiver.attempts == 2
    circuit = gw.stats()["circuit"]
    assert (circuit["recent_attempts"], circuit["recent_unanswered"], circuit["state"]) == (2, 2, CLOSED)


async def test_a_timeout_then_an_answer_is_delivered(receiver: WebhookReceiver, gateway: GatewayFactory) -> None:
    receiver.delay = 1.5
    gw, sink = await gateway(webhook_config(receiver.url, timeout=SECOND))
    gw.submit([request(1)])
    assert await wait_until(lambda: receiver.attempts == 1, 1.0)
    receiver.delay = 0.0  # the first call still hangs; the retry is answered at once
    assert await sink.wait_final(1, timeout=3.0)
    outcome = final_once(sink)[request(1)["id"]]
    assert (outcome["outcome"], outcome["attempts"]) == (SENT, 2)
    assert receiver.attempts == 2 and receiver.unique_keys == {request(1)["id"]}
    assert gw.stats()["retries"] == 1


async def test_refused_connections_are_retried_then_fail(gateway: GatewayFactory) -> None:
    port = free_port()  # nothing listens there
    retry = RetryConfig(max_retries=2, backoff=ms(10), max_backoff=ms(20))
    gw, sink = await gateway(webhook_config(f"http://127.0.0.1:{port}/hook", retry=retry))
    gw.submit([request(1)])
    assert await sink.wait_final(1)
    outcome = final_once(sink)[request(1)["id"]]
    assert (outcome["outcome"], outcome["attempts"], outcome["status"]) == (FAILED, 3, None)
    assert outcome["reason"] == f"connection refused: 127.0.0.1:{port}"
    stats = gw.stats()
    assert stats["retries"] == 2
    assert (stats["circuit"]["recent_unanswered"], stats["circuit"]["state"]) == (3, CLOSED)  # under min_calls


async def test_a_slow_endpoint_within_the_timeout_uses_every_connection(
    receiver: WebhookReceiver, gateway: GatewayFactory
) -> None:
    receiver.delay = 0.3
    gw, sink = await gateway(webhook_config(receiver.url, timeout=SECOND, max_connections=4))
    started = time.monotonic()
    gw.submit([request(i) for i in range(12)])
    assert await sink.wait_final(12, timeout=3.0)
    elapsed = time.monotonic() - started
    final = final_once(sink)
    assert {(o["outcome"], o["attempts"]) for o in final.values()} == {(SENT, 1)}
    # Three waves of four: the connection limit, and not more, is used.
    assert 0.85 <= elapsed < 2.0
    arrivals = sorted(a.at for a in receiver.requests)
    overlapping = max(sum(1 for b in arrivals if a - 0.25 <= b <= a) for a in arrivals)
    assert overlapping == 4
    assert gw.stats()["retries"] == 0 and receiver.duplicates == 0


# -- expiry -----------------------------------------------------------------------------


async def test_throttled_items_expire_after_max_age(receiver: WebhookReceiver, gateway: GatewayFactory) -> None:
    # One call an hour: the second and third message can only wait, and expire on time even
    # though the limiter would not wake the gateway for an hour.
    limit = LimitConfig(calls=1, period=HOUR, burst=1, max_age=ms(500))
    gw, sink = await gateway(webhook_config(receiver.url, limit=limit))
    submitted = time.time()
    gw.submit([request(i) for i in range(3)])
    assert await sink.wait_final(3, timeout=2.0)
    final = final_once(sink)
    assert final[request(0)["id"]]["outcome"] == SENT
    for i in (1, 2):
        expired = final[request(i)["id"]]
        assert (expired["outcome"], expired["attempts"]) == (EXPIRED, 0)
        assert expired["reason"].startswith("expired: queued 0.5s, over max_age 0.5s")
        assert 0.5 <= expired["at"] - submitted < 0.8
    # both wait for the limiter, each is told so once
    assert [o["id"] for o in sink.of_kind(THROTTLED)] == [request(1)["id"], request(2)["id"]]
    assert len(receiver.received) == 1
    assert gw.stats()["outcomes"][EXPIRED] == 2


async def test_messages_held_by_an_open_breaker_still_expire(gateway: GatewayFactory) -> None:
    port = free_port()
    limit = LimitConfig(calls=100, period=SECOND, burst=100, max_age=ms(500))
    circuit = {"window": 2, "min_calls": 2, "open_for": "PT30S"}
    config = webhook_config(
        f"http://127.0.0.1:{port}/hook",
        limit=limit,
        max_connections=1,
        retry=RetryConfig(max_retries=0),
        circuit=circuit,
    )
    gw, sink = await gateway(config)
    gw.submit([request(i) for i in range(4)])
    assert await sink.wait_final(4, timeout=2.0)
    final = final_once(sink)
    for i in (0, 1):  # two refusals open the breaker
        assert final[request(i)["id"]]["reason"] == f"connection refused: 127.0.0.1:{port}"
    for i in (2, 3):  # never attempted: held back, then too old
        assert (final[request(i)["id"]]["outcome"], final[request(i)["id"]]["attempts"]) == (EXPIRED, 0)
    circuit_stats = gw.stats()["circuit"]
    assert (circuit_stats["state"], circuit_stats["opened"]) == (OPEN, 1)
    # The first held head; the second was as old, so it expired without asking the breaker.
    assert circuit_stats["short_circuited"] == 1


# -- the circuit breaker ----------------------------------------------------------------


class FakeMetrics:
    """Stands in for `ray.util.metrics`: records what GatewayMetrics sets and adds."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def _metric(self, kind: str) -> Callable[..., Any]:
        owner = self

        class Metric:
            def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
                self.name = name

            def _key(self, tags: dict[str, str] | None) -> tuple[str, tuple[tuple[str, str], ...]]:
                return self.name, tuple(sorted((tags or {}).items()))

            def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
                key = self._key(tags)
                owner.values[key] = owner.values.get(key, 0.0) + value

            def set(self, value: float, tags: dict[str, str] | None = None) -> None:
                owner.values[self._key(tags)] = value

            def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
                pass

        return Metric

    def __getattr__(self, kind: str) -> Callable[..., Any]:
        if kind in ("Counter", "Gauge", "Histogram"):
            return self._metric(kind)
        raise AttributeError(kind)

    def get(self, name: str, **tags: str) -> float | None:
        return self.values.get((name, tuple(sorted(tags.items()))))


class StateRecorder(GatewayMetrics):
    """GatewayMetrics that also remembers the breaker states it was told about."""

    def __init__(self) -> None:
        super().__init__()
        self.states: list[str] = []

    def on_circuit(self, channel: str, state: str, short_circuited: int) -> None:
        if not short_circuited:
            self.states.append(state)
        super().on_circuit(channel, state, short_circuited)


async def test_breaker_stops_calling_a_hanging_endpoint_then_probes_and_delivers_everything(
    receiver: WebhookReceiver, gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeMetrics()
    monkeypatch.setattr(metrics_module, "_ray_metrics", lambda: fake)
    observer = StateRecorder()
    clock = FakeClock()
    receiver.delay = 1.5  # every call hangs past the 1 s timeout
    # Backoff well above the spread of the ten timeouts, so no retry slips in before it opens.
    retry = RetryConfig(max_retries=3, backoff=ms(200), max_backoff=ms(400))
    config = webhook_config(receiver.url, timeout=SECOND, max_connections=10, retry=retry, circuit=BREAKER)
    gw, sink = await gateway(config, clock=clock, observer=observer)
    gw.submit([request(i) for i in range(30)])

    # Ten calls go out at once and time out together: ten unanswered of ten opens it.
    assert await wait_until(lambda: gw.stats()["circuit"]["state"] == OPEN, 3.0)
    # Calls that started just before it opened still end (in a timeout); then nothing.
    assert await wait_until(lambda: gw.stats()["attempting"] == 0, 2.0)
    attempts = receiver.attempts
    assert 10 <= attempts < 20
    assert not await wait_until(lambda: receiver.attempts > attempts, 0.5), "called while open"
    stats = gw.stats()
    circuit = stats["circuit"]
    assert circuit["opened"] == 1
    assert circuit["half_open_in_s"] == pytest.approx(30.0)
    # Nothing is dropped: every retry waits for the breaker and the rest stay queued.
    assert sink.final() == {}
    assert stats["in_flight"] == circuit["held_retries"] > 0
    assert stats["in_flight"] + stats["queue_depth"] == 30
    assert circuit["short_circuited"] >= 1
    assert fake.get("itinerary_gateway_circuit_open", channel="hook") == 1.0

    # The endpoint recovers; once open_for is over, new work wakes the dispatcher, its head
    # is the probe, the probe is answered and the breaker lets everything through.
    receiver.delay = 0.0
    clock.advance(30)
    gw.submit([request(30)])
    assert await sink.wait_final(31, timeout=5.0)
    final = final_once(sink)
    assert {o["outcome"] for o in final.values()} == {SENT}
    assert receiver.unique_keys == {request(i)["id"] for i in range(31)}
    assert gw.stats()["circuit"]["state"] == CLOSED
    assert observer.states[:4] == [CLOSED, OPEN, HALF_OPEN, CLOSED]

    # The same numbers reach the metrics.
    observer.export()
    shorted = fake.get("itinerary_gateway_short_circuited_total", channel="hook")
    assert shorted == gw.stats()["circuit"]["short_circuited"]
    assert fake.get("itinerary_gateway_circuit_opened_total", channel="hook") == 1
    assert fake.get("itinerary_gateway_circuit_open", channel="hook") == 0.0
    assert fake.get("itinerary_messages_total", channel="hook", outcome=SENT) == 31


async def test_a_failed_probe_keeps_the_breaker_open(gateway: GatewayFactory) -> None:
    port = free_port()  # refusals count like timeouts, and are quick
    clock = FakeClock()
    circuit = {**BREAKER, "min_calls": 4, "window": 4}
    retry = RetryConfig(max_retries=0)
    config = webhook_config(f"http://127.0.0.1:{port}/hook", max_connections=1, retry=retry, circuit=circuit)
    gw, sink = await gateway(config, clock=clock)
    gw.submit([request(i) for i in range(6)])
    assert await sink.wait_final(4)
    assert await wait_until(lambda: gw.stats()["circuit"]["state"] == OPEN, 1.0)
    clock.advance(30)
    gw.submit([request(6)])  # the head (request 4) probes: refused again
    assert await sink.wait_final(5)
    assert await wait_until(lambda: gw.stats()["circuit"]["opened"] == 2, 1.0)
    stats = gw.stats()
    assert stats["circuit"]["state"] == OPEN and stats["queue_depth"] == 2
    assert final_once(sink)[request(4)["id"]]["reason"] == f"connection refused: 127.0.0.1:{port}"

    # Now something listens there: the next probe closes it and the rest is delivered.
    late = WebhookReceiver(token=TOKEN, port=port)
    await late.start()
    try:
        clock.advance(30)
        gw.submit([request(7)])
        assert await sink.wait_final(8)
        final = final_once(sink)
        assert [final[request(i)["id"]]["outcome"] for i in (5, 6, 7)] == [SENT] * 3
        assert gw.stats()["circuit"]["state"] == CLOSED
    finally:
        await late.stop()
