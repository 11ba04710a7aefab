"""RecentKeys: duplicates among recent idempotency keys, in bounded memory."""

from __future__ import annotations

import pytest

from itinerary.load.recent import RecentKeys


def test_a_key_seen_again_is_a_duplicate_each_time() -> None:
    recent = RecentKeys(horizon=10)
    assert [recent.add(k) for k in ("a", "b", "a", "a", "c")] == [False, False, True, True, False]
    assert recent.duplicates == 2


def test_messages_without_a_key_are_not_counted() -> None:
    recent = RecentKeys(horizon=10)
    assert not recent.add(None) and not recent.add(None)
    assert recent.duplicates == 0 and len(recent) == 0


def test_memory_stays_within_the_horizon_and_recent_keys_are_still_known() -> None:
    recent = RecentKeys(horizon=1000)
    for n in range(100_000):
        recent.add(f"m{n}")
        assert len(recent) <= 1000
    # the last horizon / 2 keys are always recognised
    assert all(recent.add(f"m{n}") for n in range(100_000 - 500, 100_000))
    assert recent.duplicates == 500
    # a key from far back has been forgotten: not counted, and memory did not grow for it
    assert not recent.add("m0")


def test_the_horizon_must_hold_two_keys() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        RecentKeys(horizon=1)
