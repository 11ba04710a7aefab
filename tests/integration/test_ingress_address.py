"""An ingress listening on every interface reports this node's address, not a loopback:
on a cluster its URL is what a load balancer or `itinerary load --url` must be given."""

from __future__ import annotations

from typing import Any

from tests.integration.system import deployment_variant, http


def listen_everywhere(data: dict[str, Any]) -> None:
    data["runtime"]["ingress"]["host"] = "0.0.0.0"


def test_an_ingress_on_all_interfaces_reports_the_node_address(ray_session: Any, receivers: dict[str, Any]) -> None:
    node_ip = ray_session.util.get_node_ip_address()
    with deployment_variant(ray_session, receivers, "all-interfaces", listen_everywhere) as system:
        url = system["url"]
        assert url.startswith(f"http://{node_ip}:"), url
        code, status, _ = http("GET", f"{url}/v1/status")  # reachable at that address
        assert code == 200 and status["urls"] == [url]
        port = url.rsplit(":", 1)[1]
        assert http("GET", f"http://127.0.0.1:{port}/healthz")[0] == 200  # and on the loopback
