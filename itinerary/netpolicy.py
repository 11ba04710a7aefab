"""Which destinations a custom action (webhook) may call: no loopback, link-local, cloud
metadata or unspecified addresses unless the channel says `allow_private: true`.

A webhook URL comes from configuration that may be written by someone who should not
reach the machine's own services or the cloud provider's metadata endpoint (which hands
out credentials). Pure functions, no I/O: the config checks the URL's host when it is
loaded, and the webhook provider checks every address a host name resolves to.
"""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Checked in order: the metadata addresses sit inside the link-local range and deserve
# the more telling reason.
_REFUSED_NETWORKS: tuple[tuple[str, tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]], ...] = (
    (
        "cloud metadata",
        (ipaddress.ip_network("169.254.169.254/32"), ipaddress.ip_network("fd00:ec2::254/128")),
    ),
    ("loopback", (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))),
    ("link-local", (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))),
    # Connecting to 0.0.0.0 (or ::) reaches the local machine on Linux.
    ("unspecified", (ipaddress.ip_network("0.0.0.0/8"), ipaddress.ip_network("::/128"))),
)

_REFUSED_NAMES = {
    "localhost": "loopback",
    "localhost.localdomain": "loopback",
    "ip6-localhost": "loopback",
    "ip6-loopback": "loopback",
    "metadata.google.internal": "cloud metadata",
}


def parse_address(text: str) -> IPAddress | None:
    """The IP address `text` denotes, or None for a host name.

    Accepts a zone suffix (`fe80::1%eth0`) and the legacy IPv4 spellings that the C
    resolver maps onto an address (`127.1`, `2130706433`, `0x7f.0.0.1`).
    """
    text = text.strip().strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text and all(ch in "0123456789abcdefxABCDEFX." for ch in text) and text[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def address_refusal(address: str | IPAddress) -> str | None:
    """Why connecting to this IP address is refused by default (e.g. "loopback"), or None."""
    ip = parse_address(address) if isinstance(address, str) else address
    if ip is None:
        raise ValueError(f"not an IP address: {address!r}")
    # ::ffff:127.0.0.1 reaches 127.0.0.1: judge the IPv4 address it carries.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for reason, networks in _REFUSED_NETWORKS:
        if any(ip.version == net.version and ip in net for net in networks):
            return reason
    return None


def host_refusal(host: str) -> str | None:
    """Why a URL host (name or address) is refused by default, judged without DNS, or None.

    A name that is not refused here may still resolve to a refused address: the webhook
    provider checks the resolved addresses as well.
    """
    ip = parse_address(host)
    if ip is not None:
        return address_refusal(ip)
    name = host.strip().rstrip(".").lower()
    if name in _REFUSED_NAMES:
        return _REFUSED_NAMES[name]
    if name.endswith(".localhost"):  # RFC 6761: always the loopback interface
        return "loopback"
    return None
