"""A shard's profiles, with idle ones passivated to packed bytes.

A profile in use is a plain dict (fast to read and update); a profile nobody touched for a
passivation period is kept as its msgpack bytes instead, about a third of the memory, and
turned back into a dict by the next input that needs it. That is what lets a shard hold a
million profiles in well under a gigabyte: on a storefront most profiles are idle at any
moment. The packed form is the snapshot's form, so a snapshot writes passivated profiles
as they are and recovery can load them without unpacking.

Passivation is generational and costs nothing per access beyond one set insert: each
access marks the key as touched; `idle_keys()` returns the dicts not touched since the
previous call, and `passivate()` packs those still untouched. Per journey, how many
instances the passivated profiles hold is kept as a count, so status never unpacks them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgpack

Profile = dict[str, Any]


def pack_profile(profile: Profile) -> bytes:
    return msgpack.packb(profile, use_bin_type=True)  # type: ignore[no-any-return]


def unpack_profile(blob: bytes) -> Profile:
    return msgpack.unpackb(blob, raw=False)  # type: ignore[no-any-return]


class ProfileTable:
    """Profiles by key: active ones as dicts, passivated ones as packed bytes."""

    __slots__ = (
        "_active",
        "_later",
        "_map",
        "_passivated_instances",
        "_touched",
        "activations",
        "evictions",
        "passivations",
    )

    def __init__(self) -> None:
        self._map: dict[str, Profile | bytes] = {}
        self._active: set[str] = set()  # keys held as dicts
        self._touched: set[str] = set()  # keys read or written since the last idle_keys()
        self._passivated_instances: Counter[str] = Counter()  # journey id -> instances packed
        self._later: set[str] = set()  # packed without instances, evictable once written
        self.activations = 0
        self.passivations = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._map)

    def __contains__(self, key: object) -> bool:
        return key in self._map

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def passivated(self) -> int:
        return len(self._map) - len(self._active)

    # -- access -----------------------------------------------------------------------

    def get(self, key: str) -> Profile | None:
        """The profile as a dict to read or update (re-activated if it was passivated)."""
        value = self._map.get(key)
        if value is None:
            return None
        self._touched.add(key)
        if type(value) is bytes:
            value = unpack_profile(value)
            self._map[key] = value
            self._active.add(key)
            self._passivated_instances.subtract(value["journeys"].keys())
            self.activations += 1
        return value  # type: ignore[return-value]

    def peek(self, key: str) -> Profile | None:
        """The profile for reading only: a passivated one is unpacked but stays passivated."""
        value = self._map.get(key)
        if value is None or type(value) is not bytes:
            return value  # type: ignore[return-value]
        return unpack_profile(value)

    def add(self, key: str, profile: Profile) -> None:
        """Hold a new (or replaced) profile as active."""
        self._uncount_packed(key)
        self._map[key] = profile
        self._active.add(key)
        self._touched.add(key)

    def add_packed(self, key: str, blob: bytes) -> None:
        """Hold a profile passivated, as loaded from a snapshot (`blob` is its packed form)."""
        self.add_passivated(key, blob, unpack_profile(blob)["journeys"].keys())

    def add_passivated(self, key: str, blob: bytes, journeys: Iterable[str]) -> None:
        """Like `add_packed` when the caller already knows the profile's journey ids."""
        self._uncount_packed(key)
        self._map[key] = blob
        self._active.discard(key)
        self._passivated_instances.update(journeys)

    def _uncount_packed(self, key: str) -> None:
        old = self._map.get(key)
        if type(old) is bytes:  # a packed profile being replaced: its instances go with it
            self._passivated_instances.subtract(unpack_profile(old)["journeys"].keys())

    def packed(self, key: str) -> bytes:
        """The profile's packed form (what a snapshot writes); does not re-activate it."""
        value = self._map[key]
        return value if type(value) is bytes else pack_profile(value)  # type: ignore[arg-type]

    def keys(self) -> Iterator[str]:
        return iter(self._map)

    def items(self) -> Iterator[tuple[str, Profile]]:
        """Every profile as a dict, passivated ones unpacked for the caller only (slow: for
        recovery and tests, not for the hot path)."""
        for key, value in list(self._map.items()):
            yield key, (unpack_profile(value) if type(value) is bytes else value)  # type: ignore[misc]

    def recount(self) -> Iterator[tuple[str, Profile]]:
        """`items()`, recounting the passivated profiles' instances on the way: recovery
        loads profiles with `add_passivated(key, blob, ())` and then walks them once, to
        rebuild the timers and these counts with one unpack per profile."""
        self._passivated_instances = Counter()
        for key, value in list(self._map.items()):
            if type(value) is bytes:
                profile = unpack_profile(value)
                self._passivated_instances.update(profile["journeys"].keys())
                yield key, profile
            else:
                yield key, value  # type: ignore[misc]

    def instance_counts(self) -> Counter[str]:
        """Journey instances held, per journey id, without unpacking passivated profiles."""
        counts = Counter({j: n for j, n in self._passivated_instances.items() if n > 0})
        for key in self._active:
            counts.update(self._map[key]["journeys"].keys())  # type: ignore[index, call-overload]
        return counts

    # -- passivation ------------------------------------------------------------------

    def idle_keys(self) -> list[str]:
        """Active profiles not touched since the previous call; starts a new period."""
        idle = self._active - self._touched
        self._touched = set()
        return list(idle)

    def passivate(self, keys: Iterable[str], evictable: Callable[[str], bool] | None = None) -> int:
        """Pack those of `keys` still active and not touched since `idle_keys()` returned them.

        With `evictable`, a profile that holds no journey instance and for which
        `evictable(key)` is true (its latest state is in the store) is dropped instead: no
        timer or outcome can need it, and its next event loads it back from the store. One
        with no instance that is not evictable yet is packed and tried again by
        `evict_later`. Returns how many were packed or dropped.
        """
        packed = 0
        touched = self._touched
        for key in keys:
            if key in touched or key not in self._active:
                continue
            profile: Profile = self._map[key]  # type: ignore[assignment]
            if evictable is not None and not profile["journeys"]:
                if evictable(key):
                    del self._map[key]
                    self._active.discard(key)
                    self.evictions += 1
                    packed += 1
                    continue
                self._later.add(key)
            self._map[key] = pack_profile(profile)
            self._active.discard(key)
            self._passivated_instances.update(profile["journeys"].keys())
            packed += 1
        self.passivations += packed
        return packed

    def evict_when_written(self, key: str) -> None:
        """Mark a packed profile without instances (loaded by recovery) for `evict_later`."""
        self._later.add(key)

    def evict_later(self, evictable: Callable[[str], bool]) -> int:
        """Drop the packed profiles without instances that `passivate` could not drop yet
        and that are now `evictable`; returns how many."""
        dropped = 0
        for key in list(self._later):
            if key not in self._map or key in self._active:  # re-activated: a sweep decides again
                self._later.discard(key)
            elif evictable(key):
                del self._map[key]
                self._later.discard(key)
                dropped += 1
        self.evictions += dropped
        return dropped
