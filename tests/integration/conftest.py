"""One local Ray per test session, one deployment per module, real receivers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from itinerary.receivers import SmtpReceiver, WebhookReceiver
from tests.integration.system import TOKEN, BackgroundLoop, test_config


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def background() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def receivers(background: BackgroundLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The module's receivers, and `data_root`: where its deployments keep their data."""
    smtp = SmtpReceiver()
    hooks = WebhookReceiver(token=TOKEN)
    flaky = WebhookReceiver(token=TOKEN)
    for receiver in (smtp, hooks, flaky):
        background.run(receiver.start())
    data_root = str(tmp_path_factory.mktemp("shard-data"))
    yield {"smtp": smtp, "hooks": hooks, "flaky": flaky, "data_root": data_root}
    for receiver in (smtp, hooks, flaky):
        background.run(receiver.stop())


@pytest.fixture(scope="module")
def system(ray_session: Any, receivers: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A running deployment: supervisor, 2 shards, 4 gateways, 1 ingress."""
    from itinerary.actors.runtime import launch_supervisor

    app = test_config(receivers["smtp"], receivers["hooks"], receivers["flaky"], receivers["data_root"])
    supervisor = launch_supervisor(app, "test-config")
    info = ray_session.get(supervisor.start.remote(), timeout=120)
    yield {"url": info["urls"][0], "supervisor": supervisor, "app": app, **receivers}
    ray_session.get(supervisor.shutdown.remote(), timeout=60)
    ray_session.kill(supervisor, no_restart=True)
