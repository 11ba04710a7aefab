"""Supervisor: the control plane. Boots the actors from config, watches them, answers status.

No event ever waits on the supervisor: it starts gateways, shards and ingresses with clear
names, holds the routing table and journey versions, checks every actor's health on a
period, re-creates an actor that Ray will not restart, and aggregates `status`.

The data plane does not share the supervisor's fate (its actors are detached): when the
supervisor's process or node is lost, events keep flowing, Ray restarts the supervisor,
and the new one takes the running actors over by name (`recover`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import warnings
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import ray

from itinerary.actors import runtime
from itinerary.actors.names import ingress_name, shard_name
from itinerary.config.app import AppConfig
from itinerary.journey_versions import merge_versions
from itinerary.journey_versions import rows as journey_rows
from itinerary.store.factory import open_journey_store

log = logging.getLogger(__name__)
HEALTH_PERIOD = 2.0
RELAUNCH_ATTEMPTS = 40
RELAUNCH_PAUSE = 0.25  # seconds between launches refused because the name is still taken
CALL_TIMEOUT = 10.0


def _restarted_by_ray() -> bool:
    """Whether this process is a Ray actor that Ray has restarted (False outside Ray)."""
    if not ray.is_initialized():
        return False
    context = ray.get_runtime_context()
    if context.get_actor_id() is None:
        return False
    with warnings.catch_warnings():
        # Ray 2.60's own implementation of this public property reads a deprecated one.
        warnings.simplefilter("ignore", DeprecationWarning)
        return bool(context.was_current_actor_reconstructed)


def _actor_id(handle: Any) -> str:
    return str(handle._actor_id.hex())


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host if host not in ("0.0.0.0", "") else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Supervisor:
    """Starts and watches the data plane of one deployment, and reports on it."""

    def __init__(self, app: AppConfig, config_file: str = "<config>") -> None:
        self.app = app
        self.config_file = config_file
        self.port = app.runtime.ingress.port or free_port(app.runtime.ingress.host)
        self.shards: dict[int, Any] = {}
        self.gateways: dict[str, Any] = {}
        self.ingresses: dict[int, Any] = {}
        self.urls: list[str] = []
        self.restarts: dict[str, int] = {}
        self.started_at = time.time()
        self._watch_task: asyncio.Task[None] | None = None
        self._health_lock = asyncio.Lock()
        self._recovery: Any = None  # the ref of the call below, kept for a debugger to look at
        self.restarted = _restarted_by_ray()
        if self.restarted:
            # Ray re-ran __init__ with the first arguments, and nobody calls start() again:
            # the supervisor asks itself to take the running actors over.
            self._recovery = ray.get_runtime_context().current_actor.recover.remote()

    def __repr__(self) -> str:
        return f"Supervisor(shards={len(self.shards)}, gateways={len(self.gateways)})"

    async def start(self) -> dict[str, Any]:
        """Start every actor and wait until each answers; returns the ingress URLs.

        Actors left running under these names by an earlier supervisor that was stopped
        without `shutdown` (its driver killed) are replaced: they run that deployment's
        config, and `start` runs this one's."""
        self.app = self._with_stored_journeys(self.app)
        app = self.app
        await self._place_shards_and_gateways(self._replace)
        for index in range(app.runtime.ingress.instances):
            launch = partial(runtime.launch_ingress, app, index, self.port)
            self.ingresses[index] = await self._replace(ingress_name(index), launch)
        addresses = await asyncio.gather(*(i.start.remote() for i in self.ingresses.values()))
        self.urls = sorted({a["url"] for a in addresses})
        self._watch()
        return {"urls": self.urls, "shards": len(self.shards), "gateways": sorted(self.gateways)}

    async def recover(self) -> dict[str, Any]:
        """Take over a running deployment after Ray restarted this supervisor.

        Each actor still holding its name is kept as it is (it may be mid-restart on another
        node: Ray is on it); an actor that is gone is launched. Ingresses keep the port
        the live ones listen on, so the deployment's URL stays the same."""
        try:
            async with self._health_lock:
                self.app = self._with_stored_journeys(self.app)
                app = self.app
                await self._place_shards_and_gateways(self._relaunch)
                live = await self._adopt_ingresses()
                if live:
                    self.port = live[0]["port"]
                for index in range(app.runtime.ingress.instances):
                    if index not in self.ingresses:
                        launch = partial(runtime.launch_ingress, app, index, self.port)
                        self.ingresses[index] = await self._relaunch(ingress_name(index), launch)
                starts = (asyncio.wait_for(i.start.remote(), CALL_TIMEOUT) for i in self.ingresses.values())
                addresses = await asyncio.gather(*starts)
                self.urls = sorted({a["url"] for a in addresses})
        except Exception:
            # nobody awaits this call (the supervisor made it to itself): say it here
            log.exception("taking over the running deployment did not finish; the health checks go on")
            raise
        finally:
            self._watch()  # whatever recovery did not finish, the health checks go on with
        log.warning("took over the running deployment: %s", ", ".join(self.urls))
        return {"urls": self.urls, "shards": len(self.shards), "gateways": sorted(self.gateways)}

    async def _adopt_ingresses(self) -> list[dict[str, Any]]:
        """The ingresses still running, kept in `self.ingresses`; returns their addresses."""
        live: list[dict[str, Any]] = []
        for index in range(self.app.runtime.ingress.instances):
            try:
                handle = ray.get_actor(ingress_name(index), namespace=self.app.runtime.ray_namespace)
                address: dict[str, Any] = await asyncio.wait_for(handle.start.remote(), CALL_TIMEOUT)
            except (ValueError, TimeoutError, ray.exceptions.RayError):
                continue  # gone, or not answering: launched (or taken over) below
            self.ingresses[index] = handle
            live.append(address)
        return live

    async def _place_shards_and_gateways(self, place: Callable[[str, Callable[[], Any]], Awaitable[Any]]) -> None:
        """Have `place` (replace or take over) put up every gateway and shard, wait until
        each answers, then have each reach the others now rather than on the first events."""
        app = self.app
        for name in app.gateway_hosts():
            self.gateways[name] = await place(name, partial(runtime.launch_gateway, app, name))
        for index in range(app.runtime.shards):
            self.shards[index] = await place(shard_name(index), partial(runtime.launch_shard, app, index))
        await asyncio.gather(
            *(g.ready.remote() for g in self.gateways.values()), *(s.ready.remote() for s in self.shards.values())
        )
        missed = await asyncio.gather(
            *(g.connect_peers.remote() for g in self.gateways.values()),
            *(s.connect_peers.remote() for s in self.shards.values()),
        )
        not_reached = sorted({name for names in missed for name in names})
        if not_reached:
            log.warning("peers not reached at start (looked up on first use): %s", ", ".join(not_reached))

    def _watch(self) -> None:
        if self._watch_task is None:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch_health())

    def _with_stored_journeys(self, app: AppConfig) -> AppConfig:
        """The config's journeys plus the older versions this deployment ran before, which
        instances may still be on; the config's versions are stored for next time."""
        store = open_journey_store(app.runtime.storage, app.runtime.data_dir)
        try:
            merged, notes = merge_versions(app, store.load())
            store.save(journey_rows(app))
        finally:
            store.close()
        for note in notes:
            log.warning("%s", note)
        kept = len(merged.journeys) - len(app.journeys)
        if kept:
            log.info("running %d stored journey versions beside the config's", kept)
        return merged

    async def shutdown(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
        for ingress in self.ingresses.values():
            try:
                await asyncio.wait_for(ingress.stop.remote(), CALL_TIMEOUT)
            except Exception as exc:
                log.warning("ingress stop failed: %s", exc)
        for gateway in self.gateways.values():
            try:
                await asyncio.wait_for(gateway.stop.remote(), CALL_TIMEOUT)
            except Exception as exc:
                log.warning("gateway stop failed: %s", exc)
        for handle in [*self.ingresses.values(), *self.shards.values(), *self.gateways.values()]:
            ray.kill(handle, no_restart=True)

    # -- health -----------------------------------------------------------------------

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_PERIOD)
            try:
                await self.check_health()
            except Exception:  # a control loop logs and goes on
                log.exception("health check failed")

    async def check_health(self) -> list[str]:
        """Ping every actor; re-create those that are gone for good. Returns what was re-created.

        One check at a time: the periodic watch and an operator's call must not both
        re-create the same actor."""
        async with self._health_lock:
            return await self._check_health()

    async def _check_health(self) -> list[str]:
        recreated: list[str] = []
        app = self.app
        for index, handle in list(self.shards.items()):
            if not await self._alive(handle.ready.remote()):
                name = shard_name(index)
                self.shards[index] = await self._relaunch(name, partial(runtime.launch_shard, app, index))
                if _actor_id(self.shards[index]) != _actor_id(handle):
                    recreated.append(name)  # not when the name's holder was only restarting
        for name, handle in list(self.gateways.items()):
            if not await self._alive(handle.ready.remote()):
                self.gateways[name] = await self._relaunch(name, partial(runtime.launch_gateway, app, name))
                if _actor_id(self.gateways[name]) != _actor_id(handle):
                    recreated.append(name)
        for index, handle in list(self.ingresses.items()):
            # start() is idempotent; after Ray restarted the process it binds the port again
            if not await self._alive(handle.start.remote()):
                name = ingress_name(index)
                launch = partial(runtime.launch_ingress, app, index, self.port)
                self.ingresses[index] = await self._relaunch(name, launch)
                await self._alive(self.ingresses[index].start.remote())
                if _actor_id(self.ingresses[index]) != _actor_id(handle):
                    recreated.append(name)
        for name in recreated:
            self.restarts[name] = self.restarts.get(name, 0) + 1
            log.warning("re-created %s", name)
        return recreated

    async def _replace(self, name: str, launch: Callable[[], Any]) -> Any:
        """Launch `name`, first stopping an actor of that name left from an earlier run."""
        try:
            leftover = ray.get_actor(name, namespace=self.app.runtime.ray_namespace)
        except ValueError:
            return launch()
        log.warning("replacing %s, left running by an earlier supervisor", name)
        ray.kill(leftover, no_restart=True)
        return await self._relaunch(name, launch, adopt=False)

    async def _relaunch(self, name: str, launch: Callable[[], Any], *, adopt: bool = True) -> Any:
        """Launch `name` again. Ray releases a dead actor's name a moment after its death, so
        a launch refused with "already taken" is retried; a live holder of the name is kept."""
        for _ in range(RELAUNCH_ATTEMPTS):
            try:
                return launch()
            except ValueError as exc:
                if "already taken" not in str(exc):
                    raise
            try:
                holder = ray.get_actor(name, namespace=self.app.runtime.ray_namespace)
            except ValueError:
                holder = None  # released meanwhile: launch again
            if adopt and holder is not None and await self._alive(holder.ready.remote()):
                return holder
            await asyncio.sleep(RELAUNCH_PAUSE)
        raise RuntimeError(f"could not re-create {name}: its name stayed taken")

    @staticmethod
    async def _alive(ref: Any) -> bool:
        try:
            await asyncio.wait_for(ref, CALL_TIMEOUT)
            return True
        except ray.exceptions.RayActorError:
            return False
        except (TimeoutError, ray.exceptions.RayError) as exc:
            log.warning("health check: %s", exc)
            return True  # slow or restarting: Ray is on it; do not start a twin

    # -- status -----------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        shards = await self._gather({shard_name(i): h.status.remote() for i, h in self.shards.items()})
        gateway_actors = await self._gather({name: h.stats.remote() for name, h in self.gateways.items()})
        ingresses = await self._gather({ingress_name(i): h.stats.remote() for i, h in self.ingresses.items()})
        return {
            "urls": self.urls,
            "uptime": time.time() - self.started_at,
            "partitions": self.app.runtime.partitions,
            "journeys": [
                {"id": j.id, "version": j.version, "status": j.status.value, "nodes": len(j.nodes)}
                for j in self.app.journeys
            ],
            "shards": shards,
            "gateways": self._channel_stats(gateway_actors),
            "gateway_actors": [{k: v for k, v in g.items() if k != "channels"} for g in gateway_actors],
            "ingresses": ingresses,
            "restarts": self.restarts,
            # True when Ray restarted the supervisor and it took the running actors over
            "supervisor_restarted": self.restarted,
        }

    def _channel_stats(self, gateway_actors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each channel's figures, with the name of the actor serving it; a channel whose
        actor did not answer is listed with that actor's error."""
        hosts = self.app.gateway_hosts()
        channels = []
        for actor in gateway_actors:
            if "error" in actor:
                error = actor["error"]
                channels += [{"name": c, "gateway": actor["name"], "error": error} for c in hosts[actor["name"]]]
            else:
                channels += [{**c, "gateway": actor["name"]} for c in actor["channels"]]
        return channels

    @staticmethod
    async def _gather(calls: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for name, ref in calls.items():
            try:
                out.append(await asyncio.wait_for(ref, CALL_TIMEOUT))
            except Exception as exc:
                out.append({"name": name, "error": str(exc).splitlines()[0][:200]})
        return out

    async def advance_clock(self, seconds: float) -> list[float]:
        """Time travel for tests and rehearsals: move every shard's clock forward."""
        return list(await asyncio.gather(*(h.advance_clock.remote(seconds) for h in self.shards.values())))
