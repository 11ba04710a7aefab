"""Counting resent messages in bounded memory: idempotency keys seen recently.

The load tool reports how many messages arrived twice (a gateway that restarted resends
what it had not recorded as delivered). Keeping every key of a run grows without bound:
an hour at 3,000 messages/s is ten million keys. A resend comes within seconds or
minutes of the first delivery, so keys are kept in two generations of `horizon / 2`
each: a key is recognised if it arrived within the last `horizon / 2` to `horizon`
messages, and memory holds at most `horizon` keys.
"""

from __future__ import annotations

DEFAULT_HORIZON = 1_000_000  # keys; ~150 MiB of message ids at most


class RecentKeys:
    """Tells whether a key was seen among the last `horizon / 2` (at least) keys, and
    counts those it was: the duplicates."""

    def __init__(self, horizon: int = DEFAULT_HORIZON) -> None:
        if horizon < 2:
            raise ValueError("horizon must be at least 2 keys")
        self.horizon = horizon
        self._generation = horizon // 2
        self._current: set[str] = set()
        self._previous: set[str] = set()
        self.duplicates = 0

    def add(self, key: str | None) -> bool:
        """Record `key`; True if it was seen recently (a duplicate). None is not tracked:
        a message without a key cannot be told from another."""
        if key is None:
            return False
        if key in self._current or key in self._previous:
            self.duplicates += 1
            return True
        if len(self._current) >= self._generation:
            self._previous, self._current = self._current, set()
        self._current.add(key)
        return False

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)
