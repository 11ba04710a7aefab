"""Ingress: the HTTP edge. Parses, validates and routes events, batches them per shard.

`POST /v1/events` answers 202 once the owning shards have applied the events, with a
reason for each rejected one; 400 for a body that is not JSON or msgpack (or when every
event was rejected), 413 above the size limit, 415 for other content types, 429 with
Retry-After when the bounded queues are full, 503 when a shard could not be reached.
Several ingress actors can share one port (SO_REUSEPORT).

When API keys are configured (`runtime.security`), posting events needs an ingest or
admin key and reading profiles or status an admin key, sent as `Authorization: Bearer`;
401 without a valid key, 403 for an ingest key on an admin endpoint. `/healthz` is open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from itinerary.actors.batcher import ShardBatcher
from itinerary.actors.metrics import IngressMetrics
from itinerary.actors.names import ingress_name
from itinerary.actors.peers import Peers
from itinerary.actors.stalls import StallWatch
from itinerary.actors.tuning import collect_periodically, tune_gc
from itinerary.auth import Access, ApiKeys
from itinerary.catalog import Catalog
from itinerary.config.app import AppConfig
from itinerary.engine.ingest import BodyError
from itinerary.engine.reader import EventReader
from itinerary.engine.routing import RoutingTable, profile_key
from itinerary.router import EventRouter

log = logging.getLogger(__name__)
REQUEST_TIMEOUT = 30.0
SHARD_OPEN_TIMEOUT = 3.0  # seconds; a live shard offers its stream in milliseconds


def _json_error(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers)


def _node_address() -> str:
    """This Ray node's IP address; the loopback outside Ray (tests with local peers)."""
    import ray

    if not ray.is_initialized():
        return "127.0.0.1"
    address: str = ray.util.get_node_ip_address()
    return f"[{address}]" if ":" in address else address


def _payload_reason(exc: BaseException) -> str:
    """What went wrong reading the body: the innermost error of the chain aiohttp raises
    (e.g. zlib's `incorrect header check` under its ContentEncodingError)."""
    inner = exc
    for _ in range(4):  # the chain is short; bounded anyway
        below = inner.__cause__ or inner.__context__
        if below is None:
            break
        inner = below
    text = " ".join(str(inner).split()) or type(inner).__name__
    return text[:200]


class Ingress:
    """One HTTP server process: validates and routes events to profile shards in batches."""

    def __init__(self, index: int, app: AppConfig, port: int, peers: Peers | None = None, clock: Any = None) -> None:
        tune_gc()
        self.index = index
        self.name = ingress_name(index)
        self.settings = app.runtime.ingress
        self.namespace_codes = app.runtime.identity.namespace_codes
        self.keys = ApiKeys.from_settings(app.runtime.security)
        self.port = port
        self.catalog = Catalog.build(app)
        self.table = RoutingTable(app.runtime.partitions, app.runtime.shards)
        self.router = EventRouter(self.catalog, self.table, max_record_bytes=self.settings.max_event_bytes)
        self.reader = EventReader(self.catalog, self.settings, self.namespace_codes)
        if peers is None:
            from itinerary.actors.peers import RayPeers

            # A shard that does not offer its stream in time (restarting, its node lost)
            # gets the request a 503 to retry, not a hold of up to REQUEST_TIMEOUT.
            peers = RayPeers(app.runtime.ray_namespace, app.runtime.direct_streams, open_timeout=SHARD_OPEN_TIMEOUT)
        self.peers = peers
        self.clock = clock or time.time
        s = self.settings
        self.batchers = [
            ShardBatcher(
                shard,
                peers.apply_batch,
                sender=f"{self.name}@{id(self):x}",
                max_events=s.batch_max_events,
                max_delay=s.batch_max_delay.total_seconds(),
                max_inflight=s.max_inflight_batches,
            )
            for shard in range(app.runtime.shards)
        ]
        self.counts = {"requests": 0, "accepted": 0, "rejected": 0, "throttled": 0, "errors": 0}
        self._metrics = IngressMetrics(self.name)
        self._stalls = StallWatch(self.name)
        self._runner: web.AppRunner | None = None
        self._collector: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Ingress({self.name}, port={self.port})"

    @property
    def queued(self) -> int:
        return sum(b.queued for b in self.batchers)

    async def ready(self) -> str:
        """Answers once the actor is up (the server may not be listening yet: see start)."""
        return self.name

    async def start(self) -> dict[str, Any]:
        if self._runner is not None:
            return self._address()
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_post("/v1/events", self.post_events)
        app.router.add_get("/v1/profiles/{namespace}/{identity}", self.get_profile)
        app.router.add_get("/v1/status", self.get_status)
        app.router.add_get("/healthz", self.healthz)
        # Before listening, so that the first requests find the shards already reached.
        missed = await self.peers.connect(shards=range(len(self.batchers)))
        if missed:
            log.warning("%s: not reached at start (looked up on first use): %s", self.name, ", ".join(missed))
        self._runner = web.AppRunner(app, access_log=None)
        self._collector = asyncio.get_running_loop().create_task(collect_periodically())
        self._stalls.start()
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.port, reuse_port=True, backlog=1024)
        await site.start()
        if self.port == 0:
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1] if sockets else 0
        log.info("%s listening on %s:%d", self.name, self.settings.host, self.port)
        return self._address()

    def _address(self) -> dict[str, Any]:
        host = self.settings.host
        if host in ("0.0.0.0", "::"):
            # Listening on every interface: name this node's address, which on a cluster is
            # what a load balancer (or `itinerary load --url`) needs, not a loopback.
            host = _node_address()
        return {"name": self.name, "url": f"http://{host}:{self.port}", "port": self.port}

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._collector is not None:
            self._collector.cancel()
            self._collector = None
        await self._stalls.stop()

    async def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "port": self.port,
            "queued": self.queued,
            **self.counts,
            "batches": sum(b.batches_sent for b in self.batchers),
            "batch_failures": sum(b.failures for b in self.batchers),
            "fast_path_bodies": self.reader.fast_bodies,
            "stalls": self._stalls.summary(),
        }

    # -- handlers ---------------------------------------------------------------------

    def _denied(self, request: web.Request, need: Access) -> web.Response | None:
        # Headers only: called before the body is read, so an unauthenticated client
        # cannot make the ingress take in a large body.
        denial = self.keys.check(request.headers.get("Authorization"), need)
        return None if denial is None else _json_error(denial.status, denial.error, denial.headers)

    async def post_events(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        self.counts["requests"] += 1
        response, accepted, rejected = await self._handle_events(request)
        self._metrics.request(response.status, accepted, rejected, time.perf_counter() - started, self.queued)
        return response

    async def _handle_events(self, request: web.Request) -> tuple[web.Response, int, int]:
        denied = self._denied(request, Access.INGEST)
        if denied is not None:
            return denied, 0, 0
        s = self.settings
        retry = {"Retry-After": str(s.retry_after)}
        if self.queued >= s.max_queued_events:
            self.counts["throttled"] += 1
            return _json_error(429, "ingest queue full; retry later", retry), 0, 0
        if request.content_length is not None and request.content_length > s.max_body_bytes:
            return _json_error(413, f"body over the limit of {s.max_body_bytes} bytes"), 0, 0
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json_error(413, f"body over the limit of {s.max_body_bytes} bytes"), 0, 0
        except web.RequestPayloadError as exc:
            # A body aiohttp cannot decode (Content-Encoding gzip or deflate over bytes that
            # are not) is the client's fault: left to aiohttp it would be a 500. The rest of
            # the body cannot be read past the error, so the connection is not reused.
            refused = _json_error(400, f"body cannot be read: {_payload_reason(exc)}")
            refused.force_close()
            return refused, 0, 0
        now = self.clock()
        fast_before = self.reader.fast_bodies
        try:
            valid, rejected = self.reader.read(body, request.content_type, now)
        except BodyError as exc:
            return _json_error(exc.status, exc.reason), 0, 0
        if self.reader.fast_bodies != fast_before:
            self._metrics.fast_path()
        per_shard, unrouted = self.router.route(valid, now)
        if unrouted:
            rejected = sorted(rejected + unrouted, key=lambda r: r["index"])
        count = sum(len(records) for records in per_shard.values())
        self.counts["rejected"] += len(rejected)
        if count == 0:
            status = 400 if rejected else 202
            return web.json_response({"accepted": 0, "rejected": rejected}, status=status), 0, len(rejected)
        if self.queued + count > s.max_queued_events:
            self.counts["throttled"] += 1
            return _json_error(429, "ingest queue full; retry later", retry), 0, len(rejected)
        futures = [self.batchers[shard].add(records) for shard, records in per_shard.items()]
        try:
            await asyncio.wait_for(asyncio.gather(*futures), REQUEST_TIMEOUT)
        except Exception as exc:
            self.counts["errors"] += 1
            log.warning("%s: batch not applied: %s", self.name, exc)
            return _json_error(503, "a profile shard is unavailable; retry", retry), 0, len(rejected)
        self.counts["accepted"] += count
        return web.json_response({"accepted": count, "rejected": rejected}, status=202), count, len(rejected)

    async def get_profile(self, request: web.Request) -> web.Response:
        denied = self._denied(request, Access.ADMIN)
        if denied is not None:
            return denied
        key = profile_key(request.match_info["namespace"], request.match_info["identity"])
        try:
            profile = await self.peers.get_profile(self.table.shard_of(key), key)
        except Exception as exc:
            log.warning("%s: profile lookup failed: %s", self.name, exc)
            return _json_error(503, "the profile's shard is unavailable; retry", {"Retry-After": "1"})
        if profile is None:
            return _json_error(404, f"no profile {key!r}")
        return web.json_response(profile)

    async def get_status(self, request: web.Request) -> web.Response:
        denied = self._denied(request, Access.ADMIN)
        if denied is not None:
            return denied
        try:
            status = await self.peers.system_status()
        except Exception as exc:
            log.warning("%s: status failed: %s", self.name, exc)
            return _json_error(503, "the supervisor is unavailable; retry", {"Retry-After": "1"})
        return web.json_response(status)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "ingress": self.name, "queued": self.queued})
