"""The circuit breaker's state machine at exact instants, its config, and how a gateway
uses it (with a scripted in-process provider: no sockets, no Ray)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from itinerary.channels.gateway import ChannelGateway
from itinerary.channels.retry import DeliveryResult, classify_http
from itinerary.config.channels import ChannelConfig, CircuitConfig, LimitConfig, RetryConfig
from itinerary.engine.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitSettings, Permit
from itinerary.engine.messages import EXPIRED, FAILED, FINAL_OUTCOMES, SENT, Outcome, SendRequest
from itinerary.receivers import wait_until

T0 = 1_000.0


def breaker(**settings: Any) -> CircuitBreaker:
    return CircuitBreaker(CircuitSettings(**settings))


def calls(cb: CircuitBreaker, now: float, *, answered: list[bool]) -> None:
    """Make one call per entry, each judged at `now`."""
    for ok in answered:
        permit = cb.acquire(now)
        assert permit is not None, f"refused at {now} in {cb!r}"
        cb.record(permit, now, answered=ok)


def tripped(now: float = T0, **settings: Any) -> CircuitBreaker:
    """A breaker that opened at `now` after min_calls unanswered calls."""
    cb = breaker(**settings)
    calls(cb, now, answered=[False] * cb.settings.min_calls)
    assert cb.state(now) == OPEN
    return cb


# -- settings ---------------------------------------------------------------------------


def test_defaults() -> None:
    s = CircuitSettings()
    assert (s.window, s.min_calls, s.failure_ratio, s.open_for, s.probes) == (20, 10, 0.5, 30.0, 1)


@pytest.mark.parametrize(
    "bad",
    [
        {"window": 0},
        {"min_calls": 0},
        {"min_calls": 21},
        {"failure_ratio": 0.0},
        {"failure_ratio": 1.5},
        {"open_for": 0.0},
        {"open_for": float("inf")},
        {"probes": 0},
    ],
)
def test_settings_refuse_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CircuitSettings(**bad)


# -- closed -----------------------------------------------------------------------------


def test_stays_closed_below_min_calls_even_if_every_call_fails() -> None:
    cb = breaker()
    calls(cb, T0, answered=[False] * 9)
    assert cb.state(T0) == CLOSED and cb.recent == (9, 9) and cb.opened == 0


def test_opens_at_min_calls_when_half_got_no_answer() -> None:
    cb = breaker()
    calls(cb, T0, answered=[True, False] * 4 + [True])  # 9 calls, 4 unanswered
    assert cb.state(T0) == CLOSED
    calls(cb, T0 + 1, answered=[False])  # 10 calls, 5 unanswered: exactly 0.5
    assert cb.state(T0 + 1) == OPEN
    assert cb.opened == 1 and cb.open_until == T0 + 31
    assert cb.recent == (0, 0)


def test_just_under_the_ratio_stays_closed() -> None:
    cb = breaker(failure_ratio=0.6)
    calls(cb, T0, answered=[False] * 5 + [True] * 5)  # 0.5 < 0.6
    assert cb.state(T0) == CLOSED
    calls(cb, T0, answered=[False])  # 6 of 11 = 0.545...
    assert cb.state(T0) == CLOSED
    calls(cb, T0, answered=[False])  # 7 of 12 = 0.583...
    assert cb.state(T0) == CLOSED
    calls(cb, T0, answered=[False])  # 8 of 13 = 0.615...
    assert cb.state(T0) == OPEN


def test_answers_of_any_kind_never_open_it() -> None:
    cb = breaker()
    calls(cb, T0, answered=[True] * 100)  # e.g. 500s: the endpoint is there
    assert cb.state(T0) == CLOSED and cb.recent == (20, 0)


def test_the_window_slides_old_failures_out() -> None:
    cb = breaker(window=10, min_calls=10)
    calls(cb, T0, answered=[False] * 4 + [True] * 6)  # 4 of 10
    assert cb.recent == (10, 4)
    calls(cb, T0, answered=[True] * 4)  # the 4 failures fall out
    assert cb.recent == (10, 0)
    calls(cb, T0, answered=[False] * 4)
    assert cb.state(T0) == CLOSED and cb.recent == (10, 4)
    calls(cb, T0, answered=[False])  # 5 of the last 10
    assert cb.state(T0) == OPEN


# -- open and half-open -----------------------------------------------------------------


def test_open_refuses_until_open_for_has_passed_to_the_instant() -> None:
    cb = tripped()
    for now in (T0, T0 + 10, T0 + 29.999):
        assert cb.state(now) == OPEN
        assert cb.acquire(now) is None
        assert cb.wait(now) == pytest.approx(T0 + 30 - now)
    assert cb.state(T0 + 30) == HALF_OPEN
    assert cb.wait(T0 + 30) == 0.0
    probe = cb.acquire(T0 + 30)
    assert probe is not None and probe.probe


def test_state_is_a_pure_query() -> None:
    cb = tripped()
    assert cb.state(T0 + 100) == HALF_OPEN
    # Asking did not move it: the breaker still counts itself open until someone calls.
    assert cb._state == OPEN


def test_half_open_lets_one_probe_through_and_its_answer_closes_it() -> None:
    cb = tripped()
    now = T0 + 30
    probe = cb.acquire(now)
    assert probe is not None
    assert cb.acquire(now) is None  # one probe at a time
    assert cb.wait(now) is None  # nothing to do but wait for the probe
    cb.record(probe, now + 0.5, answered=True)
    assert cb.state(now + 0.5) == CLOSED
    assert cb.recent == (0, 0)  # a fresh start
    assert cb.wait(now + 0.5) == 0.0
    permit = cb.acquire(now + 0.5)
    assert permit is not None and not permit.probe


def test_a_failed_probe_reopens_it_for_another_open_for() -> None:
    cb = tripped()
    probe = cb.acquire(T0 + 30)
    assert probe is not None
    cb.record(probe, T0 + 31, answered=False)  # e.g. timed out after 1 s
    assert cb.state(T0 + 31) == OPEN and cb.opened == 2
    assert cb.open_until == T0 + 61
    assert cb.acquire(T0 + 60.999) is None
    assert cb.acquire(T0 + 61) is not None


def test_a_released_probe_frees_its_place() -> None:
    cb = tripped()
    probe = cb.acquire(T0 + 30)
    assert probe is not None and cb.acquire(T0 + 30) is None
    cb.release(probe)  # e.g. the rate limiter held the message back
    assert cb.state(T0 + 30) == HALF_OPEN
    again = cb.acquire(T0 + 30)
    assert again is not None and again.probe


def test_several_probes_must_all_be_answered_to_close() -> None:
    cb = tripped(probes=2)
    first, second = cb.acquire(T0 + 30), cb.acquire(T0 + 30)
    assert first is not None and second is not None and cb.acquire(T0 + 30) is None
    cb.record(first, T0 + 30.1, answered=True)
    assert cb.state(T0 + 30.1) == HALF_OPEN and cb.acquire(T0 + 30.1) is None
    cb.record(second, T0 + 30.2, answered=True)
    assert cb.state(T0 + 30.2) == CLOSED


def test_one_unanswered_probe_of_several_reopens() -> None:
    cb = tripped(probes=2)
    first, second = cb.acquire(T0 + 30), cb.acquire(T0 + 30)
    assert first is not None and second is not None
    cb.record(first, T0 + 30.1, answered=True)
    cb.record(second, T0 + 30.2, answered=False)
    assert cb.state(T0 + 30.2) == OPEN and cb.open_until == T0 + 60.2


def test_calls_from_before_a_change_are_ignored() -> None:
    cb = breaker()
    slow = [cb.acquire(T0) for _ in range(3)]  # still running when the breaker opens
    calls(cb, T0, answered=[False] * 10)
    assert cb.state(T0) == OPEN
    late = slow.pop()
    assert late is not None
    cb.record(late, T0 + 1, answered=True)  # cannot close what it did not probe
    assert cb.state(T0 + 1) == OPEN
    probe = cb.acquire(T0 + 30)
    assert probe is not None
    other = slow.pop()
    assert other is not None
    cb.record(other, T0 + 30, answered=True)  # nor stand in for the probe
    assert cb.state(T0 + 30) == HALF_OPEN
    cb.record(probe, T0 + 30.5, answered=True)
    assert cb.state(T0 + 30.5) == CLOSED
    last = slow.pop()
    assert last is not None
    cb.record(last, T0 + 31, answered=False)  # nor count in the new window
    assert cb.recent == (0, 0)
    cb.release(Permit(epoch=0, probe=True))  # a stale release changes nothing either
    assert cb.state(T0 + 31) == CLOSED


# -- config and classification ----------------------------------------------------------

ADAPTER: TypeAdapter[ChannelConfig] = TypeAdapter(ChannelConfig)


def test_channels_have_a_breaker_by_default() -> None:
    config = ADAPTER.validate_python({"type": "webhook", "url": "https://api.example.com/x"})
    assert config.circuit == CircuitConfig()
    assert config.circuit.enabled
    assert config.circuit.settings() == CircuitSettings()


def test_circuit_config_reads_iso_durations() -> None:
    config = ADAPTER.validate_python(
        {
            "type": "email",
            "sender": "news@example.com",
            "circuit": {"window": 40, "min_calls": 20, "failure_ratio": 0.8, "open_for": "PT1M30S", "probes": 3},
        }
    )
    assert config.circuit.settings() == CircuitSettings(
        window=40, min_calls=20, failure_ratio=0.8, open_for=90.0, probes=3
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"min_calls": 30},  # over the default window of 20
        {"failure_ratio": 0},
        {"open_for": "PT0S"},
        {"probes": 0},
        {"unknown": 1},
    ],
)
def test_circuit_config_refuses_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CircuitConfig.model_validate(bad)


def test_what_counts_against_the_endpoint() -> None:
    assert DeliveryResult.transient("timeout after 1.0s").unanswered
    assert DeliveryResult.transient("connection refused: 127.0.0.1:1").unanswered
    for answered in (classify_http(500, None, 0), classify_http(429, "1", 0), classify_http(408, None, 0)):
        assert not answered.unanswered and not answered.unjudged
    assert not DeliveryResult.delivered(200).unanswered
    ours = DeliveryResult.permanent("bad payload: not JSON")
    assert ours.unjudged and not ours.unanswered
    assert not classify_http(404, None, 0).unjudged


# -- the gateway with a scripted provider -------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class ScriptedProvider:
    """Answers each call with the next result of `script` (then with `default`)."""

    def __init__(self, default: DeliveryResult) -> None:
        self.default = default
        self.script: list[DeliveryResult] = []
        self.calls: list[str] = []

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def deliver(self, request: SendRequest) -> DeliveryResult:
        self.calls.append(str(request["id"]))
        await asyncio.sleep(0)
        return self.script.pop(0) if self.script else self.default


TIMEOUT = DeliveryResult.transient("timeout after 1.0s")
CIRCUIT = {"window": 4, "min_calls": 4, "failure_ratio": 0.5, "open_for": "PT30S"}


def config(**fields: Any) -> ChannelConfig:
    fields.setdefault("retry", RetryConfig(max_retries=0))
    fields.setdefault("circuit", CIRCUIT)
    return ADAPTER.validate_python(
        {"type": "webhook", "url": "https://api.example.com/send", "max_connections": 1, **fields}
    )


def send(i: int) -> SendRequest:
    return {
        "id": f"j/i{i}/send",
        "channel": "hook",
        "shard": 0,
        "profile": f"Email:u{i}@example.com",
        "journey": "j",
        "instance": f"i{i}",
        "node": "send",
        "payload": {"n": i},
        "created": 0.0,
        "event_ts": None,
    }


Started = Callable[..., Any]


@pytest.fixture
async def started() -> AsyncIterator[Started]:
    gateways: list[ChannelGateway] = []

    async def make(
        cfg: ChannelConfig, provider: ScriptedProvider, clock: Clock
    ) -> tuple[ChannelGateway, list[Outcome]]:
        outcomes: list[Outcome] = []

        async def sink(batch: list[Outcome]) -> None:
            outcomes.extend(batch)

        gw = ChannelGateway(
            "hook", cfg, outcome_sink=sink, clock=clock, provider=provider, rng=random.Random(1), flush_interval=0.001
        )
        await gw.start()
        gateways.append(gw)
        return gw, outcomes

    yield make
    for gw in gateways:
        await gw.stop()


def final(outcomes: list[Outcome]) -> dict[str, Outcome]:
    return {o["id"]: o for o in outcomes if o["outcome"] in FINAL_OUTCOMES}


async def test_open_breaker_holds_the_queue_until_a_probe_is_answered(started: Started) -> None:
    clock, provider = Clock(), ScriptedProvider(TIMEOUT)
    gw, outcomes = await started(config(), provider, clock)
    gw.submit([send(i) for i in range(6)])
    assert await wait_until(lambda: gw.stats()["circuit"]["state"] == OPEN, 1.0)
    assert await wait_until(lambda: len(final(outcomes)) == 4, 1.0)
    assert provider.calls == [send(i)["id"] for i in range(4)]
    stats = gw.stats()
    assert stats["queue_depth"] == 2 and stats["circuit"]["short_circuited"] == 1  # the head, once
    assert stats["circuit"]["half_open_in_s"] == pytest.approx(30.0)
    provider.default = DeliveryResult.delivered(200)  # the endpoint recovers
    clock.now += 30
    gw.submit([send(6)])  # wakes the dispatcher, which finds the breaker half-open
    assert await wait_until(lambda: len(final(outcomes)) == 7, 1.0)
    assert provider.calls[4:] == [send(i)["id"] for i in (4, 5, 6)]
    assert all(final(outcomes)[send(i)["id"]]["outcome"] == SENT for i in (4, 5, 6))
    circuit = gw.stats()["circuit"]
    assert (circuit["state"], circuit["opened"], circuit["short_circuited"]) == (CLOSED, 1, 1)


async def test_cap_mode_fails_what_the_breaker_holds_back(started: Started) -> None:
    clock, provider = Clock(), ScriptedProvider(TIMEOUT)
    limit = LimitConfig(calls=100, period=timedelta(seconds=1), burst=100, mode="cap")
    gw, outcomes = await started(config(limit=limit), provider, clock)
    gw.submit([send(i) for i in range(6)])
    assert await wait_until(lambda: len(final(outcomes)) == 6, 1.0)
    assert len(provider.calls) == 4
    for i in (4, 5):
        outcome = final(outcomes)[send(i)["id"]]
        assert outcome["outcome"] == FAILED and outcome["attempts"] == 0
        assert outcome["reason"].startswith("circuit open: ")
    assert gw.stats()["circuit"]["short_circuited"] == 2


async def test_a_retry_held_back_in_throttle_mode_expires_after_max_age(started: Started) -> None:
    clock, provider = Clock(), ScriptedProvider(TIMEOUT)
    limit = LimitConfig(calls=100, period=timedelta(seconds=1), burst=100, max_age=timedelta(seconds=60))
    retry = RetryConfig(max_retries=3, backoff=timedelta(milliseconds=1), max_backoff=timedelta(milliseconds=2))
    circuit = {"window": 2, "min_calls": 2, "open_for": "PT30S"}
    gw, outcomes = await started(config(limit=limit, retry=retry, circuit=circuit), provider, clock)
    gw.submit([send(0)])
    # Two unanswered attempts open the breaker; the second retry waits for it.
    assert await wait_until(lambda: gw.stats()["circuit"]["held_retries"] == 1, 1.0)
    assert len(provider.calls) == 2 and gw.stats()["circuit"]["state"] == OPEN
    clock.now += 61  # past open_for and past the message's max_age
    # New work wakes the dispatcher: its head takes the probe, and the change of state wakes
    # the held retry, which finds itself too old. (In real time its own timer would.)
    gw.submit([send(1)])
    assert await wait_until(lambda: send(0)["id"] in final(outcomes), 1.0)
    expired = final(outcomes)[send(0)["id"]]
    assert (expired["outcome"], expired["attempts"]) == (EXPIRED, 2)
    assert expired["reason"] == "expired: queued 61.0s, over max_age 60s (circuit open)"
    assert provider.calls[2:] == [send(1)["id"]]  # the probe; it timed out and re-opened it
    assert await wait_until(lambda: gw.stats()["circuit"]["opened"] == 2, 1.0)


async def test_a_disabled_breaker_never_holds_anything_back(started: Started) -> None:
    clock, provider = Clock(), ScriptedProvider(TIMEOUT)
    gw, outcomes = await started(config(circuit={"enabled": False}), provider, clock)
    gw.submit([send(i) for i in range(8)])
    assert await wait_until(lambda: len(final(outcomes)) == 8, 1.0)
    assert len(provider.calls) == 8
    assert {o["reason"] for o in final(outcomes).values()} == {"timeout after 1.0s"}
    assert gw.stats()["circuit"] == {"enabled": False, "state": "disabled", "opened": 0, "short_circuited": 0}


async def test_a_message_past_its_journeys_deadline_expires_instead_of_being_sent(started: Started) -> None:
    clock, provider = Clock(), ScriptedProvider(TIMEOUT)
    gw, outcomes = await started(config(), provider, clock)
    gw.submit([send(i) for i in range(4)])  # four unanswered calls open the breaker
    assert await wait_until(lambda: gw.stats()["circuit"]["state"] == OPEN, 1.0)
    late = {**send(9), "deadline": T0 + 10.0}  # the journey waits 10 s for this one
    gw.submit([late])
    provider.default = DeliveryResult.delivered(200)
    clock.now += 30  # the breaker half-opens only after the journey stopped waiting
    gw.submit([send(10)])
    assert await wait_until(lambda: send(10)["id"] in final(outcomes), 1.0)
    expired = final(outcomes)[late["id"]]
    assert expired["outcome"] == EXPIRED and "the journey stopped waiting" in str(expired["reason"])
    assert late["id"] not in provider.calls
