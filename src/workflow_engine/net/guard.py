"""SSRF guard for outgoing HTTP.

Every TCP connection made by the client from `make_http_client` goes through `GuardedBackend`:
the host is resolved once, every resolved address is checked, and the socket is opened to one of
those checked addresses. Connecting to the IP rather than the name means a second DNS answer
(DNS rebinding) can never reach an address that was not checked. TLS SNI and the Host header are
set by httpcore/httpx from the URL, so they keep the original host name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

from workflow_engine.errors import BlockedDestination

__all__ = [
    "Allowlist",
    "GuardedBackend",
    "GuardedTransport",
    "IPAddress",
    "Resolver",
    "blocked_reason",
    "check_destination",
    "check_host_name",
    "make_http_client",
    "parse_allowlist",
    "resolve_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""resolve(host, port) -> IP address strings, in the order they should be tried."""

# `is_private` does not cover shared address space (RFC 6598), so it is listed on its own.
_CARRIER_GRADE_NAT = ipaddress.IPv4Network("100.64.0.0/10")
# NAT64 gateways forward to the IPv4 address in the last 32 bits (RFC 6052).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class Allowlist:
    """Destinations exempt from the guard: host names and IP networks.

    With `only` (HTTP_ALLOWLIST_ONLY) they are the only destinations: everything else is
    blocked, public addresses included.
    """

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    only: bool = False

    def allows_host(self, host: str) -> bool:
        """True if `host` (a URL host name) is allowlisted by name."""
        return _normalise_host(host) in self.hosts

    def allows_address(self, ip: IPAddress) -> bool:
        """True if `ip`, or the IPv4 address it embeds, lies in an allowlisted network."""
        candidates = [ip]
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            candidates.append(embedded)
        return any(
            c in net for c in candidates for net in self.networks if c.version == net.version
        )


def parse_allowlist(entries: Iterable[str] | Allowlist, *, only: bool = False) -> Allowlist:
    """Split allowlist entries into IPs/CIDR networks and host names.

    Anything that parses as an IP address or network is one; everything else is a host name,
    matched exactly and case-insensitively. `only`: nothing but these may be contacted.
    """
    if isinstance(entries, Allowlist):
        return entries
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        try:
            # strict=False accepts "10.1.2.3/16" as 10.1.0.0/16 rather than failing config load.
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.add(_normalise_host(entry))
    return Allowlist(frozenset(hosts), tuple(networks), only)


def blocked_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a public destination, or None if it is."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        inner = blocked_reason(embedded)
        if inner is not None:
            return f"{inner} embedded in an IPv6 address"
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_multicast:
        return "multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CARRIER_GRADE_NAT:
        return "carrier-grade NAT address"
    # Reserved first: Python also counts 240.0.0.0/4 as private, which would be misleading.
    if ip.is_reserved:
        return "reserved address"
    if ip.is_private:
        return "private address"
    # Catch-all for special-purpose ranges the flags above miss; such hosts are never public.
    if not ip.is_global:
        return "non-public address"
    return None


def check_destination(
    host: str, addresses: Sequence[str], allowlist: Iterable[str] | Allowlist = ()
) -> None:
    """Raise BlockedDestination unless `host` and every one of its `addresses` may be contacted.

    The host name being allowlisted allows all its addresses; otherwise each address must be
    public or inside an allowlisted network (with `only`: inside an allowlisted network).
    Checking every address (not just the first) means a name that resolves to both a public and
    a private address is refused.
    """
    allow = parse_allowlist(allowlist)
    if not addresses:
        raise BlockedDestination(f"Blocked destination {host}: it resolved to no address")
    if allow.allows_host(host):
        return
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise BlockedDestination(
                f"Blocked destination {host}: {address!r} is not an IP address"
            ) from None
        if allow.allows_address(ip):
            continue
        via = "" if _same_host(host, address) else f"{host} -> "
        if allow.only:
            raise BlockedDestination(_not_listed(f"{via}{address}"))
        reason = blocked_reason(ip)
        if reason is not None:
            raise BlockedDestination(
                f"Blocked destination {via}{address} ({reason}); "
                "add it to HTTP_ALLOWLIST to allow it"
            )


def check_host_name(host: str, allowlist: Iterable[str] | Allowlist) -> None:
    """Raise BlockedDestination if `host` cannot pass whatever it resolves to, so it need not
    be resolved at all: with `only`, a name that is not listed when no network is either."""
    allow = parse_allowlist(allowlist)
    if allow.only and not allow.networks and not allow.allows_host(host):
        raise BlockedDestination(_not_listed(host))


def _not_listed(destination: str) -> str:
    return (
        f"Blocked destination {destination}: not in HTTP_ALLOWLIST "
        "(HTTP_ALLOWLIST_ONLY is on, so nothing else may be called)"
    )


async def resolve_host(host: str, port: int) -> list[str]:
    """Resolve `host` to its IP addresses with the event loop's getaddrinfo, duplicates removed."""
    literal = _parse_ip(host)
    if literal is not None:
        return [str(literal)]
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # dict keeps first-seen order, which is the resolver's preference order.
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(AsyncNetworkBackend):
    """httpcore network backend that checks the destination before every TCP connect."""

    def __init__(
        self,
        allowlist: Iterable[str] | Allowlist = (),
        *,
        inner: AsyncNetworkBackend | None = None,
        resolver: Resolver = resolve_host,
    ) -> None:
        self._allowlist = parse_allowlist(allowlist)
        self._inner: AsyncNetworkBackend = inner if inner is not None else httpcore.AnyIOBackend()
        self._resolve = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's backend interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        """Resolve, check every address, then connect to the first checked address that answers."""
        deadline = None if timeout is None else time.monotonic() + timeout
        check_host_name(host, self._allowlist)  # before a DNS query tells anyone the name
        addresses = await self._resolve_within(host, port, timeout)
        check_destination(host, addresses, self._allowlist)

        last_error: httpcore.ConnectError | None = None
        for address in addresses:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                # A host may publish an address family this machine cannot reach; try the next.
                last_error = exc
        assert last_error is not None  # addresses is non-empty, checked above
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's backend interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        """Unix sockets reach local services only, so they are always refused."""
        raise BlockedDestination(f"Blocked destination unix:{path} (local socket)")

    async def sleep(self, seconds: float) -> None:
        """Delegate to the inner backend (used by httpcore between connect retries)."""
        await self._inner.sleep(seconds)

    async def _resolve_within(self, host: str, port: int, limit_s: float | None) -> list[str]:
        # Raised as httpcore errors so httpx maps them to ConnectError / ConnectTimeout.
        try:
            async with asyncio.timeout(limit_s):
                return await self._resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"Timed out resolving host {host}") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"Could not resolve host {host}: {exc}") from exc


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx transport whose connection pool opens every connection through `GuardedBackend`."""

    def __init__(
        self,
        allowlist: Iterable[str] | Allowlist = (),
        *,
        network_backend: AsyncNetworkBackend | None = None,
        resolver: Resolver = resolve_host,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),
    ) -> None:
        # The parent sets up request/response conversion and httpcore->httpx error mapping; only
        # its pool is replaced, since the pool is where the network backend is chosen. No proxy is
        # configured, so connections always go straight to the (checked) destination.
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allowlist, inner=network_backend, resolver=resolver),
        )


def make_http_client(
    allowlist: Sequence[str] = (),
    *,
    allowlist_only: bool = False,
    timeout_s: float = 30.0,
    network_backend: AsyncNetworkBackend | None = None,
) -> httpx.AsyncClient:
    """An AsyncClient whose every connection is checked against the SSRF rules.

    Redirects are not followed here: the caller follows them so each hop is a new, checked
    request. Environment proxies are ignored (trust_env=False) because a proxy would make the
    connection on our behalf, bypassing the check. `allowlist_only` (HTTP_ALLOWLIST_ONLY) blocks
    every destination the allowlist does not name, public ones included. `network_backend`
    replaces the backend that opens the (already checked) sockets; tests use it to observe
    connection attempts.
    """
    return httpx.AsyncClient(
        transport=GuardedTransport(
            parse_allowlist(allowlist, only=allowlist_only), network_backend=network_backend
        ),
        trust_env=False,
        follow_redirects=False,
        timeout=timeout_s,
    )


def _normalise_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(_normalise_host(text))
    except ValueError:
        return None


def _same_host(host: str, address: str) -> bool:
    ip = _parse_ip(host)
    return ip is not None and str(ip) == address


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address forwards to (mapped, 6to4, NAT64), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None
