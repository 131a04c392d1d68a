"""Where the service may send a request of its own (webhooks): public addresses only.

A webhook URL is chosen by an API client, so without a guard the service would POST into its own network
(``http://169.254.169.254/`` cloud metadata, ``127.0.0.1``, ``10.x``). Every address that is not globally
routable is refused (loopback, link-local, private, shared, reserved, multicast, unspecified, and the
same in IPv4-mapped and 6to4 IPv6), unless an operator's allow-list (``IAMSIGN_WEBHOOK_ALLOWED_NETWORKS``) holds it.
The check runs when the URL is given and again at each delivery, after DNS resolution, and the delivery
connects to the very address that was checked (a name re-resolving elsewhere cannot slip through).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

__all__ = ["EgressRefused", "PinnedTarget", "check_url", "checked_webhook_url", "networks", "pin", "refusal"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressRefused(ValueError):
    """The URL may not be reached from the service (``code`` for the API error).

    ``final`` when the address itself is refused (retrying cannot help), not when a name did not resolve.
    """

    code = "webhook_url_refused"

    def __init__(self, message: str, *, final: bool = True) -> None:
        super().__init__(message)
        self.final = final


def networks(allowed: Iterable[str]) -> tuple[Network, ...]:
    """The allow-list as networks (``"127.0.0.0/8"``, ``"10.1.2.3"``)."""
    return tuple(ipaddress.ip_network(n, strict=False) for n in allowed)


def refusal(address: IPAddress, allowed: tuple[Network, ...] = ()) -> str | None:
    """Why ``address`` may not be reached, or ``None`` when it may."""
    if any(address.version == net.version and address in net for net in allowed):
        return None
    checked = address
    if isinstance(address, ipaddress.IPv6Address):
        if address.sixtofour is not None and (why := refusal(address.sixtofour, allowed)):
            # 6to4 (2002::/16, RFC 3056) carries an IPv4 address that a 6to4 relay or tunnel reaches
            return f"{address} is a 6to4 address of {why}"
        if address.ipv4_mapped is not None:
            checked = address.ipv4_mapped
    for what, hit in (
        ("a loopback address", checked.is_loopback),
        ("a link-local address (cloud metadata lives there)", checked.is_link_local),
        ("the unspecified address", checked.is_unspecified),
        ("a multicast address", checked.is_multicast),
        ("a private address", checked.is_private),
        ("a reserved address", checked.is_reserved),
        ("not globally routable", not checked.is_global),
    ):
        if hit:
            return f"{address} is {what}"
    return None


def _split(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EgressRefused(f"{url!r} is not an http(s) URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise EgressRefused(f"{url!r} has an invalid port") from exc
    return parts.scheme, parts.hostname, port


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))


async def check_url(url: str, allowed: tuple[Network, ...] = (), *, unresolvable_ok: bool = True) -> None:
    """Refuse ``url`` (:class:`EgressRefused`) when its host is or resolves to a refused address.

    At creation a name that does not resolve yet is accepted (``unresolvable_ok``): delivery checks again.
    """
    _scheme, host, port = _split(url)
    try:
        addresses = await _resolve(host, port)
    except OSError as exc:
        if unresolvable_ok:
            return
        raise EgressRefused(f"the host {host!r} does not resolve: {exc}", final=False) from exc
    for address in addresses:
        if why := refusal(address, allowed):
            raise EgressRefused(f"webhook URL refused: {host} -> {why}")


async def checked_webhook_url(url: object | None, allowed: Iterable[str]) -> str | None:
    """``url`` as text when the service may deliver to it (``None`` stays ``None``); else :class:`EgressRefused`."""
    if url is None:
        return None
    await check_url(str(url), networks(allowed))
    return str(url)


@dataclass(frozen=True)
class PinnedTarget:
    """A URL rewritten to the checked address, with what keeps the real name (Host header, TLS SNI)."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, str]


async def pin(url: str, allowed: tuple[Network, ...] = ()) -> PinnedTarget:
    """Resolve ``url``, refuse it if any address is refused, and aim the request at the first address."""
    scheme, host, port = _split(url)
    try:
        addresses = await _resolve(host, port)
    except OSError as exc:
        raise EgressRefused(f"the host {host!r} does not resolve: {exc}", final=False) from exc
    for address in addresses:
        if why := refusal(address, allowed):
            raise EgressRefused(f"webhook URL refused: {host} -> {why}")
    address = addresses[0]
    parts = urlsplit(url)
    literal = f"[{address}]" if address.version == 6 else str(address)
    userinfo, _, host_header = parts.netloc.rpartition("@")
    netloc = (f"{userinfo}@" if userinfo else "") + (f"{literal}:{port}" if parts.port else literal)
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    return PinnedTarget(urlunsplit(parts._replace(netloc=netloc)), {"Host": host_header}, extensions)
