"""A realistic, seeded generator of XDM ExperienceEvents (short form) for demos and load.

Profiles are numbered 0..N-1. Profile N is one person in every run: identities `Email:
userN@example.com` (primary) and a stable 38-digit ECID, a name, a browser, a phone and a
locale all derived from N alone. The seed decides what happens: which products are
viewed, who buys, event ids. Nothing reads the clock; timestamps are passed in, so a run
is reproducible and a load tool can pace it by the timestamps.

Events look like what Adobe's Web and Mobile SDKs send (environment, device, web page,
implementation details) and weigh about 0.7-1.5 KB as JSON.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import uuid
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import accumulate
from typing import Any, Literal

__all__ = ["DEFAULT_RATE", "PRODUCTS", "STORES", "ScenarioMix", "TrafficGenerator", "iso"]

DEFAULT_RATE = 1000.0
"""Events per second of event time when no rate is given (scenario and stream)."""

FIRST_NAMES = (
    "Ada",
    "Grace",
    "Alan",
    "Barbara",
    "Edsger",
    "Frances",
    "Leslie",
    "Margaret",
    "Niklaus",
    "Radia",
    "Tim",
    "Sophie",
    "Hedy",
    "Claude",
    "Katherine",
    "Linus",
)
LAST_NAMES = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Liskov",
    "Dijkstra",
    "Allen",
    "Lamport",
    "Hamilton",
    "Wirth",
    "Perlman",
    "Berners-Lee",
    "Wilson",
    "Lamarr",
    "Shannon",
    "Johnson",
    "Torvalds",
)

# (SKU, name, unit price in EUR, category)
PRODUCTS = (
    ("SKU-1001", "Trail running shoes", 129.0, "Footwear"),
    ("SKU-1002", "Stormline rain jacket", 189.0, "Clothing"),
    ("SKU-1003", "Merino base layer", 79.0, "Clothing"),
    ("SKU-1004", "Headlamp 400 lm", 45.0, "Accessories"),
    ("SKU-1005", "Two-person tent", 349.0, "Camping"),
    ("SKU-1006", "Water filter", 39.0, "Camping"),
    ("SKU-1007", "Summit 40 L backpack", 159.0, "Bags"),
    ("SKU-1008", "Carbon trekking poles", 89.0, "Accessories"),
    ("SKU-1009", "Down sleeping bag", 249.0, "Camping"),
    ("SKU-1010", "Merino hiking socks", 19.0, "Clothing"),
)

# POIID -> (name, latitude, longitude, country, city)
STORES = {
    "store-paris-01": ("Outfitters Paris Opéra", 48.8719, 2.3316, "FR", "Paris"),
    "store-lyon-01": ("Outfitters Lyon Part-Dieu", 45.7606, 4.8597, "FR", "Lyon"),
    "store-berlin-01": ("Outfitters Berlin Mitte", 52.5219, 13.4132, "DE", "Berlin"),
    "store-london-01": ("Outfitters London Covent Garden", 51.5117, -0.1240, "GB", "London"),
}

# Browser-side devices: (device type, manufacturer, model, screen w, h, OS, OS version,
# browser, browser version)
_WEB_DEVICES = (
    ("desktop", "Apple", "MacBook Pro", 1728, 1117, "macOS", "14.6", "Chrome", "131.0.6778"),
    ("desktop", "Dell", "XPS 13", 1920, 1200, "Windows", "11", "Edge", "131.0.2903"),
    ("mobile", "Apple", "iPhone 15", 393, 852, "iOS", "18.1", "Safari", "18.1"),
    ("mobile", "Samsung", "Galaxy S24", 384, 832, "Android", "14", "Chrome", "131.0.6778"),
    ("tablet", "Apple", "iPad Air", 820, 1180, "iPadOS", "18.1", "Safari", "18.1"),
)
# Phones running the store app: (manufacturer, model, screen w, h, OS, OS version, SDK)
_PHONES = (
    ("Apple", "iPhone 15", 1179, 2556, "iOS", "18.1", "https://ns.adobe.com/experience/mobilesdk/ios"),
    ("Samsung", "Galaxy S24", 1080, 2340, "Android", "14", "https://ns.adobe.com/experience/mobilesdk/android"),
    ("Google", "Pixel 8", 1080, 2400, "Android", "15", "https://ns.adobe.com/experience/mobilesdk/android"),
)
# (accept-language, UTC offset in minutes, home store)
_LOCALES = (
    ("fr-FR", 60, "store-paris-01"),
    ("fr-FR", 60, "store-lyon-01"),
    ("de-DE", 60, "store-berlin-01"),
    ("en-GB", 0, "store-london-01"),
    ("en-US", -300, "store-london-01"),
    ("es-ES", 60, "store-paris-01"),
)
_CONNECTIONS = ("wifi", "cable", "mobile_4g", "mobile_5g")
_SITE = "https://shop.outfitters.example"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(ts: float) -> str:
    """ISO-8601 UTC with milliseconds, e.g. `2026-11-29T10:00:00.123Z`."""
    return (_EPOCH + timedelta(milliseconds=round(ts * 1000))).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _local_iso(ts: float, offset_minutes: int) -> str:
    moment = _EPOCH + timedelta(milliseconds=round(ts * 1000) + offset_minutes * 60_000)
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + f"{sign}{hours:02d}:{minutes:02d}"


@dataclass(frozen=True, slots=True)
class _Persona:
    first: str
    last: str
    web: tuple[Any, ...]
    phone: tuple[Any, ...]
    locale: tuple[str, int, str]
    connection: str
    ip: str


@lru_cache(maxsize=65_536)
def _persona(p: int) -> _Persona:
    # A hash of the profile number alone: profile N is the same person for any seed.
    d = hashlib.sha256(f"persona:{p}".encode()).digest()
    return _Persona(
        first=FIRST_NAMES[d[0] % len(FIRST_NAMES)],
        last=LAST_NAMES[d[1] % len(LAST_NAMES)],
        web=_WEB_DEVICES[d[2] % len(_WEB_DEVICES)],
        phone=_PHONES[d[3] % len(_PHONES)],
        locale=_LOCALES[d[4] % len(_LOCALES)],
        connection=_CONNECTIONS[d[5] % len(_CONNECTIONS)],
        ip=f"198.51.{100 + d[6] % 2}.{1 + d[7] % 254}",  # TEST-NET-2 (RFC 5737)
    )


@lru_cache(maxsize=65_536)
def _ecid(p: int) -> str:
    digest = hashlib.sha256(f"ecid:{p}".encode()).digest()
    return f"{int.from_bytes(digest[:16], 'big') % 10**38:038d}"


@dataclass(frozen=True, slots=True)
class ScenarioMix:
    """The shares of `TrafficGenerator.scenario`: each is a probability per profile."""

    cart: float = 0.6  # add an item to the cart (after viewing it)
    browse_only: float = 0.5  # of those who do not add to cart: view products anyway
    purchase: float = 0.5  # of the cart adders: buy; the others abandon
    late_purchase: float = 0.5  # of the buyers: buy only after `late_delay` seconds
    store: float = 0.25  # walk into their home store's geofence
    late_delay: tuple[float, float] = (1.0, 2.5)  # seconds of event time


class TrafficGenerator:
    """Builds short-form XDM events for numbered profiles: registrations, product views,
    cart adds, purchases, store geofence entries, and realistic mixes of them."""

    def __init__(
        self,
        profiles: int,
        seed: int = 0,
        skew: Literal["uniform", "zipf"] = "uniform",
        *,
        zipf_exponent: float = 1.1,
        mix: ScenarioMix | None = None,
    ) -> None:
        if profiles < 1:
            raise ValueError("profiles: need at least one")
        if skew not in ("uniform", "zipf"):
            raise ValueError(f"skew: {skew!r} is not 'uniform' or 'zipf'")
        self.profiles = profiles
        self.seed = seed
        self.skew = skew
        self.mix = mix or ScenarioMix()
        self._rng = random.Random(seed)
        self._zipf_exponent = zipf_exponent
        self._zipf_cum: array[float] | None = None

    def __repr__(self) -> str:
        return f"TrafficGenerator(profiles={self.profiles}, seed={self.seed}, skew={self.skew!r})"

    # -- identities -----------------------------------------------------------------------

    @staticmethod
    def email(p: int) -> str:
        """The profile's email, its primary identity."""
        return f"user{p}@example.com"

    @staticmethod
    def ecid(p: int) -> str:
        """The profile's Experience Cloud ID: 38 digits, stable for the profile number."""
        return _ecid(p)

    def identity_map(self, p: int) -> dict[str, Any]:
        """A fresh identityMap for the profile: Email (primary) and ECID."""
        return {"Email": [{"id": self.email(p), "primary": True}], "ECID": [{"id": self.ecid(p)}]}

    # -- event kinds ----------------------------------------------------------------------

    def registration(self, p: int, ts: float) -> dict[str, Any]:
        """The sign-up form: `web.formFilledOut` on the Registration page, with the name."""
        person = _persona(p)
        event = self._web_event(p, ts, "web.formFilledOut", "Registration", f"{_SITE}/account/register", "Account")
        event["person"] = {"name": {"firstName": person.first, "lastName": person.last}}
        event["personalEmail"] = {"address": self.email(p)}
        return event

    def page_view(self, p: int, ts: float) -> dict[str, Any]:
        """A content page seen: `web.webpagedetails.pageViews`."""
        section = ("Home", "Men", "Women", "Outdoor", "Sale")[self._rng.randrange(5)]
        event = self._web_event(p, ts, "web.webpagedetails.pageViews", section, f"{_SITE}/{section.lower()}", section)
        event["web"]["webPageDetails"]["pageViews"] = {"value": 1}
        return event

    def product_view(self, p: int, ts: float, *, sku: str | None = None) -> dict[str, Any]:
        """A product page seen: `commerce.productViews`."""
        item = self._item(sku)
        event = self._web_event(
            p, ts, "commerce.productViews", item["name"], f"{_SITE}/p/{item['SKU'].lower()}", "Products"
        )
        event["commerce"] = {"productViews": {"value": 1}}
        event["productListItems"] = [item]
        return event

    def cart_add(self, p: int, ts: float, *, sku: str | None = None) -> dict[str, Any]:
        """An item put in the cart: `commerce.productListAdds`."""
        item = self._item(sku)
        event = self._web_event(
            p, ts, "commerce.productListAdds", item["name"], f"{_SITE}/p/{item['SKU'].lower()}", "Products"
        )
        event["commerce"] = {"productListAdds": {"value": 1}}
        event["productListItems"] = [item]
        return event

    def purchase(self, p: int, ts: float, *, sku: str | None = None) -> dict[str, Any]:
        """An order placed: `commerce.purchases` with `commerce.order`."""
        item = self._item(sku)
        rng = self._rng
        event = self._web_event(
            p, ts, "commerce.purchases", "Order confirmation", f"{_SITE}/checkout/confirmation", "Checkout"
        )
        total = item["priceTotal"]
        event["commerce"] = {
            "purchases": {"value": 1},
            "order": {
                "purchaseID": f"ORD-{rng.getrandbits(40):010X}",
                "priceTotal": total,
                "currencyCode": "EUR",
                "payments": [
                    {
                        "paymentType": rng.choice(("credit_card", "paypal", "gift_card")),
                        "paymentAmount": total,
                        "currencyCode": "EUR",
                    }
                ],
            },
        }
        event["productListItems"] = [item]
        return event

    def poi_entry(self, p: int, ts: float, poi: str = "store-paris-01") -> dict[str, Any]:
        """The store app saw the phone enter a store's geofence: `location.entry`."""
        name, lat, lon, country, city = STORES.get(poi) or (f"Outfitters {poi}", 0.0, 0.0, "", "")
        person = _persona(p)
        maker, model, width, height, os_name, os_version, sdk = person.phone
        lang, offset, _ = person.locale
        return {
            "_id": self._uuid(),
            "timestamp": iso(ts),
            "eventType": "location.entry",
            "identityMap": self.identity_map(p),
            "placeContext": {
                "localTime": _local_iso(ts, offset),
                "localTimezoneOffset": -offset,
                "geo": {"_schema": {"latitude": lat, "longitude": lon}, "countryCode": country, "city": city},
                "POIinteraction": {
                    "poiEntries": {"value": 1},
                    "POIID": poi,
                    "name": name,
                    "category": "Store",
                    "type": "Retail",
                    "locatingType": "gps",
                    "geoInteractionDetails": {"distanceToCenter": 40, "accuracy": 15},
                },
            },
            "application": {"id": "com.outfitters.store", "name": "Outfitters", "version": "4.2.1"},
            "environment": {
                "type": "application",
                "operatingSystem": os_name,
                "operatingSystemVersion": os_version,
                "carrier": "Orange" if country == "FR" else "Vodafone",
                "connectionType": "mobile_5g",
                "language": lang,
            },
            "device": {
                "type": "mobile",
                "manufacturer": maker,
                "model": model,
                "screenWidth": width,
                "screenHeight": height,
                "screenOrientation": "portrait",
            },
            "implementationDetails": {"name": sdk, "version": "5.2.0", "environment": "app"},
        }

    # -- mixes ----------------------------------------------------------------------------

    def scenario(self, ts0: float, rate_per_s: float | None = None) -> Iterator[dict[str, Any]]:
        """Every profile, in order, through a realistic session; deterministic for a seed.

        Everyone registers. With the default mix 60 % view an item and add it to the cart
        (of the others half browse products); half of the cart adders buy it, half of those
        right away and half only after a short while (1-2.5 s of event time later, so
        their purchase comes after other profiles' events); the rest abandon their cart.
        25 % walk into their home store's geofence. Event k has timestamp
        `ts0 + k / rate_per_s` (default DEFAULT_RATE), except purchases still pending after
        the last session, which come at their due time; timestamps never go backwards.
        """
        rate = DEFAULT_RATE if rate_per_s is None else rate_per_s
        if not rate > 0:
            raise ValueError(f"rate_per_s must be positive, not {rate_per_s}")
        mix = self.mix
        rng = self._rng
        late: list[tuple[float, int, int, str]] = []  # heap of (due time, order, profile, sku)
        emitted = 0
        for p in range(self.profiles):
            # Plan the session first (one draw order per profile keeps it deterministic),
            # then emit it, letting late purchases that fell due go first.
            session: list[tuple[str, str | None]] = [("registration", None)]
            sku = PRODUCTS[rng.randrange(len(PRODUCTS))][0]
            delay: float | None = None
            if rng.random() < mix.cart:
                session += [("product_view", sku), ("cart_add", sku)]
                if rng.random() < mix.purchase:
                    if rng.random() < mix.late_purchase:
                        delay = rng.uniform(*mix.late_delay)
                    else:
                        session.append(("purchase", sku))
            elif rng.random() < mix.browse_only:
                for _ in range(rng.randint(1, 3)):
                    session.append(("product_view", PRODUCTS[rng.randrange(len(PRODUCTS))][0]))
            if rng.random() < mix.store:
                session.append(("poi_entry", _persona(p).locale[2]))
            for kind, arg in session:
                while late and late[0][0] <= ts0 + emitted / rate:
                    _, _, buyer, bought = heapq.heappop(late)
                    yield self.purchase(buyer, ts0 + emitted / rate, sku=bought)
                    emitted += 1
                now = ts0 + emitted / rate
                yield self._make(kind, p, now, arg)
                emitted += 1
                if kind == "cart_add" and delay is not None:
                    # Due after the cart add really went out, whatever was interleaved.
                    heapq.heappush(late, (now + delay, emitted, p, arg or sku))
        while late:  # the last buyers: at their due time, still in order
            at, _, buyer, bought = heapq.heappop(late)
            yield self.purchase(buyer, max(ts0 + emitted / rate, at), sku=bought)
            emitted += 1

    def stream(self, n: int, ts0: float, *, rate_per_s: float = DEFAULT_RATE) -> list[dict[str, Any]]:
        """`n` events for random profiles (zipf-skewed when configured), browse-heavy like
        real shop traffic (page and product views 75 %, cart adds 12 %, purchases 5 %, sign-ups
        4 %, store visits 4 %); event i has timestamp `ts0 + i / rate_per_s`."""
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be positive, not {rate_per_s}")
        kinds: tuple[Callable[[int, float], dict[str, Any]], ...] = (
            self.page_view,
            self.product_view,
            self.cart_add,
            self.purchase,
            self.registration,
            self._store_entry,
        )
        cum_weights = (0.30, 0.75, 0.87, 0.92, 0.96, 1.0)
        rng = self._rng
        profiles = self._profiles(n)
        makers = rng.choices(kinds, cum_weights=cum_weights, k=n)
        return [make(p, ts0 + i / rate_per_s) for i, (make, p) in enumerate(zip(makers, profiles, strict=True))]

    # -- helpers --------------------------------------------------------------------------

    def _make(self, kind: str, p: int, ts: float, arg: str | None) -> dict[str, Any]:
        if kind == "registration":
            return self.registration(p, ts)
        if kind == "poi_entry":
            return self.poi_entry(p, ts, arg or "store-paris-01")
        maker: Callable[..., dict[str, Any]] = getattr(self, kind)
        return maker(p, ts, sku=arg)

    def _store_entry(self, p: int, ts: float) -> dict[str, Any]:
        return self.poi_entry(p, ts, _persona(p).locale[2])

    def _profiles(self, n: int) -> list[int]:
        rng = self._rng
        if self.skew == "uniform":
            return [rng.randrange(self.profiles) for _ in range(n)]
        if self._zipf_cum is None:
            # Rank r has weight 1 / (r + 1)^s: a few profiles are very busy, most are quiet.
            s = self._zipf_exponent
            self._zipf_cum = array("d", accumulate(1.0 / (r + 1) ** s for r in range(self.profiles)))
        return rng.choices(range(self.profiles), cum_weights=self._zipf_cum, k=n)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _item(self, sku: str | None) -> dict[str, Any]:
        if sku is None:
            product = PRODUCTS[self._rng.randrange(len(PRODUCTS))]
        else:
            product = next((x for x in PRODUCTS if x[0] == sku), None) or (sku, sku, 10.0, "Other")
        code, name, price, category = product
        return {
            "SKU": code,
            "name": name,
            "priceTotal": price,
            "currencyCode": "EUR",
            "quantity": 1,
            "productCategory": category,
        }

    def _web_event(self, p: int, ts: float, event_type: str, page: str, url: str, section: str) -> dict[str, Any]:
        person = _persona(p)
        kind, maker, model, width, height, os_name, os_version, browser, version = person.web
        lang, offset, _ = person.locale
        return {
            "_id": self._uuid(),
            "timestamp": iso(ts),
            "eventType": event_type,
            "identityMap": self.identity_map(p),
            "web": {"webPageDetails": {"name": page, "URL": url, "siteSection": section}},
            "environment": {
                "type": "browser",
                # The Web SDK sends no user agent in XDM: the edge adds it.
                "browserDetails": {
                    "name": browser,
                    "version": version,
                    "acceptLanguage": lang,
                    "viewportWidth": width,
                    "viewportHeight": height - 120,
                },
                "operatingSystem": os_name,
                "operatingSystemVersion": os_version,
                "connectionType": person.connection,
                "ipV4": person.ip,
            },
            "device": {
                "type": kind,
                "manufacturer": maker,
                "model": model,
                "screenWidth": width,
                "screenHeight": height,
                "screenOrientation": "landscape" if width > height else "portrait",
            },
            "placeContext": {"localTime": _local_iso(ts, offset), "localTimezoneOffset": -offset},
            "implementationDetails": {"name": "https://ns.adobe.com/experience/alloy", "version": "2.24.0"},
        }
