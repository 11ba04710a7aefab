"""The one module that binds actor classes to Ray, with their names and options.

Shards and gateways restart automatically when their process dies (`max_restarts=-1`);
the supervisor re-creates any actor that Ray no longer restarts. The data plane's actors
are detached: Ray kills the actors a process owns when that process dies, and the data
plane must outlive its supervisor (a supervisor on a lost node comes back elsewhere and
takes the running actors over; see `Supervisor.recover`). Actors reserve no CPU
by default (`runtime.actor_num_cpus`) so that a 2-core machine can host them all, and
are spread over the nodes of a cluster.
"""

from __future__ import annotations

from typing import Any

import ray

from itinerary.actors.gateway_actor import GatewayActor
from itinerary.actors.ingress import Ingress
from itinerary.actors.names import SUPERVISOR, ingress_name, shard_name
from itinerary.actors.profile_shard import ProfileShard
from itinerary.config.app import AppConfig

_SHARD = ray.remote(ProfileShard)
_GATEWAY = ray.remote(GatewayActor)
_INGRESS = ray.remote(Ingress)


def _options(app: AppConfig, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": app.runtime.ray_namespace,
        "max_restarts": -1,
        "lifetime": "detached",  # not owned by the supervisor's process: see the module's docstring
        "max_task_retries": 0,  # a retried batch could be applied out of order
        "num_cpus": app.runtime.actor_num_cpus,
        "scheduling_strategy": "SPREAD",
        "max_concurrency": 1000,
    }


def launch_shard(app: AppConfig, index: int) -> Any:
    return _SHARD.options(**_options(app, shard_name(index))).remote(index, app)


def launch_gateway(app: AppConfig, name: str) -> Any:
    """The gateway actor `name`, one of `app.gateway_hosts()`."""
    return _GATEWAY.options(**_options(app, name)).remote(name, app)


def launch_ingress(app: AppConfig, index: int, port: int) -> Any:
    return _INGRESS.options(**_options(app, ingress_name(index))).remote(index, app, port)


def launch_supervisor(app: AppConfig, config_file: str, *, detached: bool = False) -> Any:
    """The supervisor: owned by the calling process (it stops when that process does, and
    the data plane runs on without it), or `detached` (`itinerary up --detach`: it runs on
    until `itinerary down`)."""
    from itinerary.supervisors.supervisor import Supervisor

    options: dict[str, Any] = {
        "name": SUPERVISOR,
        "namespace": app.runtime.ray_namespace,
        "max_restarts": -1,
        "num_cpus": 0,
        "max_concurrency": 100,
    }
    if detached:
        options["lifetime"] = "detached"
    return ray.remote(Supervisor).options(**options).remote(app, config_file)


# For a Ray this process starts itself (demo, bench, `itinerary up` without --address).
# A batch of 1,000 XDM events is about 1 MB: passed inline rather than through the object
# store it skips a copy and the raylet's bookkeeping, a tenth of a core at 20,000 events/s.
# A cluster started with `ray start` takes the same setting from its operator instead
# (`RAY_max_direct_call_object_size`, see docs/operations.md).
LOCAL_RAY_SYSTEM_CONFIG: dict[str, int] = {"max_direct_call_object_size": 4 * 1024 * 1024}


def start_local_ray(app: AppConfig, *, dashboard: bool, num_cpus: int | None = None, quiet: bool = True) -> Any:
    """Start a Ray on this machine for `app` (demo, bench, `itinerary up` without --address)."""
    return ray.init(
        namespace=app.runtime.ray_namespace,
        num_cpus=num_cpus,
        include_dashboard=dashboard,
        log_to_driver=False,
        configure_logging=not quiet,
        _system_config=LOCAL_RAY_SYSTEM_CONFIG,
    )
