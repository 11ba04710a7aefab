"""Load traffic: customers' sessions interleaved in real time, encoded fast enough for 20k/s.

Three parts, each usable alone:

- `ProfileChooser` picks which profile starts the next session: uniformly, or Zipf-skewed
  (rank r has weight 1 / (r + 1)^s), and only among the profiles a sender process owns, so
  one profile's events always leave from one process, in order.
- `EventEncoder` turns (kind, profile, time) into encoded XDM bytes. The events are the
  ones `itinerary.traffic.TrafficGenerator` builds (same shapes, same sizes, 0.7-1.5 KB),
  made once per kind, variant and persona as a template whose per-event values (event id,
  timestamps, identities, order id) are spliced in as encoded bytes. Building and encoding
  an event from scratch costs about 55 µs, a core for 20,000 events/s; a template costs a
  few µs.
- `JourneyTraffic` plays the journeys' trigger sequences: a new session registers (first
  visit only), browses pages, then either views an item, adds it to the cart and buys it
  soon, later or never (abandonment), or browses products; some walk into their home
  store (location entry). Steps of a session are spaced by a think time, so at any rate
  many sessions interleave, as on a real site.
"""

from __future__ import annotations

import heapq
import json
import random
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any, Literal

import msgpack

from itinerary.traffic import PRODUCTS, STORES, ScenarioMix, TrafficGenerator

__all__ = ["CONTENT_TYPES", "EventEncoder", "JourneyTraffic", "ProfileChooser"]

ContentType = Literal["json", "msgpack"]
CONTENT_TYPES: dict[str, str] = {"json": "application/json", "msgpack": "application/msgpack"}

# Templates are made for this many personas (device, browser, locale, name); profile p
# wears persona p % PERSONAS, so each profile keeps one device for the whole run.
PERSONAS = 64
PAGE_VARIANTS = 5  # page-view templates per persona (the generator picks the site section)
PAGES = (1, 3)  # content pages a session views before anything else (min, max)
THINK = (0.2, 1.0)  # seconds between two steps of a session (min, max)

# Placeholders put into a template's event before it is encoded, then cut out of its bytes.
_SLOTS = ("id", "timestamp", "local_time", "email", "ecid", "order")
_PLACEHOLDER = {slot: f"@@itinerary-load-{slot}@@" for slot in _SLOTS}
_ID, _TS, _LOCAL, _EMAIL, _ECID, _ORDER = range(len(_SLOTS))


class ProfileChooser:
    """Picks profile numbers for new sessions: uniform or Zipf-skewed, within one sender's share.

    With `processes` K, sender `process` i owns the profiles p with p % K == i and picks
    rank r among them (r = 0 the busiest under Zipf), i.e. profile first + r * K + i:
    `first` numbers a run's population, so runs can use people the deployment has not
    seen yet (a welcome journey, say, starts once per profile).
    """

    def __init__(
        self,
        profiles: int,
        rng: random.Random,
        *,
        zipf: float | None = None,
        process: int = 0,
        processes: int = 1,
        first: int = 0,
    ) -> None:
        if profiles < processes:
            raise ValueError(f"profiles: need at least one per sender process ({processes})")
        if zipf is not None and not zipf > 0:
            raise ValueError(f"zipf exponent must be > 0, not {zipf}")
        self.profiles = profiles
        self.process = process
        self.processes = processes
        self.zipf = zipf
        self.first = first
        self.ranks = len(range(process, profiles, processes))  # the profiles this sender owns
        self._rng = rng
        self._cumulative: array[float] | None = None
        if zipf is not None:
            self._cumulative = array("d", accumulate(1.0 / (r + 1) ** zipf for r in range(self.ranks)))

    def rank(self) -> int:
        """A rank in 0..ranks-1 (0 is the busiest under Zipf)."""
        if self._cumulative is None:
            return self._rng.randrange(self.ranks)
        point = self._rng.random() * self._cumulative[-1]
        return min(bisect_right(self._cumulative, point), self.ranks - 1)

    def profile_of(self, rank: int) -> int:
        return self.first + rank * self.processes + self.process

    def choose(self) -> int:
        """The profile number that starts the next session."""
        return self.profile_of(self.rank())

    def share(self, rank: int) -> float:
        """The expected fraction of choices that pick `rank`."""
        if self._cumulative is None:
            return 1.0 / self.ranks
        before = self._cumulative[rank - 1] if rank else 0.0
        return (self._cumulative[rank] - before) / self._cumulative[-1]


class _Template:
    """One encoded event cut at its per-event values: head, then (slot, bytes after it)..."""

    __slots__ = ("head", "local_time", "offset_minutes", "order", "tail")

    def __init__(self, parts: list[bytes], slots: list[int], offset_minutes: int) -> None:
        self.head = parts[0]
        self.tail = tuple(zip(slots, parts[1:], strict=True))
        self.offset_minutes = offset_minutes
        self.local_time = _LOCAL in slots
        self.order = _ORDER in slots


class EventEncoder:
    """Encodes XDM events (JSON or msgpack) from per-persona templates; see the module doc.

    Kinds: registration, page_view, product_view, cart_add, purchase, poi_entry. The
    variant is the SKU for product kinds and picks one of PAGE_VARIANTS page templates.
    """

    def __init__(self, content_type: ContentType = "json", seed: int = 0, *, id_seed: int | None = None) -> None:
        if content_type not in CONTENT_TYPES:
            raise ValueError(f"content type {content_type!r}: use json or msgpack")
        self.content_type = content_type
        self.media_type = CONTENT_TYPES[content_type]
        # Event and order ids come from their own source, fresh for each run unless
        # `id_seed` is given: shards drop event ids they have seen, so a second run with
        # the same ids would be taken for a replay and do nothing.
        self._ids = random.Random(id_seed)
        self._generator = TrafficGenerator(profiles=PERSONAS, seed=seed)
        self._templates: dict[tuple[str, int, str | int | None], _Template] = {}
        self._json = content_type == "json"
        self._seconds: dict[tuple[int, int], str] = {}  # (epoch second, UTC offset) -> text
        self._encode_value: Callable[[str], bytes] = _json_string if self._json else _msgpack_string

    @property
    def templates(self) -> int:
        """Templates made so far (each is built once, on first use)."""
        return len(self._templates)

    def warm(self) -> None:
        """Make every template now (about 0.2 s), so the first seconds of a run are not slower."""
        variants: dict[str, list[str | int | None]] = {
            "registration": [None],
            "page_view": list(range(PAGE_VARIANTS)),
            "product_view": [p[0] for p in PRODUCTS],
            "cart_add": [p[0] for p in PRODUCTS],
            "purchase": [p[0] for p in PRODUCTS],
            "poi_entry": [None],
        }
        for persona in range(PERSONAS):
            for kind, kind_variants in variants.items():
                for variant in kind_variants:
                    key = (kind, persona, variant)
                    if key not in self._templates:
                        self._templates[key] = self._template(kind, persona, variant)

    def encode(self, kind: str, profile: int, ts: float, variant: str | int | None = None) -> bytes:
        """One event of `kind` for `profile` at epoch time `ts`, encoded."""
        persona = profile % PERSONAS
        key = (kind, persona, variant)
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = self._template(kind, persona, variant)
        ids = self._ids
        encode = self._encode_value
        # Indexed by slot: the values every event has, then the ones only some carry.
        values = (
            encode(_uuid4(ids)),
            encode(self._time_text(ts, 0)),
            encode(self._time_text(ts, template.offset_minutes)) if template.local_time else b"",
            encode(TrafficGenerator.email(profile)),
            encode(TrafficGenerator.ecid(profile)),
            encode(f"ORD-{ids.getrandbits(40):010X}") if template.order else b"",
        )
        out = [template.head]
        for slot, part in template.tail:
            out.append(values[slot])
            out.append(part)
        return b"".join(out)

    def body(self, events: list[bytes]) -> bytes:
        """A request body: the encoded events as one array."""
        if self._json:
            return b"[" + b",".join(events) + b"]"
        return _msgpack_array_header(len(events)) + b"".join(events)

    # -- templates ------------------------------------------------------------------------

    def _template(self, kind: str, persona: int, variant: str | int | None) -> _Template:
        generator = self._generator
        ts = 0.0  # replaced by a placeholder below
        if kind == "registration":
            event = generator.registration(persona, ts)
        elif kind == "page_view":
            event = generator.page_view(persona, ts)
        elif kind in ("product_view", "cart_add", "purchase"):
            event = getattr(generator, kind)(persona, ts, sku=str(variant) if variant is not None else None)
        elif kind == "poi_entry":
            stores = sorted(STORES)
            event = generator.poi_entry(persona, ts, stores[persona % len(stores)])
        else:
            raise ValueError(f"unknown event kind {kind!r}")
        offset = -int(event.get("placeContext", {}).get("localTimezoneOffset", 0))
        self._mark(event)
        raw = json.dumps(event, separators=(",", ":")).encode() if self._json else msgpack.packb(event)
        return _cut(raw, self._encode_value, offset)

    @staticmethod
    def _mark(event: dict[str, Any]) -> None:
        """Put placeholders where the per-event values go."""
        event["_id"] = _PLACEHOLDER["id"]
        event["timestamp"] = _PLACEHOLDER["timestamp"]
        place = event.get("placeContext")
        if place is not None and "localTime" in place:
            place["localTime"] = _PLACEHOLDER["local_time"]
        identities = event["identityMap"]
        identities["Email"][0]["id"] = _PLACEHOLDER["email"]
        identities["ECID"][0]["id"] = _PLACEHOLDER["ecid"]
        if "personalEmail" in event:
            event["personalEmail"]["address"] = _PLACEHOLDER["email"]
        order = event.get("commerce", {}).get("order")
        if order is not None:
            order["purchaseID"] = _PLACEHOLDER["order"]

    def _time_text(self, ts: float, offset_minutes: int) -> str:
        """`2026-11-29T10:00:00.123Z` (offset 0) or `...11:00:00.123+01:00`, like traffic.iso."""
        millis = round(ts * 1000)
        second, ms = divmod(millis, 1000)
        key = (second, offset_minutes)
        prefix = self._seconds.get(key)
        if prefix is None:
            if len(self._seconds) > 4096:  # a run moves forward: old seconds are not needed
                self._seconds.clear()
            moment = datetime.fromtimestamp(second + offset_minutes * 60, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            if offset_minutes:
                sign = "+" if offset_minutes > 0 else "-"
                hours, minutes = divmod(abs(offset_minutes), 60)
                suffix = f"{sign}{hours:02d}:{minutes:02d}"
            else:
                suffix = "Z"
            prefix = self._seconds[key] = f"{moment}.%03d{suffix}"
        return prefix % ms


def _cut(raw: bytes, encode: Callable[[str], bytes], offset_minutes: int) -> _Template:
    """Split an encoded event at its placeholders (each found as its own encoding)."""
    found: list[tuple[int, int, int]] = []  # (position, length, slot)
    for slot, name in enumerate(_SLOTS):
        mark = encode(_PLACEHOLDER[name])
        start = raw.find(mark)
        while start != -1:
            found.append((start, len(mark), slot))
            start = raw.find(mark, start + len(mark))
    found.sort()
    parts: list[bytes] = []
    slots: list[int] = []
    cursor = 0
    for start, length, slot in found:
        parts.append(raw[cursor:start])
        slots.append(slot)
        cursor = start + length
    parts.append(raw[cursor:])
    return _Template(parts, slots, offset_minutes)


def _json_string(value: str) -> bytes:
    # Every spliced value is ASCII without quotes or backslashes (ids, times, emails,
    # digits), so the JSON string is the value in quotes.
    return b'"' + value.encode("ascii") + b'"'


def _msgpack_string(value: str) -> bytes:
    return msgpack.packb(value)  # type: ignore[no-any-return]


def _msgpack_array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _uuid4(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


class JourneyTraffic:
    """The journeys' trigger sequences as a stream of encoded events (see the module doc).

    `events(n, now)` returns the next n events at epoch time `now`: steps of sessions in
    progress that are due come first, in due order, with their own timestamps; the rest
    start new sessions (profiles from the chooser) at `now`. Deterministic for a seed and
    a sequence of calls.
    """

    def __init__(
        self,
        chooser: ProfileChooser,
        encoder: EventEncoder,
        *,
        seed: int = 0,
        mix: ScenarioMix | None = None,
        pages: tuple[int, int] = PAGES,
        think: tuple[float, float] = THINK,
        new_customers: float = 1.0,
    ) -> None:
        self.chooser = chooser
        self.encoder = encoder
        self.mix = mix or ScenarioMix()
        self.pages = pages
        self.think = think
        self.kinds: Counter[str] = Counter()  # events made, per kind
        self.sessions = 0
        self._rng = random.Random(seed)
        # A new customer registers on their first visit; a returning one (registered before
        # the run) never does. A storefront sees a few percent of new customers a day.
        self._registered = bytearray(1 if self._rng.random() >= new_customers else 0 for _ in range(chooser.ranks))
        self._pending: list[tuple[float, int, int, str, str | int | None]] = []  # (due, order, profile, kind, variant)
        self._order = 0

    @property
    def pending(self) -> int:
        """Steps of sessions in progress that are not due yet."""
        return len(self._pending)

    def events(self, n: int, now: float) -> list[bytes]:
        """The next `n` encoded events at epoch time `now`."""
        pending = self._pending
        encode = self.encoder.encode
        out: list[bytes] = []
        while len(out) < n:
            if pending and pending[0][0] <= now:
                due, _, profile, kind, variant = heapq.heappop(pending)
                out.append(encode(kind, profile, due, variant))
            else:
                profile, kind, variant = self._start_session(now)
                out.append(encode(kind, profile, now, variant))
            self.kinds[kind] += 1
        return out

    def body(self, n: int, now: float) -> bytes:
        """A request body of the next `n` events."""
        return self.encoder.body(self.events(n, now))

    def _start_session(self, now: float) -> tuple[int, str, str | int | None]:
        """Plan one session, queue its later steps, return its first step."""
        rng = self._rng
        mix = self.mix
        rank = self.chooser.rank()
        profile = self.chooser.profile_of(rank)
        steps: list[tuple[str, str | int | None]] = []
        if not self._registered[rank]:
            self._registered[rank] = 1
            steps.append(("registration", None))
        steps += [("page_view", rng.randrange(PAGE_VARIANTS)) for _ in range(rng.randint(*self.pages))]
        sku = PRODUCTS[rng.randrange(len(PRODUCTS))][0]
        late: float | None = None
        if rng.random() < mix.cart:
            steps += [("product_view", sku), ("cart_add", sku)]
            if rng.random() < mix.purchase:
                if rng.random() < mix.late_purchase:
                    late = rng.uniform(*mix.late_delay)
                else:
                    steps.append(("purchase", sku))
        elif rng.random() < mix.browse_only:
            steps += [("product_view", PRODUCTS[rng.randrange(len(PRODUCTS))][0]) for _ in range(rng.randint(1, 3))]
        if rng.random() < mix.store:
            steps.append(("poi_entry", None))
        self.sessions += 1
        at = now
        for kind, variant in steps[1:]:
            at += rng.uniform(*self.think)
            self._push(at, profile, kind, variant)
            if kind == "cart_add" and late is not None:
                # Bought a little later: after the cart add, before or after the other steps.
                self._push(at + late, profile, "purchase", sku)
        first_kind, first_variant = steps[0]
        return profile, first_kind, first_variant

    def _push(self, due: float, profile: int, kind: str, variant: str | int | None) -> None:
        self._order += 1
        heapq.heappush(self._pending, (due, self._order, profile, kind, variant))
