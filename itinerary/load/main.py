"""`itinerary load`: orchestration of a run.

The parent process checks the deployment answers (and takes the token), starts the
built-in receivers, starts K sender processes and gives them one common start time, shows
live progress from their snapshots, waits for the deliveries to settle, then merges the
processes' histograms and counters and writes the report (tables, JSON, PNG).

Each sender process owns 1/K of the batches of the schedule (batches i, i + K, ...) and
1/K of the profiles, so the processes together follow the schedule exactly and every
profile's events leave from one process, in order. Processes are spawned (not forked):
the parent already runs an event loop with open sockets (the receivers).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue
import random
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from hdrh.histogram import HdrHistogram
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

import itinerary.config
from itinerary.actors.tuning import periodic_collection
from itinerary.aio import run
from itinerary.load.machine import MachineWatch, machine_cpu, read_cpu_times
from itinerary.load.receiver import ChannelNames, DeliveryReceivers
from itinerary.load.report import build_report, render, write_chart, write_json
from itinerary.load.schedule import Schedule, parse_schedule
from itinerary.load.sender import ClosedLoopSender, HttpTransport, OpenLoopSender, Transport
from itinerary.load.stats import DeliveryStats, SenderStats, decode_histogram, new_histogram
from itinerary.load.traffic import CONTENT_TYPES, EventEncoder, JourneyTraffic, ProfileChooser

__all__ = ["DEMO_CONFIG", "LoadOptions", "run_load", "run_load_async", "run_sender"]

# itinerary.config is the top-level config/ package, installed under itinerary.
DEMO_CONFIG = Path(itinerary.config.__file__).resolve().parent / "examples" / "demo.yaml"
START_DELAY = 0.5  # seconds between "all senders ready" and the common start time
READY_TIMEOUT = 60.0  # seconds for the sender processes to start
PROGRESS_EVERY = 1.0  # seconds between a sender's progress snapshots
RATE_WINDOW = 3.0  # seconds of snapshots the live rate is computed over
LINE_EVERY = 1.0  # seconds between two computations of the live progress line
CIRCUIT_WAIT = 45.0  # seconds to wait for open gateway circuits before sending (they open for 30 s)
QUIET = 4.0  # seconds without a delivery that end the drain (the demo's longest wait is 3 s)


@dataclass(frozen=True)
class LoadOptions:
    """Everything a run needs; the CLI builds one from its arguments."""

    urls: tuple[str, ...] = ("http://127.0.0.1:8080",)
    token: str | None = None
    rate: float = 1000.0
    duration: float = 30.0
    schedule: str = "constant"
    profiles: int = 100_000
    zipf: float | None = None
    new_customers: float = 0.05  # share of profiles that register on their first visit
    batch: int = 100
    connections: int = 16
    processes: int = 1
    closed_loop: bool = False
    content_type: str = "json"
    receivers: tuple[str, int, int] | None = ("127.0.0.1", 2525, 8091)  # host, SMTP port, HTTP port
    receiver_token: str | None = None  # the bearer token the HTTP receiver expects
    admin_token: str | None = None  # reads /v1/status for the gateways' figures; None: skip
    config: str | None = str(DEMO_CONFIG)  # names the channels in the report
    out: str | None = "results/load.json"
    chart: str | None = "results/load.png"
    seed: int = 0  # who does what, and which profiles: profile numbers start at seed * profiles
    max_backlog: int | None = None  # batches per process; default: 10 s of the peak rate
    drain: float = 15.0  # at most this many seconds to wait for deliveries after sending
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("give at least one --url")
        for name in ("batch", "connections", "processes", "profiles"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1")
        if self.content_type not in CONTENT_TYPES:
            raise ValueError(f"--content-type must be one of {', '.join(CONTENT_TYPES)}")
        if self.profiles < self.processes:
            raise ValueError("--profiles must be at least --processes")
        if self.zipf is not None and self.zipf < 0:
            raise ValueError("--zipf must be >= 0 (0: uniform)")
        if not 0.0 <= self.new_customers <= 1.0:
            raise ValueError("--new-customers must be between 0 and 1")
        self.make_schedule()  # fails early on a bad --schedule

    def make_schedule(self) -> Schedule:
        return parse_schedule(self.schedule, self.rate, self.duration)

    def backlog_bound(self, schedule: Schedule) -> int:
        """Due batches a sender process may hold before it counts new ones as missed."""
        if self.max_backlog is not None:
            return self.max_backlog
        return max(100, int(schedule.peak_rate * 10 / self.batch / self.processes))

    def public(self) -> dict[str, Any]:
        """The options for the report, without the secrets."""
        out = asdict(self)
        out["token"] = "***" if self.token else None
        out["receiver_token"] = "***" if self.receiver_token else None
        out["admin_token"] = "***" if self.admin_token else None
        out["urls"] = list(self.urls)
        return out


# -- one sender -------------------------------------------------------------------------------


def make_traffic(options: LoadOptions, process: int) -> JourneyTraffic:
    """The traffic of sender `process`: its share of the profiles, its own seed.

    The run's population is profiles seed * N .. seed * N + N - 1, so runs with different
    seeds (the CLI draws one per run) meet customers the deployment has not seen, and a
    run's traffic can be replayed with its --seed (event ids are always new).
    """
    seed = options.seed * 1000 + process
    zipf = options.zipf or None  # 0 means uniform
    chooser = ProfileChooser(
        options.profiles,
        random.Random(seed),
        zipf=zipf,
        process=process,
        processes=options.processes,
        first=options.seed * options.profiles,
    )
    encoder = EventEncoder("msgpack" if options.content_type == "msgpack" else "json", seed=seed)
    encoder.warm()
    return JourneyTraffic(chooser, encoder, seed=seed, new_customers=options.new_customers)


async def run_sender(
    options: LoadOptions,
    process: int,
    start_epoch: float,
    *,
    traffic: JourneyTraffic | None = None,
    transport: Transport | None = None,
    stop: Callable[[], bool] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[SenderStats, dict[str, Any]]:
    """Run sender `process` of `options.processes` from `start_epoch` to the end.

    Returns its stats and a summary of the traffic it made. `on_progress(snapshot)` is
    called every PROGRESS_EVERY seconds; `stop()` ends the run early when it holds.
    """
    schedule = options.make_schedule()
    traffic = traffic or make_traffic(options, process)

    def make_body(events: int, scheduled: float) -> bytes:
        return traffic.body(events, start_epoch + scheduled)

    async with contextlib.AsyncExitStack() as stack:
        if transport is None:
            transport = await stack.enter_async_context(
                HttpTransport(
                    list(options.urls), options.token, CONTENT_TYPES[options.content_type], options.connections
                )
            )
        sender: OpenLoopSender | ClosedLoopSender
        if options.closed_loop:
            sender = ClosedLoopSender(
                make_body,
                transport,
                batch=options.batch,
                connections=options.connections,
                duration=schedule.duration,
                stop=stop,
            )
        else:
            sender = OpenLoopSender(
                schedule.plan(options.batch, process, options.processes),
                make_body,
                transport,
                connections=options.connections,
                max_backlog=options.backlog_bound(schedule),
                stop=stop,
            )
        # The common start in this process's monotonic clock (both read back to back), so
        # every process's schedule counts from the same instant even if this one is late.
        origin = time.monotonic() + (start_epoch - time.time())
        delay = origin - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        reporter = asyncio.create_task(_report_progress(sender.stats, on_progress)) if on_progress else None
        await stack.enter_async_context(periodic_collection())
        cpu_before = time.process_time()
        try:
            stats = await sender.run(origin)
            stats.cpu_seconds = time.process_time() - cpu_before
        finally:
            if reporter is not None:
                reporter.cancel()
                await asyncio.gather(reporter, return_exceptions=True)
    summary = {"kinds": dict(traffic.kinds), "sessions": traffic.sessions, "templates": traffic.encoder.templates}
    return stats, summary


async def _report_progress(stats: SenderStats, on_progress: Callable[[dict[str, Any]], None]) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        on_progress(stats.snapshot())


def _sender_process(
    options: LoadOptions,
    process: int,
    start_at: Any,
    go: Any,
    stop: Any,
    results: Any,
) -> None:
    """Entry point of a spawned sender process: report ready, wait for the start, run."""
    # Ctrl-C reaches the whole process group: the parent decides, through `stop`.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        traffic = make_traffic(options, process)  # templates and Zipf tables: before the start
        results.put(("ready", process, None))
        go.wait()
        stats, summary = run(
            run_sender(
                options,
                process,
                start_at.value,
                traffic=traffic,
                stop=stop.is_set,
                on_progress=lambda snapshot: results.put(("progress", process, snapshot)),
            )
        )
        results.put(("done", process, {"stats": stats.to_wire(), "traffic": summary}))
    except BaseException:
        results.put(("error", process, traceback.format_exc()))


# -- the run ----------------------------------------------------------------------------------


class LoadError(Exception):
    """The run cannot start or went wrong; the message says why."""


async def preflight(options: LoadOptions) -> None:
    """Check each URL answers and takes the token (an empty batch changes nothing)."""
    headers = {"Content-Type": "application/json"}
    if options.token:
        headers["Authorization"] = f"Bearer {options.token}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for url in options.urls:
            try:
                async with session.post(f"{url.rstrip('/')}/v1/events", data=b"[]", headers=headers) as response:
                    status = response.status
                    text = (await response.text())[:200]
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise LoadError(
                    f"cannot reach {url}: {type(exc).__name__}: {exc} -- is the deployment up (`make up`)?"
                ) from None
            if status in (401, 403):
                raise LoadError(
                    f"{url} refused the token ({status}): pass an ingest key with --token or $ITINERARY_TOKEN "
                    "(`make up` uses 'ingest-key' unless $ITINERARY_INGEST_KEY is set)"
                )
            if status >= 500 or status == 404:
                raise LoadError(f"{url}/v1/events answered {status}: {text}")


async def gateway_status(options: LoadOptions) -> dict[str, dict[str, Any]] | None:
    """Each gateway's counters from the first URL's /v1/status; None without an admin key
    or when the deployment does not answer."""
    if not options.admin_token:
        return None
    headers = {"Authorization": f"Bearer {options.admin_token}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"{options.urls[0].rstrip('/')}/v1/status", headers=headers) as response,
        ):
            if response.status != 200:
                return None
            status = await response.json()
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return None
    out: dict[str, dict[str, Any]] = {}
    for gateway in status.get("gateways", []):
        outcomes, rejected = gateway.get("outcomes") or {}, gateway.get("rejected") or {}
        out[gateway["name"]] = {
            "limit": gateway.get("limit"),
            "sent": outcomes.get("sent", 0),
            "failed": outcomes.get("failed", 0),
            "queue_full": rejected.get("queue_full", 0),
            "queued": gateway.get("queue_depth", 0),
            "circuit": (gateway.get("circuit") or {}).get("state"),
            "reopen_in": (gateway.get("circuit") or {}).get("half_open_in_s"),
        }
    return out


async def wait_for_circuits(options: LoadOptions, console: Console) -> None:
    """Wait (at most CIRCUIT_WAIT s) while a gateway's circuit breaker is open.

    A gateway that tried to deliver while nothing listened on the receivers' ports (a
    deployment resuming a previous run's outbox does, as soon as it starts) opens its
    circuit and makes no call for a while (30 s by default). Sending before it lets
    calls through again would measure the breaker, not the deliveries.
    """
    deadline = time.monotonic() + CIRCUIT_WAIT
    announced = False
    while True:
        status = await gateway_status(options)
        shut = {name: g for name, g in (status or {}).items() if g["circuit"] == "open"}
        if not shut:
            if announced:
                console.print("circuits closed or half-open: starting")
            return
        if not announced:
            wait = max((g["reopen_in"] or 0.0) for g in shut.values())
            console.print(
                f"waiting ~{wait:.0f} s: the circuit breaker of {', '.join(sorted(shut))} is open "
                "(they could not reach the receivers before the run); calls resume when it half-opens"
            )
            announced = True
        if time.monotonic() > deadline:
            console.print("[yellow]circuits still open; starting anyway[/yellow]")
            return
        await asyncio.sleep(1.0)


def gateway_changes(
    before: dict[str, dict[str, Any]] | None, after: dict[str, dict[str, Any]] | None
) -> dict[str, dict[str, Any]] | None:
    """What each gateway did between two status readings; the queue as it was at the end."""
    if before is None or after is None:
        return None
    changes = {}
    for name, end in after.items():
        start = before.get(name, {})
        changes[name] = {
            "limit": end["limit"],
            "circuit": end["circuit"],
            **{k: end[k] - start.get(k, 0) for k in ("sent", "failed", "queue_full")},
            "queued": end["queued"],
        }
    return changes


class _Live:
    """The parent's view of the senders while they run: latest snapshots, live figures."""

    def __init__(self, processes: int) -> None:
        self.snapshots: dict[int, dict[str, Any]] = {}
        self.intervals: dict[int, Any] = {}
        self.processes = processes
        self._readings: deque[tuple[float, int]] = deque()  # (time, accepted) over the last RATE_WINDOW s

    def update(self, process: int, snapshot: dict[str, Any]) -> None:
        self.snapshots[process] = snapshot
        self.intervals[process] = decode_histogram(snapshot["interval"])

    def total(self, key: str) -> int:
        return sum(s["counts"].get(key, 0) for s in self.snapshots.values())

    def p99_ms(self) -> float | None:
        merged = new_histogram()
        for histogram in self.intervals.values():
            merged.add(histogram)
        return _p99_ms(merged)

    def line(self, delivery: DeliveryStats | None) -> str:
        now, accepted = time.monotonic(), self.total("accepted")
        readings = self._readings
        readings.append((now, accepted))
        while now - readings[0][0] > RATE_WINDOW:
            readings.popleft()
        # Snapshots come once a second per process: a window of a few smooths their phase.
        span = now - readings[0][0]
        rate = (accepted - readings[0][1]) / span if span > 0.5 else 0.0
        text = (
            f"{rate:>7,.0f} ev/s | accepted {accepted:,} | 429 {self.total('events_429'):,} | "
            f"failed {self.total('events_failed'):,} | missed {self.total('events_missed'):,} | "
            f"p99 {_short_ms(self.p99_ms())}"
        )
        if delivery is not None:
            text += f" | messages {delivery.total:,} p99 {_short_ms(_p99_ms(delivery.overall))}"
        return text


def _p99_ms(histogram: HdrHistogram) -> float | None:
    # One percentile, not percentiles_ms's seven: hdrh walks its buckets in Python for each.
    return histogram.get_value_at_percentile(99.0) / 1000 if histogram.get_total_count() else None


def _short_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f} ms" if value < 10_000 else f"{value / 1000:,.1f} s"


def run_load(options: LoadOptions, console: Console | None = None) -> int:
    """Run the load test; the exit code for the CLI."""
    # Tables and the progress line need room; a pipe or a narrow terminal gets 132 columns.
    console = console or Console(width=max(Console().width, 132))
    try:
        report = run(run_load_async(options, console))
    except LoadError as exc:
        console.print(f"[red]itinerary load:[/red] {exc}")
        return 2
    return 0 if report["events"]["accepted"] else 1


async def run_load_async(options: LoadOptions, console: Console) -> dict[str, Any]:
    """The whole run: preflight, receivers, senders, progress, drain, report. Returns the report."""
    async with periodic_collection():  # the receivers' records pile up; none is cyclic
        return await _run_load(options, console)


async def _run_load(options: LoadOptions, console: Console) -> dict[str, Any]:
    schedule = options.make_schedule()
    await preflight(options)
    gateways_before = await gateway_status(options)
    receivers = await _start_receivers(options, console)
    if receivers is not None:
        await wait_for_circuits(options, console)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    go, stop = context.Event(), context.Event()
    start_at = context.Value("d", 0.0)
    workers = [
        context.Process(
            target=_sender_process,
            args=(options, i, start_at, go, stop, results),
            name=f"itinerary-load-{i}",
            daemon=True,
        )
        for i in range(options.processes)
    ]
    for worker in workers:
        worker.start()
    try:
        await _wait_ready(workers, results)
        start_epoch = time.time() + START_DELAY
        start_at.value = start_epoch
        if receivers is not None:
            receivers.stats.start = start_epoch
        go.set()
        parent_cpu, parent_wall = time.process_time(), time.monotonic()
        machine_before = read_cpu_times()
        mode = "closed loop" if options.closed_loop else schedule.name
        console.print(
            f"sending to {', '.join(options.urls)}: {mode} for {schedule.duration:g} s, "
            f"batch {options.batch}, {options.connections} connections x {options.processes} process(es)"
        )
        # Seconds of the run count from the senders' common start (start_epoch), as the timeline's do.
        watch = MachineWatch(time.monotonic() + (start_epoch - time.time()))
        finished, stopped_at = await _follow(options, schedule, workers, results, receivers, stop, console, watch)
        if receivers is not None:
            await _drain(options, receivers, console)
        client: dict[str, Any] = {
            "parent_s": time.process_time() - parent_cpu,
            "wall_s": time.monotonic() - parent_wall,
            "machine": machine_cpu(machine_before, read_cpu_times()),
            "machine_by_second": watch.busy,
        }
        gateways = gateway_changes(gateways_before, await gateway_status(options))
    finally:
        go.set()  # a sender still waiting for the start must not hang
        stop.set()
        if receivers is not None:
            await receivers.stop()
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    sender = SenderStats.merged([SenderStats.from_wire(done["stats"]) for done in finished.values()])
    kinds: dict[str, int] = {}
    for done in finished.values():
        for kind, n in done["traffic"]["kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + n
    traffic = {
        "profiles": options.profiles,
        "zipf": options.zipf or None,
        "first_profile": options.seed * options.profiles,
        "sessions": sum(done["traffic"]["sessions"] for done in finished.values()),
        "events_by_kind": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
    }
    report = build_report(
        options=options.public(),
        schedule=schedule,
        sender=sender,
        delivery=receivers.stats if receivers is not None else None,
        traffic=traffic,
        start_epoch=start_epoch,
        duplicates=receivers.duplicates if receivers is not None else 0,
        gateways=gateways,
        stopped_after=None if stopped_at is None else max(0.0, stopped_at - start_epoch),
        client=client,
    )
    render(report, console)
    if options.out:
        console.print(f"wrote {write_json(report, options.out)}")
    if options.chart:
        console.print(f"wrote {write_chart(report, options.chart)}")
    return report


async def _start_receivers(options: LoadOptions, console: Console) -> DeliveryReceivers | None:
    if options.receivers is None:
        return None
    host, smtp_port, http_port = options.receivers
    receivers = DeliveryReceivers(
        host,
        smtp_port,
        http_port,
        token=options.receiver_token,
        names=ChannelNames.from_config(options.config),
        stats=DeliveryStats(time.time()),
    )
    try:
        await receivers.start()
    except (OSError, RuntimeError) as exc:
        console.print(
            f"[yellow]receivers not started[/yellow] (SMTP {host}:{smtp_port}, HTTP {host}:{http_port}): {exc}; "
            "event-to-delivery latency will not be measured (use --receivers HOST:SMTP:HTTP or --no-receivers)"
        )
        return None
    console.print(f"receivers: {receivers.describe()} (event-to-delivery latency)")
    return receivers


def _get(results: Any, timeout: float) -> tuple[str, int, Any] | None:
    try:
        return results.get(timeout=timeout)  # type: ignore[no-any-return]
    except queue.Empty:
        return None


async def _wait_ready(workers: list[Any], results: Any) -> None:
    ready: set[int] = set()
    deadline = time.monotonic() + READY_TIMEOUT
    while len(ready) < len(workers):
        message = await asyncio.to_thread(_get, results, 0.2)
        if message is not None:
            kind, process, payload = message
            if kind == "error":
                raise LoadError(f"sender process {process} failed to start:\n{payload}")
            if kind == "ready":
                ready.add(process)
        dead = [w.name for w in workers if w.exitcode is not None]
        if dead:
            raise LoadError(f"sender process(es) exited before the start: {', '.join(dead)}")
        if time.monotonic() > deadline:
            raise LoadError(f"sender processes not ready after {READY_TIMEOUT:g} s")


async def _follow(
    options: LoadOptions,
    schedule: Schedule,
    workers: list[Any],
    results: Any,
    receivers: DeliveryReceivers | None,
    stop: Any,
    console: Console,
    watch: MachineWatch,
) -> tuple[dict[int, dict[str, Any]], float | None]:
    """Show progress until every sender is done, and `watch` the machine meanwhile;
    Ctrl-C stops the senders early.

    Returns the senders' results and, if the run was stopped, when (epoch seconds).
    """
    live = _Live(len(workers))
    finished: dict[int, dict[str, Any]] = {}
    stopped_at: float | None = None
    progress = Progress(
        TextColumn("[bold]load[/bold]"),
        BarColumn(bar_width=16),
        TimeElapsedColumn(),
        TextColumn("{task.fields[line]}"),
        console=console,
        disable=not options.progress,
        transient=False,
    )
    stopping = False
    line, line_at = "starting...", -LINE_EVERY
    with progress:
        task = progress.add_task("load", total=schedule.duration, line=line)
        started = time.monotonic() + START_DELAY
        while len(finished) < len(workers):
            try:
                await asyncio.sleep(0.1)
            except asyncio.CancelledError:
                # Ctrl-C (asyncio.Runner cancels the main task): end the senders, keep what
                # they measured, and report it.
                if stopping:
                    raise
                stopping = True
                stopped_at = time.time()
                stop.set()
                console.print("stopping: waiting for the senders' answers (Ctrl-C again to abandon)...")
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                continue
            watch.sample(time.monotonic())
            while (message := _get(results, 0)) is not None:
                kind, process, payload = message
                if kind == "progress":
                    live.update(process, payload)
                elif kind == "done":
                    finished[process] = payload
                elif kind == "error":
                    raise LoadError(f"sender process {process} failed:\n{payload}")
            for index, worker in enumerate(workers):
                # A process that exited may still have its last message in the pipe: only
                # when the queue is empty is a missing result final.
                if worker.exitcode is not None and index not in finished and results.empty():
                    raise LoadError(f"sender process {index} exited ({worker.exitcode}) without its results")
            # The live figures cost the parent real CPU (merging histograms, a percentile):
            # worked out only when shown, and once a second, as often as snapshots come.
            if options.progress and time.monotonic() - line_at >= LINE_EVERY:
                line, line_at = live.line(receivers.stats if receivers is not None else None), time.monotonic()
            progress.update(task, completed=min(schedule.duration, max(0.0, time.monotonic() - started)), line=line)
    return finished, stopped_at


async def _drain(options: LoadOptions, receivers: DeliveryReceivers, console: Console) -> None:
    """Wait for the messages the run triggered: until QUIET seconds pass without one, at most
    options.drain seconds."""
    if options.drain <= 0:
        return
    console.print(f"waiting up to {options.drain:g} s for deliveries ({QUIET:g} s without one ends it)...")
    deadline = time.monotonic() + options.drain
    seen, last_change = receivers.stats.total, time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        if receivers.stats.total != seen:
            seen, last_change = receivers.stats.total, time.monotonic()
        elif time.monotonic() - last_change >= QUIET:
            break


def default_token(environ: dict[str, str] | None = None) -> str:
    """$ITINERARY_TOKEN, else $ITINERARY_INGEST_KEY, else `make up`'s placeholder key."""
    env = os.environ if environ is None else environ
    return env.get("ITINERARY_TOKEN") or env.get("ITINERARY_INGEST_KEY") or "ingest-key"
