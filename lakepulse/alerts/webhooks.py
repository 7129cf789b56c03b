"""Which webhook URLs the server may call: a tenant's URL must not make it reach internal services.

Only http and https, and only hosts whose every address is globally routable: loopback, link-local
(cloud metadata at 169.254.169.254), private, shared (100.64/10), unspecified, multicast and reserved
addresses are refused, in IPv4 and IPv6, including IPv4 addresses carried inside IPv6 ones (mapped,
6to4, Teredo, NAT64). A hostname is resolved and judged by every address it resolves to; one that does
not resolve is refused. `allow_private` (setting `alert_webhook_allow_private`) lifts the address rules
for local experiments and tests. The check runs when a URL is accepted and again at every delivery, and
delivery connects to an address the check vetted, so a DNS answer that changes in between cannot
redirect it.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def check_webhook_url(url: str, allow_private: bool) -> None:
    """Raise ValueError with the reason unless the server may POST to `url`."""
    webhook_addresses(url, allow_private)


def webhook_addresses(url: str, allow_private: bool) -> list[IPAddress]:
    """The vetted addresses `url`'s host resolves to (empty with `allow_private`: nothing is resolved);
    raises ValueError with the reason when the URL may not be called."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"webhook URL is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"webhook URL must use http or https, not {parsed.scheme or 'no scheme'!r}")
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise ValueError("webhook URL has no host")
    if allow_private:
        return []
    addresses = _resolve(host, parsed.port or (443 if parsed.scheme == "https" else 80))
    for address in addresses:
        if (reason := refused_address(address)) is not None:
            what = f"resolves to {address}, {reason}" if _literal(host) is None else f"is {reason}"
            raise ValueError(f"webhook host {host} {what}: webhooks may only reach public addresses")
    return addresses


def pinned(url: httpx.URL, address: IPAddress | None) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """URL, headers and request extensions that reach `address` while naming `url`'s host to the server
    (Host header; for https, SNI and certificate verification); `url` as it is for no address or a literal."""
    host = url.raw_host.decode("ascii")
    if address is None or _literal(host) is not None:
        return url, {}, {}
    headers = {"Host": host + (f":{url.port}" if url.port else "")}
    return url.copy_with(host=str(address)), headers, {"sni_hostname": host} if url.scheme == "https" else {}


def refused_address(address: IPAddress) -> str | None:
    """Why the server may not call `address` ("a loopback address", ...), or None for a global one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
        if embedded is not None:  # judged by the IPv4 address it reaches
            return refused_address(embedded)
    for reason, flagged in (("a loopback", address.is_loopback), ("a link-local", address.is_link_local),
                            ("the unspecified", address.is_unspecified), ("a multicast", address.is_multicast),
                            ("a reserved", address.is_reserved), ("a private", address.is_private)):
        if flagged:
            return f"{reason} address"
    # Left over: special-purpose ranges Python flags only as "not global", such as 100.64.0.0/10.
    return None if address.is_global else "not a globally routable address"


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolve(host: str, port: int) -> list[IPAddress]:
    if (literal := _literal(host)) is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"webhook host {host} does not resolve: {exc}") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not addresses:
        raise ValueError(f"webhook host {host} does not resolve")
    return addresses
