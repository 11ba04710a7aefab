"""GCRA decisions at exact instants: burst, refusal with the exact wait, boundary, cost, idle."""

from __future__ import annotations

import pytest

from itinerary.engine.ratelimit import Decision, Rate, admit, available, describe, next_free

# Powers of two keep the instants exact in binary floating point.
RATE = Rate(calls=4, period=1.0, burst=4)  # interval 0.25 s, tolerance 0.75 s


def spend(tat: float, now: float, rate: Rate, times: int) -> float:
    for _ in range(times):
        decision, tat = admit(tat, now, rate)
        assert decision.admitted
    return tat


def test_rate_interval_and_tolerance() -> None:
    rate = Rate(calls=100, period=1.0, burst=10)
    assert rate.interval == pytest.approx(0.01)
    assert rate.tolerance == pytest.approx(0.09)
    assert rate.per_second == 100


@pytest.mark.parametrize(("calls", "period", "burst"), [(0, 1.0, 1), (1, 0.0, 1), (1, -1.0, 1), (1, 1.0, 0)])
def test_rate_rejects_nonsense(calls: int, period: float, burst: int) -> None:
    with pytest.raises(ValueError):
        Rate(calls=calls, period=period, burst=burst)


def test_burst_is_admitted_at_once_then_refused_with_exact_wait() -> None:
    tat = spend(0.0, 0.0, RATE, 4)
    assert tat == 1.0
    decision, after = admit(tat, 0.0, RATE)
    assert decision == Decision(admitted=False, wait=0.25)
    assert after == tat  # a refusal leaves the state alone


def test_admitted_exactly_at_the_boundary_not_before() -> None:
    tat = spend(0.0, 0.0, RATE, 4)
    decision, _ = admit(tat, 0.2499, RATE)
    assert not decision.admitted
    assert decision.wait == pytest.approx(0.0001)
    decision, tat = admit(tat, 0.25, RATE)
    assert decision.admitted and decision.wait == 0.0
    assert tat == 1.25


def test_decimal_rates_admit_at_the_returned_wait() -> None:
    rate = Rate(calls=10, period=1.0, burst=1)  # 0.1 is not exact in binary
    tat, now = 0.0, 0.0
    for _ in range(50):
        decision, new_tat = admit(tat, now, rate)
        if not decision.admitted:
            now += decision.wait
            decision, new_tat = admit(tat, now, rate)
            assert decision.admitted, "sleeping the returned wait must be enough"
        tat = new_tat
    assert now == pytest.approx(4.9)


def test_burst_is_exact_at_epoch_scale_instants() -> None:
    # Around 1.7e9 s floats are 2.4e-7 s apart; the last slot of a burst must still fit.
    rate = Rate(calls=5, period=1.0, burst=5)
    now = 1_764_400_000.123456
    tat = spend(0.0, now, rate, 5)
    decision, _ = admit(tat, now, rate)
    assert not decision.admitted
    assert decision.wait == pytest.approx(0.2, abs=1e-6)
    decision, _ = admit(tat, now + decision.wait, rate)
    assert decision.admitted


def test_burst_of_one_spaces_calls_by_the_interval() -> None:
    rate = Rate(calls=20, period=1.0, burst=1)
    decision, tat = admit(0.0, 10.0, rate)
    assert decision.admitted
    decision, _ = admit(tat, 10.0, rate)
    assert not decision.admitted
    assert decision.wait == pytest.approx(0.05)


def test_cost_above_one() -> None:
    decision, tat = admit(0.0, 0.0, RATE, cost=3)
    assert decision.admitted and tat == 0.75
    decision, same = admit(tat, 0.0, RATE, cost=2)
    assert decision == Decision(admitted=False, wait=0.25) and same == tat
    decision, tat = admit(tat, 0.0, RATE, cost=1)
    assert decision.admitted and tat == 1.0


def test_cost_beyond_burst_or_below_one_is_an_error() -> None:
    with pytest.raises(ValueError, match="exceeds the burst"):
        admit(0.0, 0.0, RATE, cost=5)
    with pytest.raises(ValueError):
        admit(0.0, 0.0, RATE, cost=0)


def test_long_idle_does_not_bank_more_than_the_burst() -> None:
    tat = spend(0.0, 0.0, RATE, 4)
    now = 1000.0
    tat = spend(tat, now, RATE, 4)
    decision, _ = admit(tat, now, RATE)
    assert not decision.admitted
    assert decision.wait == 0.25


def test_next_free() -> None:
    assert next_free(0.0, 5.0, RATE) == 0.0
    tat = spend(0.0, 0.0, RATE, 4)
    assert next_free(tat, 0.0, RATE) == 0.25
    assert next_free(tat, 0.1, RATE) == pytest.approx(0.15)
    assert next_free(tat, 0.25, RATE) == 0.0


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (Rate(100, 1.0, 10), "100/1s burst 10"),
        (Rate(5, 0.5, 1), "5/0.5s burst 1"),
        (Rate(1000, 60.0, 1), "1000/1m burst 1"),
        (Rate(50_000, 3600.0, 100), "50000/1h burst 100"),
        (Rate(3, 90.0, 1), "3/90s burst 1"),
    ],
)
def test_describe(rate: Rate, text: str) -> None:
    assert describe(rate) == text


def count_admitted(tat: float, now: float, rate: Rate) -> int:
    admitted = 0
    while True:
        decision, tat = admit(tat, now, rate)
        if not decision.admitted:
            return admitted
        admitted += 1


@pytest.mark.parametrize(
    ("spent", "now", "expected"),
    [(0, 0.0, 4), (1, 0.0, 3), (4, 0.0, 0), (4, 0.2499, 0), (4, 0.25, 1), (4, 0.6, 2), (4, 5.0, 4)],
)
def test_available_counts_what_admit_would_let_through_now(spent: int, now: float, expected: int) -> None:
    tat = spend(0.0, 0.0, RATE, spent)
    assert available(tat, now, RATE) == expected == count_admitted(tat, now, RATE)


def test_available_with_burst_one_is_zero_or_one() -> None:
    rate = Rate(calls=10, period=1.0, burst=1)
    tat = spend(0.0, 0.0, rate, 1)
    assert available(tat, 0.05, rate) == 0
    assert available(tat, 0.1, rate) == 1
