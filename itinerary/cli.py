"""The `itinerary` command: up, down, send, status, demo, bench, load."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from itinerary.errors import ConfigError

DEFAULT_URL = os.environ.get("ITINERARY_URL", "http://127.0.0.1:8080")
TOKEN_HELP = "API key sent as Authorization: Bearer (default: $ITINERARY_TOKEN)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # its own options: hand them over untouched
        from itinerary.bench import main as bench_main

        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="itinerary", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the system and run until Ctrl-C")
    up.add_argument("--config", required=True, help="YAML config file")
    up.add_argument(
        "--address", default=None, help="Ray cluster to join: 'auto' or 'ray://host:10001' (default: a new local Ray)"
    )
    up.add_argument(
        "--detach",
        action="store_true",
        help="on a cluster (--address): leave the deployment running after this command returns; "
        "stop it with `itinerary down`",
    )

    down = sub.add_parser("down", help="stop a deployment left running on a cluster (`up --detach`, or a lost `up`)")
    down.add_argument("--address", default="auto", help="Ray cluster: 'auto' or 'ray://host:10001' (default: auto)")
    down.add_argument("--namespace", default="itinerary", help="the deployment's runtime.ray_namespace")

    send = sub.add_parser("send", help="POST events from a JSON file (one event or an array)")
    send.add_argument("file")
    send.add_argument("--url", default=DEFAULT_URL)
    send.add_argument("--token", default=os.environ.get("ITINERARY_TOKEN"), help=TOKEN_HELP + "; an ingest key")

    status = sub.add_parser("status", help="show shards, journeys and gateways as tables")
    status.add_argument("--url", default=DEFAULT_URL)
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.add_argument("--token", default=os.environ.get("ITINERARY_TOKEN"), help=TOKEN_HELP + "; an admin key")

    demo = sub.add_parser("demo", help="run the end-to-end demo on a local Ray and print a summary")
    demo.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "config/examples/demo.yaml"))
    demo.add_argument("--profiles", type=int, default=3000)

    sub.add_parser("bench", help="pipeline benchmark; `itinerary bench --help` for its options")

    load = sub.add_parser(
        "load",
        help="open-loop load test of a running deployment (see docs/loadtest.md)",
        description="Send realistic XDM traffic at a target rate, whatever the server does; report achieved rate, "
        "ingest latency from the scheduled send time, and event-to-delivery latency per channel and journey.",
    )
    load.add_argument(
        "--url",
        action="append",
        default=None,
        help=f"ingress base URL; repeat or comma-separate (default {DEFAULT_URL})",
    )
    load.add_argument(
        "--token",
        default=None,
        help="ingest key (default: $ITINERARY_TOKEN, else $ITINERARY_INGEST_KEY, else `make up`'s 'ingest-key')",
    )
    load.add_argument("--rate", default="1000", help="target events per second, e.g. 20000 or 20k (default 1000)")
    load.add_argument("--duration", default="30", help="seconds of sending, e.g. 30 or 2m (default 30)")
    load.add_argument(
        "--schedule",
        default="constant",
        help="constant | step:5000,10000,20000@10s | ramp:1000..20000 (default constant)",
    )
    load.add_argument("--profiles", type=int, default=100_000, help="distinct customer profiles (default 100,000)")
    load.add_argument(
        "--zipf", type=float, default=None, help="Zipf exponent of profile choice, e.g. 1.1 (default uniform)"
    )
    load.add_argument(
        "--new-customers",
        type=float,
        default=0.05,
        help="share of profiles that register on their first visit; the rest are returning customers (default 0.05)",
    )
    load.add_argument("--batch", type=int, default=100, help="events per request (default 100)")
    load.add_argument("--connections", type=int, default=16, help="concurrent connections per process (default 16)")
    load.add_argument("--processes", type=int, default=1, help="sender processes, each sending rate/K (default 1)")
    load.add_argument("--closed-loop", action="store_true", help="send each batch when the previous answer arrives")
    load.add_argument("--content-type", choices=("json", "msgpack"), default="json")
    where = load.add_mutually_exclusive_group()
    where.add_argument(
        "--receivers",
        default="127.0.0.1:2525:8091",
        metavar="HOST:SMTP_PORT:HTTP_PORT",
        help="where the built-in receivers listen (default: the demo config's 127.0.0.1:2525:8091)",
    )
    where.add_argument("--no-receivers", action="store_true", help="measure ingest only")
    load.add_argument(
        "--receiver-token",
        default=os.environ.get("ITINERARY_DEMO_TOKEN", "demo-token"),
        help="bearer token the HTTP receiver expects (default: $ITINERARY_DEMO_TOKEN, else `make up`'s 'demo-token')",
    )
    load.add_argument(
        "--admin-token",
        default=os.environ.get("ITINERARY_ADMIN_KEY", "admin-key"),
        help="admin key to read the gateways' queues from /v1/status ('' to skip; default: $ITINERARY_ADMIN_KEY, "
        "else `make up`'s 'admin-key')",
    )
    load.add_argument("--config", default=None, help="config whose channel names label the deliveries (default: demo)")
    load.add_argument("--out", default="results/load.json", help="JSON report ('' for none)")
    load.add_argument("--chart", default="results/load.png", help="PNG chart ('' for none)")
    load.add_argument("--drain", type=float, default=15.0, help="max seconds to wait for deliveries after sending")
    load.add_argument("--max-backlog", type=int, default=None, help="due batches a process may queue (default 10 s)")
    load.add_argument(
        "--seed",
        type=int,
        default=None,
        help="replays a run's traffic and profiles (default: a new one per run, so each run meets new customers)",
    )
    load.add_argument("--no-progress", action="store_true", help="no live progress bar")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command
    try:
        if args.command == "up":
            return cmd_up(args.config, args.address, detach=args.detach)
        if args.command == "down":
            return cmd_down(args.address, args.namespace)
        if args.command == "send":
            return cmd_send(args.file, args.url, args.token)
        if args.command == "status":
            return cmd_status(args.url, args.json, args.token)
        if args.command == "demo":
            from itinerary.demo import run_demo

            return run_demo(args.config, profiles=args.profiles)
        if args.command == "load":
            return cmd_load(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command}")
    return 2


def cmd_up(config_file: str, address: str | None, *, detach: bool = False) -> int:
    import ray

    from itinerary.actors.runtime import launch_supervisor, start_local_ray
    from itinerary.config.loader import load_config

    app = load_config(config_file)
    address = address or app.runtime.ray_address
    if detach and address is None:
        # a Ray this command starts stops when it returns: nothing would be left running
        print("--detach needs a running cluster: give --address (or runtime.ray_address)", file=sys.stderr)
        return 2
    context = (
        start_local_ray(app, dashboard=True, quiet=False)
        if address is None
        else ray.init(address=address, namespace=app.runtime.ray_namespace)
    )
    try:
        supervisor = launch_supervisor(app, config_file, detached=detach)
    except ValueError as exc:
        if "already taken" not in str(exc):
            raise
        namespace = app.runtime.ray_namespace
        print(
            f"a deployment is already running in Ray namespace {namespace!r}: stop it with "
            f"`itinerary down --address {address} --namespace {namespace}`, or give this one another "
            "runtime.ray_namespace",
            file=sys.stderr,
        )
        ray.shutdown()
        return 2
    info = ray.get(supervisor.start.remote())
    dashboard = getattr(context, "dashboard_url", None)
    for url in info["urls"]:
        print(f"ingest:    {url}/v1/events")
        print(f"status:    {url}/v1/status   (itinerary status --url {url})")
    security = app.runtime.security
    if security.ingest_keys or security.admin_keys:
        print("API keys are on: send them with --token or $ITINERARY_TOKEN (status needs an admin key)")
    if dashboard:
        print(f"dashboard: http://{dashboard}")
    if detach:
        namespace = app.runtime.ray_namespace
        print(f"shards: {info['shards']}  gateways: {', '.join(info['gateways'])}  (detached)")
        print(f"stop it with: itinerary down --address {address} --namespace {namespace}", flush=True)
        return 0
    print(f"shards: {info['shards']}  gateways: {', '.join(info['gateways'])}  (Ctrl-C to stop)", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    print("shutting down...", flush=True)
    try:
        ray.get(supervisor.shutdown.remote(), timeout=30)
    finally:
        ray.kill(supervisor, no_restart=True)
        ray.shutdown()
    return 0


def cmd_down(address: str, namespace: str) -> int:
    """Stop the deployment in `namespace`: its supervisor shuts the data plane down; actors
    left without a supervisor are stopped by name."""
    import ray

    from itinerary.actors.names import SUPERVISOR, is_deployment_actor

    ray.init(address=address, namespace=namespace)
    try:
        names = sorted(
            a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == namespace
        )
        ours = [name for name in names if is_deployment_actor(name)]
        if not ours:
            print(f"no deployment running in namespace {namespace!r}", file=sys.stderr)
            return 1
        supervisor = _named(SUPERVISOR, namespace)
        if supervisor is not None:
            try:
                ray.get(supervisor.shutdown.remote(), timeout=60)
            except ray.exceptions.RayError as exc:  # a dead or stuck supervisor: stop by name below
                print(f"the supervisor did not shut down cleanly: {exc}", file=sys.stderr)
        for name in ours:
            handle = _named(name, namespace)
            if handle is not None:
                ray.kill(handle, no_restart=True)
        print(f"stopped {len(ours)} actors in namespace {namespace!r}: {', '.join(ours)}")
        return 0
    finally:
        ray.shutdown()


def _named(name: str, namespace: str) -> Any:
    import ray

    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def _http(method: str, url: str, body: bytes | None = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"} if body else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def cmd_send(file: str, url: str, token: str | None = None) -> int:
    body = Path(file).read_bytes()
    try:
        status, answer = _http("POST", f"{url}/v1/events", body, token)
    except urllib.error.URLError as exc:
        print(f"cannot reach {url}: {exc.reason}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0 if status == 202 else 1


def cmd_status(url: str, raw: bool, token: str | None = None) -> int:
    from itinerary.report import render_status

    try:
        code, status = _http("GET", f"{url}/v1/status", token=token)
    except urllib.error.URLError as exc:
        print(f"cannot reach {url}: {exc.reason}", file=sys.stderr)
        return 1
    if code != 200:
        print(f"status answered {code}: {status}", file=sys.stderr)
        return 1
    if raw:
        print(json.dumps(status, indent=2))
    else:
        render_status(status)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from itinerary.load.main import DEMO_CONFIG, LoadOptions, default_token, run_load
    from itinerary.load.schedule import parse_duration, parse_rate

    logging.getLogger().setLevel(logging.WARNING)  # the progress bar and tables say it all
    try:
        receivers = None if args.no_receivers else _host_ports(args.receivers)
        options = LoadOptions(
            urls=tuple(u.strip() for arg in (args.url or [DEFAULT_URL]) for u in arg.split(",") if u.strip()),
            token=args.token or default_token(),
            rate=parse_rate(args.rate),
            duration=parse_duration(args.duration),
            schedule=args.schedule,
            profiles=args.profiles,
            zipf=args.zipf,
            new_customers=args.new_customers,
            batch=args.batch,
            connections=args.connections,
            processes=args.processes,
            closed_loop=args.closed_loop,
            content_type=args.content_type,
            receivers=receivers,
            receiver_token=args.receiver_token or None,
            admin_token=args.admin_token or None,
            config=args.config or str(DEMO_CONFIG),
            out=args.out or None,
            chart=args.chart or None,
            seed=args.seed if args.seed is not None else secrets.randbelow(100_000),
            max_backlog=args.max_backlog,
            drain=args.drain,
            progress=not args.no_progress,
        )
    except ValueError as exc:
        print(f"itinerary load: {exc}", file=sys.stderr)
        return 2
    return run_load(options)


def _host_ports(text: str) -> tuple[str, int, int]:
    host, _, ports = text.rpartition(":")
    host, _, smtp = host.rpartition(":")
    try:
        return host or "127.0.0.1", int(smtp), int(ports)
    except ValueError:
        raise ValueError(f"--receivers {text!r}: expected HOST:SMTP_PORT:HTTP_PORT, e.g. 127.0.0.1:2525:8091") from None


if __name__ == "__main__":
    sys.exit(main())
