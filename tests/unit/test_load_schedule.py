"""Rate schedules: the exact time each batch is due, and the split across sender processes."""

from __future__ import annotations

import pytest

from itinerary.load.schedule import Schedule, Segment, parse_duration, parse_rate, parse_schedule


def times(schedule: Schedule, batch: int) -> list[float]:
    return [t for _, t, _ in schedule.plan(batch)]


def test_constant_rate_sends_batch_k_at_k_batches_over_rate() -> None:
    schedule = parse_schedule("constant", rate=1000, duration=2)
    assert schedule.total_events == 2000
    assert schedule.batch_count(100) == 20
    assert times(schedule, 100) == pytest.approx([k * 0.1 for k in range(20)])
    assert schedule.batch_time(20, 100) is None  # past the end


def test_constant_with_its_own_rate_and_a_short_last_batch() -> None:
    schedule = parse_schedule("constant:250", rate=1, duration=1)
    plan = list(schedule.plan(100))
    assert [(k, events) for k, _, events in plan] == [(0, 100), (1, 100), (2, 50)]
    assert [t for _, t, _ in plan] == pytest.approx([0.0, 0.4, 0.8])


def test_step_levels_each_last_their_period() -> None:
    schedule = parse_schedule("step:100,200@1s", rate=0, duration=2)
    # 10-event batches: every 0.1 s in the first second, every 0.05 s in the second.
    expected = [k * 0.1 for k in range(10)] + [1.0 + k * 0.05 for k in range(20)]
    assert times(schedule, 10) == pytest.approx(expected)
    assert schedule.rate_at(0.5) == 100 and schedule.rate_at(1.5) == 200 and schedule.rate_at(2.0) == 0


def test_step_without_period_shares_the_duration_and_the_last_level_holds() -> None:
    assert parse_schedule("step:5000,10000,20000", rate=0, duration=30).segments == (
        Segment(0, 10, 5000, 5000),
        Segment(10, 20, 10000, 10000),
        Segment(20, 30, 20000, 20000),
    )
    held = parse_schedule("step:10,20@1s", rate=0, duration=5)
    assert held.segments[-1] == Segment(1, 5, 20, 20) and held.total_events == 90


def test_a_zero_step_is_a_pause_with_nothing_due_inside_it() -> None:
    schedule = parse_schedule("step:100,0,200@1s", rate=0, duration=3)
    sent = times(schedule, 10)
    assert not [t for t in sent if 1.0 <= t < 2.0]
    assert sent[10] == pytest.approx(2.0)  # the first batch after the pause, at its end
    assert schedule.batches_due(1.5, 10) == 10
    assert schedule.batches_due(2.0, 10) == 11


def test_ramp_follows_the_integral_of_a_linear_rate() -> None:
    # r(t) = 200 t over 1 s: E(t) = 100 t^2, so event n is due at sqrt(n / 100).
    schedule = parse_schedule("ramp:0..200", rate=0, duration=1)
    assert schedule.total_events == 100
    assert times(schedule, 10) == pytest.approx([(k * 10 / 100) ** 0.5 for k in range(10)])
    assert schedule.rate_at(0.25) == pytest.approx(50)


def test_ramp_with_a_period_then_holds_the_top_rate() -> None:
    schedule = parse_schedule("ramp:1000..2000@1s", rate=0, duration=3)
    assert schedule.events_by(1.0) == pytest.approx(1500)
    assert schedule.events_by(3.0) == pytest.approx(5500)
    assert schedule.time_of_event(1500 + 1000) == pytest.approx(1.5)


def test_batches_due_counts_batches_whose_time_has_come() -> None:
    schedule = parse_schedule("constant", rate=100, duration=1)
    assert [schedule.batches_due(t, 10) for t in (-0.1, 0.0, 0.05, 0.1, 0.95, 5.0)] == [0, 1, 1, 2, 10, 10]


def test_processes_share_the_batches_in_turn_and_together_follow_the_schedule() -> None:
    schedule = parse_schedule("ramp:100..1000", rate=0, duration=2)
    whole = list(schedule.plan(7))
    shares = [list(schedule.plan(7, process=i, processes=3)) for i in range(3)]
    assert sorted(b for share in shares for b in share) == whole
    assert [k for k, _, _ in shares[1]] == list(range(1, len(whole), 3))
    for share in shares:
        due = [t for _, t, _ in share]
        assert due == sorted(due)


def test_parsing_rates_durations_and_bad_specs() -> None:
    assert parse_rate("20k") == 20000 and parse_rate("2.5K") == 2500 and parse_rate("300") == 300
    assert parse_duration("500ms") == 0.5 and parse_duration("2m") == 120 and parse_duration("10") == 10
    for bad in ("fast", "-1"):
        with pytest.raises(ValueError):
            parse_rate(bad)
    for spec in ("wave:1..2", "ramp:1000", "step:", "constant:x"):
        with pytest.raises(ValueError):
            parse_schedule(spec, rate=100, duration=10)
    with pytest.raises(ValueError, match="no events"):
        parse_schedule("constant", rate=0, duration=10)
