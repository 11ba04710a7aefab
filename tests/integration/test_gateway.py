"""ChannelGateway end to end against real HTTP and SMTP servers on 127.0.0.1 (no Ray)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from itinerary.channels.email import message_id_for
from itinerary.channels.gateway import ChannelGateway
from itinerary.config.channels import (
    ChannelConfig,
    EmailChannelConfig,
    LimitConfig,
    RetryConfig,
    WebhookChannelConfig,
)
from itinerary.engine.messages import (
    EXPIRED,
    FAILED,
    FINAL_OUTCOMES,
    SENT,
    THROTTLED,
    Outcome,
    SendRequest,
)
from itinerary.receivers import SmtpReceiver, WebhookReceiver, free_port, wait_until

TOKEN = "test-token-1234"
SECOND, MINUTE, HOUR = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1)


def ms(milliseconds: float) -> timedelta:
    return timedelta(milliseconds=milliseconds)


FAST_RETRY = RetryConfig(max_retries=3, backoff=ms(10), max_backoff=ms(50))


class Sink:
    """Collects outcome batches the way a profile shard would receive them."""

    def __init__(self) -> None:
        self.batches: list[list[Outcome]] = []
        self.outcomes: list[Outcome] = []

    async def __call__(self, batch: list[Outcome]) -> None:
        self.batches.append(batch)
        self.outcomes.extend(batch)

    def final(self) -> dict[str, Outcome]:
        return {o["id"]: o for o in self.outcomes if o["outcome"] in FINAL_OUTCOMES}

    def of_kind(self, kind: str) -> list[Outcome]:
        return [o for o in self.outcomes if o["outcome"] == kind]

    async def wait_final(self, count: int, timeout: float = 3.0) -> bool:
        return await wait_until(lambda: len(self.final()) >= count, timeout)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def request(i: int, channel: str = "hook", **extra: Any) -> SendRequest:
    return {
        "id": f"welcome/inst-{i}/send",
        "channel": channel,
        "shard": i % 2,
        "profile": f"Email:user{i}@example.com",
        "journey": "welcome",
        "instance": f"inst-{i}",
        "node": "send",
        "payload": {"n": i, "to": f"user{i}@example.com"},
        "created": 0.0,
        "event_ts": None,
        **extra,
    }


def webhook_config(url: str, token: str | None = TOKEN, **fields: Any) -> WebhookChannelConfig:
    fields.setdefault("retry", FAST_RETRY)
    fields.setdefault("allow_private", True)  # the receivers listen on 127.0.0.1
    return WebhookChannelConfig(
        type="webhook",
        url=url,
        token=SecretStr(token) if token is not None else None,
        **fields,
    )


GatewayFactory = Callable[..., Awaitable[tuple[ChannelGateway, Sink]]]


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = WebhookReceiver(token=TOKEN)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(params=[True, False], ids=["pipelining", "no-pipelining"])
async def smtp(request: pytest.FixtureRequest) -> AsyncIterator[SmtpReceiver]:
    """The relay, with and without PIPELINING: each e-mail test runs both transactions."""
    server = SmtpReceiver(pipelining=request.param)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayFactory]:
    started: list[ChannelGateway] = []

    async def make(config: ChannelConfig, name: str = "hook", **kwargs: Any) -> Any:
        sink = Sink()
        kwargs.setdefault("rng", random.Random(7))
        gw = ChannelGateway(name, config, outcome_sink=sink, **kwargs)
        await gw.start()
        started.append(gw)
        return gw, sink

    yield make
    for gw in started:
        await gw.stop()


async def test_webhook_delivery_with_bearer_token_and_idempotency_key(
    receiver: WebhookReceiver, gateway: GatewayFactory
) -> None:
    gw, sink = await gateway(webhook_config(receiver.url + "/v1/send", headers={"X-Tenant": "a"}))
    assert gw.submit([request(i) for i in range(5)]) == {"queued": 5, "rejected": 0, "backlog_s": 0.0}
    assert await sink.wait_final(5)
    assert await receiver.wait_for(5, timeout=1.0)
    final = sink.final()
    assert {o["outcome"] for o in final.values()} == {SENT}
    assert all(o["status"] == 200 and o["attempts"] == 1 and o["reason"] is None for o in final.values())
    assert receiver.unique_keys == {request(i)["id"] for i in range(5)}
    assert receiver.duplicates == 0
    got = sorted(receiver.received, key=lambda r: r.body["n"])
    assert [r.body for r in got] == [request(i)["payload"] for i in range(5)]
    assert {(r.path, r.method) for r in got} == {("/v1/send", "POST")}


async def test_wrong_token_fails_once_without_retry(receiver: WebhookReceiver, gateway: GatewayFactory) -> None:
    gw, sink = await gateway(webhook_config(receiver.url, token="wrong-token"))
    gw.submit([request(1)])
    assert await sink.wait_final(1)
    outcome = sink.final()[request(1)["id"]]
    assert (outcome["outcome"], outcome["status"], outcome["attempts"]) == (FAILED, 401, 1)
    assert outcome["reason"] == "http 401"
    assert "wrong-token" not in json.dumps(sink.outcomes)
    assert receiver.attempts == 1 and receiver.received == []
    assert gw.stats()["retries"] == 0


async def test_server_error_then_success_is_delivered_once(receiver: WebhookReceiver, gateway: GatewayFactory) -> None:
    receiver.script([500])
    gw, sink = await gateway(webhook_config(receiver.url))
    gw.submit([request(1)])
    assert await sink.wait_final(1)
    outcome = sink.final()[request(1)["id"]]
    assert (outcome["outcome"], outcome["status"], outcome["attempts"]) == (SENT, 200, 2)
    assert [a.status for a in receiver.requests] == [500, 200]
    assert len(receiver.received) == 1 and receiver.duplicates == 0
    assert {a.idempotency_key for a in receiver.requests} == {request(1)["id"]}
    assert gw.stats()["retries"] == 1


async def test_retry_after_is_honoured(receiver: WebhookReceiver, gateway: GatewayFactory) -> None:
    receiver.script([(429, {"Retry-After": "1"})])
    gw, sink = await gateway(webhook_config(receiver.url))
    gw.submit([request(1)])
    assert await sink.wait_final(1)
    assert sink.final()[request(1)["id"]]["attempts"] == 2
    first, second = receiver.requests
    assert first.status == 429 and second.status == 200
    assert second.at - first.at == pytest.approx(1.0, abs=0.15)


async def test_connection_refused_is_retried_then_fails(gateway: GatewayFactory) -> None:
    port = free_port("127.0.0.1")  # nothing listens there
    retry = RetryConfig(max_retries=2, backoff=ms(10), max_backoff=ms(20))
    gw, sink = await gateway(webhook_config(f"http://127.0.0.1:{port}/x", retry=retry))
    gw.submit([request(1)])
    assert await sink.wait_final(1)
    outcome = sink.final()[request(1)["id"]]
    assert outcome["outcome"] == FAILED and outcome["attempts"] == 3
    assert outcome["reason"] == f"connection refused: 127.0.0.1:{port}"
    assert outcome["status"] is None
    assert gw.stats()["retries"] == 2


async def test_slow_endpoint_times_out(receiver: WebhookReceiver, gateway: GatewayFactory) -> None:
    receiver.delay = 1.2
    retry = RetryConfig(max_retries=0)
    gw, sink = await gateway(webhook_config(receiver.url, timeout=SECOND, retry=retry))
    gw.submit([request(1)])
    assert await sink.wait_final(1)
    outcome = sink.final()[request(1)["id"]]
    assert (outcome["outcome"], outcome["reason"]) == (FAILED, "timeout after 1.0s")


async def test_throttle_mode_delivers_at_the_configured_rate(
    receiver: WebhookReceiver, gateway: GatewayFactory
) -> None:
    limit = LimitConfig(calls=20, period=SECOND, burst=1)
    gw, sink = await gateway(webhook_config(receiver.url, limit=limit))
    assert gw.submit([request(i) for i in range(40)])["queued"] == 40
    assert await sink.wait_final(40, timeout=3.5)
    assert {o["outcome"] for o in sink.final().values()} == {SENT}
    assert arrival_rate(receiver) == pytest.approx(20.0, rel=0.15)
    # FIFO: payloads arrive in submission order.
    assert [r.body["n"] for r in receiver.received] == list(range(40))
    throttled = sink.of_kind(THROTTLED)
    assert len(throttled) >= 30 and len({o["id"] for o in throttled}) == len(throttled)
    assert all(o["reason"] == "throttled: over 20/1s burst 1" for o in throttled)
    order = [(o["id"], o["outcome"]) for o in sink.outcomes]
    for o in throttled:  # the non-final outcome always precedes the final one
        assert order.index((o["id"], THROTTLED)) < order.index((o["id"], SENT))


async def test_throttle_rate_does_not_drift_at_millisecond_intervals(
    receiver: WebhookReceiver, gateway: GatewayFactory
) -> None:
    # At 250/s timers fire late by a sizeable part of the 4 ms interval; the gateway
    # must make that lateness up instead of losing it.
    limit = LimitConfig(calls=250, period=SECOND, burst=1)
    gw, sink = await gateway(webhook_config(receiver.url, limit=limit))
    gw.submit([request(i) for i in range(200)])
    assert await sink.wait_final(200, timeout=10.0)
    assert arrival_rate(receiver) == pytest.approx(250.0, rel=0.1)


def arrival_rate(receiver: WebhookReceiver) -> float:
    """Messages per second between the first and the last arrival."""
    arrivals = sorted(r.at for r in receiver.received)
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])


async def test_throttled_messages_expire_after_max_age(receiver: WebhookReceiver, gateway: GatewayFactory) -> None:
    clock = FakeClock()
    limit = LimitConfig(calls=1, period=HOUR, burst=1, max_age=MINUTE)
    gw, sink = await gateway(webhook_config(receiver.url, limit=limit), clock=clock)
    gw.submit([request(i) for i in range(3)])
    assert await sink.wait_final(1)
    # the limiter has one call free: the two behind the first wait for it
    assert await wait_until(lambda: len(sink.of_kind(THROTTLED)) == 2, 1.0)
    clock.advance(61)
    gw.submit([request(3)])  # new work wakes the dispatcher, which looks at the head again
    assert await sink.wait_final(3)
    assert await wait_until(lambda: len(sink.of_kind(THROTTLED)) == 3, 1.0)
    final = sink.final()
    assert final[request(0)["id"]]["outcome"] == SENT
    for i in (1, 2):
        expired = final[request(i)["id"]]
        assert expired["outcome"] == EXPIRED and expired["at"] == clock.now
        assert expired["reason"] == "expired: queued 61.0s, over max_age 60s"
    assert [o["id"] for o in sink.of_kind(THROTTLED)] == [request(i)["id"] for i in (1, 2, 3)]
    stats = gw.stats()
    assert stats["queue_depth"] == 1
    assert stats["outcomes"] == {SENT: 1, FAILED: 0, THROTTLED: 3, EXPIRED: 2}
    assert stats["limiter_next_free_s"] == pytest.approx(3600 - 61)
    assert len(receiver.received) == 1


async def test_cap_mode_fails_the_excess_at_once(receiver: WebhookReceiver, gateway: GatewayFactory) -> None:
    limit = LimitConfig(calls=5, period=SECOND, burst=5, mode="cap")
    gw, sink = await gateway(webhook_config(receiver.url, limit=limit))
    assert gw.submit([request(i) for i in range(8)]) == {"queued": 5, "rejected": 3, "backlog_s": 0.0}
    assert await sink.wait_final(8)
    final = sink.final()
    capped = [final[request(i)["id"]] for i in range(5, 8)]
    assert all(o["outcome"] == FAILED for o in capped)
    assert {o["reason"] for o in capped} == {"capped: over 5/1s burst 5"}
    assert all(final[request(i)["id"]]["outcome"] == SENT for i in range(5))
    assert sink.of_kind(THROTTLED) == []
    assert len(receiver.received) == 5
    assert gw.stats()["rejected"]["capped"] == 3


async def test_queue_full_fails_at_once(receiver: WebhookReceiver, gateway: GatewayFactory) -> None:
    gw, sink = await gateway(webhook_config(receiver.url, queue_size=2))
    # submit() is synchronous, so the dispatcher cannot drain the queue in between.
    assert gw.submit([request(i) for i in range(5)]) == {"queued": 2, "rejected": 3, "backlog_s": 0.0}
    assert await sink.wait_final(5)
    final = sink.final()
    assert [final[request(i)["id"]]["reason"] for i in range(2, 5)] == ["queue full"] * 3
    assert all(final[request(i)["id"]]["outcome"] == SENT for i in range(2))


def email_config(port: int, **fields: Any) -> EmailChannelConfig:
    fields.setdefault("retry", FAST_RETRY)
    return EmailChannelConfig(type="email", port=port, sender="news@itinerary.test", **fields)


def mail_request(i: int, **payload: Any) -> SendRequest:
    body = {"to": f"user{i}@example.com", "subject": f"Welcome {i}", "text": f"Hello {i}"}
    return request(i, channel="email", payload={**body, **payload})


async def test_email_is_delivered_over_smtp_with_the_idempotency_key(
    smtp: SmtpReceiver, gateway: GatewayFactory
) -> None:
    gw, sink = await gateway(email_config(smtp.port), name="email")
    gw.submit([mail_request(i, html=f"<p>Hello {i}</p>") for i in range(3)])
    assert await sink.wait_final(3)
    assert await smtp.wait_for(3, timeout=1.0)
    assert {o["outcome"] for o in sink.final().values()} == {SENT}
    assert {o["status"] for o in sink.final().values()} == {250}
    by_key = {m.idempotency_key: m for m in smtp.messages}
    for i in range(3):
        rid = mail_request(i)["id"]
        mail = by_key[rid]
        assert mail.message_id == message_id_for(rid) == f"<welcome%2Finst-{i}%2Fsend@itinerary>"
        assert mail.mail_from == "news@itinerary.test"
        assert mail.rcpt_tos == (f"user{i}@example.com",)
        assert mail.subject == f"Welcome {i}"
        assert mail.text is not None and mail.text.strip() == f"Hello {i}"
    assert smtp.duplicates == 0


async def test_email_sessions_are_reused(smtp: SmtpReceiver, gateway: GatewayFactory) -> None:
    gw, sink = await gateway(email_config(smtp.port, max_connections=2), name="email")
    gw.submit([mail_request(i) for i in range(10)])
    assert await sink.wait_final(10)
    gw.submit([mail_request(i) for i in range(10, 15)])
    assert await sink.wait_final(15)
    assert len(smtp.messages) == 15
    assert 1 <= smtp.sessions <= 2


async def test_email_soft_bounce_is_retried_and_hard_bounce_is_not(smtp: SmtpReceiver, gateway: GatewayFactory) -> None:
    smtp.script(["451 4.3.0 try again later", "550 5.1.1 mailbox unavailable"])
    gw, sink = await gateway(email_config(smtp.port, max_connections=1), name="email")
    gw.submit([mail_request(1)])
    assert await sink.wait_final(1)
    gw.submit([mail_request(2)])
    assert await sink.wait_final(2)
    final = sink.final()
    first, second = final[mail_request(1)["id"]], final[mail_request(2)["id"]]
    # The 451 goes to request 1, which retries into the 550: a permanent failure.
    assert (first["outcome"], first["status"], first["attempts"]) == (FAILED, 550, 2)
    assert first["reason"] == "smtp 550 5.1.1 mailbox unavailable"
    assert (second["outcome"], second["attempts"]) == (SENT, 1)
    assert [m.idempotency_key for m in smtp.messages] == [mail_request(2)["id"]]
    assert smtp.sessions == 1  # a refused message ends its transaction, not the session


async def test_a_recipient_the_relay_refuses_fails_for_good_and_the_session_goes_on(
    smtp: SmtpReceiver, gateway: GatewayFactory
) -> None:
    gw, sink = await gateway(email_config(smtp.port, max_connections=1), name="email")
    gw.submit([mail_request(1, to="user1@@example.com")])  # aiosmtpd refuses it at RCPT
    assert await sink.wait_final(1)
    refused = sink.final()[mail_request(1)["id"]]
    assert (refused["outcome"], refused["attempts"]) == (FAILED, 1)
    assert refused["status"] == 553 and refused["reason"].startswith("smtp 553")
    gw.submit([mail_request(2)])
    assert await sink.wait_final(2)
    assert sink.final()[mail_request(2)["id"]]["outcome"] == SENT
    assert [m.rcpt_tos for m in smtp.messages] == [("user2@example.com",)]
    assert smtp.sessions == 1  # the refused transaction was reset, not the session dropped


async def test_email_relay_down_is_retried_then_fails(gateway: GatewayFactory) -> None:
    retry = RetryConfig(max_retries=1, backoff=ms(10), max_backoff=ms(20))
    port = free_port("127.0.0.1")
    gw, sink = await gateway(email_config(port, retry=retry), name="email")
    gw.submit([mail_request(1)])
    assert await sink.wait_final(1)
    outcome = sink.final()[mail_request(1)["id"]]
    assert outcome["outcome"] == FAILED and outcome["attempts"] == 2
    assert str(port) in outcome["reason"]


async def test_bad_email_payload_fails_without_retry(smtp: SmtpReceiver, gateway: GatewayFactory) -> None:
    gw, sink = await gateway(email_config(smtp.port), name="email")
    gw.submit([request(1, channel="email", payload={"subject": "no recipient"})])
    assert await sink.wait_final(1)
    outcome = sink.final()[request(1)["id"]]
    assert outcome["outcome"] == FAILED and outcome["attempts"] == 1
    assert outcome["reason"].startswith("bad payload")


class RecordingObserver:
    def __init__(self) -> None:
        self.outcomes: list[tuple[str, str, float, float | None]] = []
        self.depths: list[int] = []

    def on_outcome(self, channel: str, outcome: Outcome, limiter_delay: float, delivery_latency: float | None) -> None:
        self.outcomes.append((channel, outcome["outcome"], limiter_delay, delivery_latency))

    def on_queue_depth(self, channel: str, depth: int) -> None:
        self.depths.append(depth)


async def test_observer_sees_outcomes_latency_and_depth(receiver: WebhookReceiver, gateway: GatewayFactory) -> None:
    observer = RecordingObserver()
    gw, sink = await gateway(webhook_config(receiver.url), observer=observer)
    event_ts = time.time() - 2.0
    gw.submit([request(1, event_ts=event_ts), request(2)])
    assert await sink.wait_final(2)
    assert await wait_until(lambda: observer.depths[-1:] == [0], 1.0)
    assert sorted(o[1] for o in observer.outcomes) == [SENT, SENT]
    latencies = [o[3] for o in observer.outcomes]
    assert None in latencies
    latency = next(x for x in latencies if x is not None)
    assert 2.0 <= latency < 3.0
    assert all(o[0] == "hook" and o[2] == 0.0 for o in observer.outcomes)
    assert observer.depths[0] == 2


async def test_a_failing_sink_does_not_stop_the_gateway(receiver: WebhookReceiver, gateway: GatewayFactory) -> None:
    delivered: list[Outcome] = []
    calls = 0

    async def flaky(batch: list[Outcome]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("shard unreachable")
        delivered.extend(batch)

    gw = ChannelGateway("hook", webhook_config(receiver.url), outcome_sink=flaky)
    await gw.start()
    try:
        gw.submit([request(1)])
        assert await wait_until(lambda: gw.stats()["sink_errors"] == 1, 2.0)
        gw.submit([request(2)])
        assert await wait_until(lambda: len(delivered) == 1, 2.0)
        assert delivered[0]["id"] == request(2)["id"]
        assert gw.stats()["outcomes_dropped"] == 1
    finally:
        await gw.stop()


async def test_stats_and_repr(receiver: WebhookReceiver, gateway: GatewayFactory) -> None:
    limit = LimitConfig(calls=100, period=SECOND, burst=10)
    gw, sink = await gateway(webhook_config(receiver.url, limit=limit, queue_size=50))
    assert repr(gw) == "ChannelGateway('hook', throttle 100/1s burst 10)"
    gw.submit([request(i) for i in range(12)])
    assert await sink.wait_final(12)
    stats = gw.stats()
    json.dumps(stats)  # JSON-able as promised
    assert stats["name"] == "hook" and stats["type"] == "webhook"
    assert (stats["mode"], stats["limit"], stats["rate_per_s"], stats["burst"]) == (
        "throttle",
        "100/1s burst 10",
        100.0,
        10,
    )
    assert stats["queue_depth"] == 0 and stats["queue_capacity"] == 50
    assert stats["in_flight"] == 0 and stats["max_connections"] == 50
    assert stats["outcomes"][SENT] == 12 and stats["outcomes"][FAILED] == 0
    assert stats["outcomes"][THROTTLED] >= 1  # 10 at once, then the 11th waits
    assert stats["retries"] == 0
    assert 0.0 <= stats["limiter_next_free_s"] <= 0.1
    assert stats["delivery_rate_per_s"] > 0
    assert stats["running"] is True
    assert TOKEN not in json.dumps(stats) and TOKEN not in repr(gw)


async def test_stop_refuses_new_work(receiver: WebhookReceiver) -> None:
    sink = Sink()
    gw = ChannelGateway("hook", webhook_config(receiver.url), outcome_sink=sink)
    await gw.start()
    gw.submit([request(1)])
    assert await sink.wait_final(1)
    await gw.stop()
    assert gw.submit([request(2)]) == {"queued": 0, "rejected": 1, "backlog_s": 0.0}
    assert gw.stats()["running"] is False
    assert repr(gw) == "ChannelGateway('hook', unlimited)"


async def test_stop_abandons_queued_and_in_flight_work_quickly(
    receiver: WebhookReceiver,
) -> None:
    receiver.delay = 2.0  # the first call hangs; the rest wait for its connection
    sink = Sink()
    config = webhook_config(receiver.url, max_connections=1, timeout=timedelta(seconds=5))
    gw = ChannelGateway("hook", config, outcome_sink=sink)
    await gw.start()
    gw.submit([request(i) for i in range(3)])
    assert await wait_until(lambda: receiver.attempts == 1, 1.0)
    started = time.monotonic()
    await gw.stop()
    assert time.monotonic() - started < 0.5
    stats = gw.stats()
    assert (stats["queue_depth"], stats["in_flight"], stats["attempting"]) == (2, 0, 0)
    assert sink.final() == {}  # left to the outbox that handed them over


async def test_a_throttled_retry_spends_a_rate_slot(receiver: WebhookReceiver, gateway: GatewayFactory) -> None:
    receiver.script([503])
    limit = LimitConfig(calls=5, period=SECOND, burst=1)  # one call per 200 ms
    retry = RetryConfig(max_retries=1, backoff=ms(1), max_backoff=ms(1))
    gw, sink = await gateway(webhook_config(receiver.url, limit=limit, retry=retry))
    gw.submit([request(1)])
    assert await sink.wait_final(1)
    assert sink.final()[request(1)["id"]]["attempts"] == 2
    first, second = receiver.requests
    assert second.at - first.at >= 0.19  # the backoff was 1 ms; the limiter held it back


async def test_submit_reports_how_long_the_backlog_waits_for_the_limiter(
    receiver: WebhookReceiver, gateway: GatewayFactory
) -> None:
    clock = FakeClock()
    limit = LimitConfig(calls=10, period=SECOND, burst=2)
    gw, _ = await gateway(webhook_config(receiver.url, limit=limit), clock=clock)
    assert gw.submit([request(0)])["backlog_s"] == 0.0  # the limiter has room for it
    answer = gw.submit([request(i) for i in range(1, 12)])
    # 12 queued at once (or 11, if the first already left), 2 free calls: ~10 wait 0.1 s each
    assert answer["backlog_s"] == pytest.approx(1.0, abs=0.11)
    unlimited, _ = await gateway(webhook_config(receiver.url), clock=clock)
    assert unlimited.submit([request(i) for i in range(20, 40)])["backlog_s"] == 0.0
