"""`itinerary load` against a stand-in ingress (a real aiohttp server, no Ray).

The stand-in answers 202 {"accepted": n, "rejected": []}, and 429 to every tenth request.
For the whole-tool test it also plays the gateways: for each accepted request it delivers
one webhook and one e-mail through the real providers (which add X-Itinerary-Event-Time)
to the load tool's receivers, so event-to-delivery latency is measured end to end.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr
from rich.console import Console

from itinerary.channels.email import EmailProvider
from itinerary.channels.webhook import WebhookProvider
from itinerary.config.channels import EmailChannelConfig, WebhookChannelConfig
from itinerary.load.main import DEMO_CONFIG, LoadOptions, run_load_async, run_sender
from itinerary.load.report import build_report, write_chart, write_json
from itinerary.receivers import free_port

TOKEN = "load-test-key"
HOOK_TOKEN = "hook-token"


class StandInIngress:
    """POST /v1/events: 429 for every tenth request, else 202 with every event accepted."""

    def __init__(self) -> None:
        self.requests = 0
        self.events = 0
        self.refused = 0
        self.deliver: Any = None  # async (first event, accepted at) -> None, when set
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/events", self._events)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _events(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "unauthorized"}, status=401)
        events = json.loads(await request.read())
        if not events:
            return web.json_response({"accepted": 0, "rejected": []}, status=202)
        self.requests += 1
        if self.requests % 10 == 0:
            self.refused += 1
            return web.json_response({"error": "ingest queue full; retry later"}, status=429)
        self.events += len(events)
        if self.deliver is not None:
            task = asyncio.create_task(self.deliver(events[0], time.time()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response({"accepted": len(events), "rejected": []}, status=202)


@pytest.fixture
async def ingress() -> AsyncIterator[StandInIngress]:
    server = StandInIngress()
    await server.start()
    yield server
    await server.stop()


async def test_open_loop_sender_holds_the_rate_and_writes_the_report(ingress: StandInIngress, tmp_path: Path) -> None:
    options = LoadOptions(
        urls=(ingress.url,),
        token=TOKEN,
        rate=2000,
        duration=3,
        batch=50,
        connections=4,
        profiles=5000,
        zipf=1.1,
        receivers=None,
    )
    schedule = options.make_schedule()
    start = time.time() + 0.2
    stats, traffic = await run_sender(options, 0, start)

    counts = stats.counts
    assert counts["events_offered"] == counts["events_sent"] == 6000 and counts["events_missed"] == 0
    assert stats.statuses["202"] + stats.statuses["429"] == 120 == ingress.requests
    assert counts["accepted"] == ingress.events == 50 * stats.statuses["202"]
    assert counts["events_429"] == 50 * ingress.refused and ingress.refused == 12
    assert counts["events_failed"] == 0 and counts["rejected"] == 0
    assert sum(traffic["kinds"].values()) == 6000

    report = build_report(
        options=options.public(), schedule=schedule, sender=stats, delivery=None, traffic=traffic, start_epoch=start
    )
    assert report["rates"]["sent"] == pytest.approx(2000, rel=0.10)
    assert report["rates"]["achieved"] == pytest.approx(2000 * 0.9, rel=0.10)
    for second in report["timeline"][:3]:
        assert second["sent"] == pytest.approx(2000, rel=0.10)
    assert 0 < report["ingest_latency_ms"]["p50"] < 200

    out = write_json(report, tmp_path / "load.json")
    chart = write_chart(report, tmp_path / "load.png")
    saved = json.loads(out.read_text())
    assert saved["events"]["accepted"] == counts["accepted"] and saved["options"]["token"] == "***"
    assert set(saved["ingest_latency_ms"]) >= {"p50", "p90", "p99", "p99.9", "max"}
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000


async def test_the_whole_tool_with_two_processes_and_end_to_end_latency(
    ingress: StandInIngress, tmp_path: Path
) -> None:
    smtp_port, http_port = free_port(), free_port()
    hook = WebhookProvider(
        WebhookChannelConfig(
            type="webhook",
            url=f"http://127.0.0.1:{http_port}/v1/loyalty/members",
            token=SecretStr(HOOK_TOKEN),
            allow_private=True,
        )
    )
    mail = EmailProvider(EmailChannelConfig(type="email", port=smtp_port, sender="Shop <shop@example.com>"))
    await hook.start()
    sent: list[str] = []

    async def deliver(event: dict[str, Any], accepted_at: float) -> None:
        key = f"Email:{event['identityMap']['Email'][0]['id']}/welcome/1/send_welcome/{len(sent)}"
        sent.append(key)
        request = {"id": key, "event_ts": accepted_at}
        await hook.deliver({**request, "payload": {"member": key}})
        await mail.deliver({**request, "payload": {"to": "ann@example.com", "subject": "Hi", "text": "Welcome"}})

    ingress.deliver = deliver
    options = LoadOptions(
        urls=(ingress.url,),
        token=TOKEN,
        rate=1000,
        duration=2,
        batch=50,
        connections=2,
        processes=2,
        profiles=1000,
        receivers=("127.0.0.1", smtp_port, http_port),
        receiver_token=HOOK_TOKEN,
        config=str(DEMO_CONFIG),
        out=str(tmp_path / "load.json"),
        chart=str(tmp_path / "load.png"),
        drain=1.0,
        progress=False,
    )
    try:
        report = await run_load_async(options, Console(width=140, record=True))
    finally:
        await hook.close()
        await mail.close()

    events = report["events"]
    assert events["offered"] == events["sent"] == 2000
    assert events["accepted"] + events["429"] == 2000 and events["429"] == 200
    assert report["requests"]["202"] == 36 and report["requests"]["429"] == 4
    delivery = report["delivery"]
    assert delivery["messages"] == {"email": 36, "loyalty-api": 36}
    assert delivery["journeys"]["welcome"]["count"] == 72
    assert 0 < delivery["latency_ms"]["p50"] < 1000
    assert delivery.get("without_event_time", 0) == 0 and delivery["duplicates"] == 0
    assert json.loads((tmp_path / "load.json").read_text())["delivery"]["total"] == 72
    assert (tmp_path / "load.png").stat().st_size > 10_000
    cpu = report["client_cpu"]  # both spawned senders and this process (the receivers) measured
    assert cpu["senders_s"] > 0 and cpu["parent_s"] > 0 and 0 < cpu["share_of_machine"] <= 1
    assert cpu["us_per_event"] == pytest.approx((cpu["senders_s"] + cpu["parent_s"]) / 2000 * 1e6, rel=0.01)
    # The whole machine was measured too; it was at least as busy as this client alone kept it.
    machine = report["machine_cpu"]
    assert cpu["share_of_machine"] * 0.9 <= machine["busy"] <= 1 and 0 <= machine["steal"] <= 1
    # ... and second by second: a 2-s run has at least its first whole second measured.
    by_second = {row["t"]: row["machine_busy"] for row in report["timeline"] if "machine_busy" in row}
    assert 0 in by_second and all(0 <= busy <= 1 for busy in by_second.values()), by_second
