"""Webhook URLs must reach the public internet only (SSRF): every address a host resolves to is
checked, at registration and again before each delivery, which then connects to a checked address.
"""

import ipaddress
import socket

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeUrl(ValueError):
    """The URL is not one deliveries may go to; the message says why."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address forwards to (mapped, 6to4 or NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private, link-local (cloud metadata), shared,
    reserved or multicast, also when wrapped in an IPv6 address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and not is_public(embedded):
            return False
    return address.is_global and not address.is_multicast


def resolve(url: str, *, allow_private: bool) -> list[IPAddress]:
    """The addresses to connect to for `url`; raises UnsafeUrl unless every one is allowed."""
    target = httpx.URL(url)
    if target.scheme not in {"http", "https"}:
        raise UnsafeUrl("Only http and https URLs receive deliveries.")
    host = target.raw_host.decode("ascii")
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"The host '{host}' does not resolve.") from exc
    addresses = list(
        dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found)
    )
    refused = [address for address in addresses if not is_public(address)]
    if refused and not allow_private:
        raise UnsafeUrl(
            f"The host '{host}' resolves to {refused[0]}, which is not a public address."
        )
    return addresses
