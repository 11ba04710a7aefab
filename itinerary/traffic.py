"""A realistic, seeded generator of XDM ExperienceEvents (short form) for demos and load.

Profiles are numbered; profile N has the identities `Email: userN@example.com` and a stable
ECID. Timestamps are passed in (never read from the clock) so a run is reproducible.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

FIRST_NAMES = ("Ada", "Grace", "Alan", "Barbara", "Edsger", "Frances", "Leslie", "Margaret", "Niklaus", "Radia")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Liskov", "Dijkstra", "Allen", "Lamport", "Hamilton", "Wirth")
PRODUCTS = (
    ("SKU-1001", "Trail running shoes", 129.0), ("SKU-1002", "Rain jacket", 189.0),
    ("SKU-1003", "Merino base layer", 79.0), ("SKU-1004", "Headlamp", 45.0),
    ("SKU-1005", "Two-person tent", 349.0), ("SKU-1006", "Water filter", 39.0),
)
STORES = (("store-paris-01", "Outfitters Paris Opéra", 48.8719, 2.3316),
          ("store-lyon-01", "Outfitters Lyon Part-Dieu", 45.7606, 4.8597))
BROWSERS = (("Chrome", "131.0.6778"), ("Safari", "18.1"), ("Firefox", "133.0"))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TrafficGenerator:
    """Builds XDM events for numbered profiles: registrations, product views, cart adds,
    purchases, store geofence entries, and a realistic mix of them."""

    def __init__(self, profiles: int, seed: int = 0, skew: Literal["uniform", "zipf"] = "uniform") -> None:
        if profiles < 1:
            raise ValueError("need at least one profile")
        self.profiles = profiles
        self.skew = skew
        self._rng = random.Random(seed)

    def _id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    @staticmethod
    def email(p: int) -> str:
        return f"user{p}@example.com"

    @staticmethod
    def ecid(p: int) -> str:
        return f"{(p * 2654435761) % 10**19:019d}{(p * 40503) % 10**19:019d}"

    def _base(self, p: int, ts: float, event_type: str) -> dict[str, Any]:
        browser, version = BROWSERS[p % len(BROWSERS)]
        return {
            "_id": self._id(),
            "timestamp": iso(ts),
            "eventType": event_type,
            "identityMap": {
                "Email": [{"id": self.email(p), "authenticatedState": "authenticated", "primary": True}],
                "ECID": [{"id": self.ecid(p)}],
            },
            "environment": {"type": "browser", "browserDetails": {"name": browser, "version": version,
                            "acceptLanguage": "en-GB", "viewportWidth": 1440, "viewportHeight": 900},
                            "operatingSystem": "MAC OS", "connectionType": "wifi"},
            "device": {"type": "desktop", "screenWidth": 2560, "screenHeight": 1440},
        }

    def _items(self, p: int) -> list[dict[str, Any]]:
        sku, name, price = PRODUCTS[(p + self._rng.randrange(3)) % len(PRODUCTS)]
        return [{"SKU": sku, "name": name, "priceTotal": price, "currencyCode": "EUR", "quantity": 1}]

    def registration(self, p: int, ts: float) -> dict[str, Any]:
        event = self._base(p, ts, "web.formFilledOut")
        event["web"] = {"webPageDetails": {"name": "Registration", "URL": "https://outfitters.example/register"}}
        event["person"] = {"name": {"firstName": FIRST_NAMES[p % len(FIRST_NAMES)],
                                    "lastName": LAST_NAMES[p % len(LAST_NAMES)]}}
        event["personalEmail"] = {"address": self.email(p)}
        return event

    def product_view(self, p: int, ts: float) -> dict[str, Any]:
        event = self._base(p, ts, "commerce.productViews")
        event["commerce"] = {"productViews": {"value": 1}}
        event["productListItems"] = self._items(p)
        event["web"] = {"webPageDetails": {"name": "Product", "URL": "https://outfitters.example/p"}}
        return event

    def cart_add(self, p: int, ts: float) -> dict[str, Any]:
        event = self._base(p, ts, "commerce.productListAdds")
        event["commerce"] = {"productListAdds": {"value": 1}}
        event["productListItems"] = self._items(p)
        return event

    def purchase(self, p: int, ts: float) -> dict[str, Any]:
        event = self._base(p, ts, "commerce.purchases")
        items = self._items(p)
        event["commerce"] = {"purchases": {"value": 1}, "order": {
            "purchaseID": self._id()[:13], "priceTotal": items[0]["priceTotal"], "currencyCode": "EUR"}}
        event["productListItems"] = items
        return event

    def poi_entry(self, p: int, ts: float, poi: str = "store-paris-01") -> dict[str, Any]:
        store = next((s for s in STORES if s[0] == poi), STORES[0])
        event = self._base(p, ts, "location.entry")
        event["placeContext"] = {
            "geo": {"_schema": {"latitude": store[2], "longitude": store[3]}, "countryCode": "FR"},
            "POIinteraction": {"poiEntries": {"value": 1}, "POIID": store[0], "name": store[1],
                               "category": "Store", "locatingType": "gps"},
        }
        return event

    def scenario(self, ts0: float) -> Iterator[dict[str, Any]]:
        """Every profile registers; ~60 % add to cart and about half of those buy; the
        others abandon; ~25 % walk into a store. Deterministic for a seed."""
        ts = ts0
        for p in range(self.profiles):
            ts += 0.001
            yield self.registration(p, ts)
            roll = self._rng.random()
            if roll < 0.5:
                yield self.product_view(p, ts + 0.01)
            if roll < 0.6:
                yield self.cart_add(p, ts + 0.02)
                if self._rng.random() < 0.5:
                    yield self.purchase(p, ts + 0.03)
            if self._rng.random() < 0.25:
                yield self.poi_entry(p, ts + 0.04, STORES[p % len(STORES)][0])

    def _profile(self) -> int:
        if self.skew == "zipf":
            # Zipf-like: a few profiles are very active, most are quiet.
            return min(self.profiles - 1, int(self._rng.paretovariate(1.2)) - 1)
        return self._rng.randrange(self.profiles)

    def stream(self, n: int, ts0: float) -> list[dict[str, Any]]:
        """`n` events for random profiles, in a browse-heavy mix (load and benchmarks)."""
        kinds = (self.product_view, self.product_view, self.product_view, self.cart_add,
                 self.purchase, self.registration, self.poi_entry)
        weights = (0.35, 0.15, 0.1, 0.18, 0.08, 0.08, 0.06)
        out = []
        for i in range(n):
            make = self._rng.choices(kinds, weights)[0]
            out.append(make(self._profile(), ts0 + i * 1e-4))
        return out
