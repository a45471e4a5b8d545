"""SSRF guard rules, checked without touching the network."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

import httpcore
import httpx
import pytest

from workflow_engine.errors import BlockedDestination, NonRetryableStepError
from workflow_engine.net.guard import (
    GuardedBackend,
    Resolver,
    blocked_reason,
    check_destination,
    make_http_client,
    parse_allowlist,
    resolve_host,
)
from workflow_engine.steps.http import parse_retry_after

BLOCKED = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:100.64.0.1", "carrier-grade NAT"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("2002:a00:1::", "private"),  # 6to4 wrapping 10.0.0.1
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 wrapping 169.254.169.254
    ("::127.0.0.1", "reserved"),  # deprecated IPv4-compatible form
]

PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "172.32.0.1", "100.128.0.1", "2606:4700::1111"]


@pytest.mark.parametrize(("address", "kind"), BLOCKED)
def test_blocked_classes(address: str, kind: str) -> None:
    reason = blocked_reason(ipaddress.ip_address(address))
    assert reason is not None and kind in reason
    with pytest.raises(BlockedDestination) as info:
        check_destination("example.test", [address], [])
    assert address in info.value.message
    assert kind in info.value.message
    assert "HTTP_ALLOWLIST" in info.value.message
    assert isinstance(info.value, NonRetryableStepError)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None
    check_destination("example.test", [address], [])


def test_message_names_host_address_and_reason() -> None:
    with pytest.raises(BlockedDestination) as info:
        check_destination("metadata.internal", ["169.254.169.254"], [])
    assert info.value.message == (
        "Blocked destination metadata.internal -> 169.254.169.254 (link-local address); "
        "add it to HTTP_ALLOWLIST to allow it"
    )
    with pytest.raises(BlockedDestination) as info:
        check_destination("169.254.169.254", ["169.254.169.254"], [])
    assert info.value.message.startswith("Blocked destination 169.254.169.254 (link-local")


def test_every_address_is_checked() -> None:
    # One public and one private answer: the private one must not be reachable.
    with pytest.raises(BlockedDestination, match=re.escape("10.0.0.7")):
        check_destination("mixed.test", ["8.8.8.8", "10.0.0.7"], [])


def test_no_addresses_is_blocked() -> None:
    with pytest.raises(BlockedDestination, match="no address"):
        check_destination("empty.test", [], [])


def test_allowlist_by_host_name_is_case_insensitive() -> None:
    check_destination("LocalHost", ["127.0.0.1", "::1"], ["localhost"])
    check_destination("localhost.", ["127.0.0.1"], ["LOCALHOST"])
    with pytest.raises(BlockedDestination):
        check_destination("localhost2", ["127.0.0.1"], ["localhost"])


def test_allowlist_by_ip_and_cidr() -> None:
    check_destination("127.0.0.1", ["127.0.0.1"], ["127.0.0.1"])
    with pytest.raises(BlockedDestination, match=re.escape("127.0.0.2")):
        check_destination("127.0.0.2", ["127.0.0.2"], ["127.0.0.1"])
    check_destination("svc.test", ["10.1.200.3"], ["10.1.0.0/16"])
    with pytest.raises(BlockedDestination, match=re.escape("10.2.0.1")):
        check_destination("svc.test", ["10.2.0.1"], ["10.1.0.0/16"])
    check_destination("v6.test", ["fd00::5"], ["fd00::/8"])
    check_destination("v6.test", ["::1"], ["[::1]"])


def test_allowlisted_ipv4_covers_its_mapped_ipv6_form() -> None:
    check_destination("::ffff:127.0.0.1", ["::ffff:127.0.0.1"], ["127.0.0.1"])
    with pytest.raises(BlockedDestination, match=re.escape("::ffff:127.0.0.1")):
        check_destination("::ffff:127.0.0.1", ["::ffff:127.0.0.1"], ["10.0.0.0/8"])


def test_parse_allowlist_splits_names_and_networks() -> None:
    allow = parse_allowlist(["localhost", " 127.0.0.1 ", "10.1.2.3/16", "Api.Internal.", ""])
    assert allow.hosts == frozenset({"localhost", "api.internal"})
    assert [str(n) for n in allow.networks] == ["127.0.0.1/32", "10.1.0.0/16"]


async def test_resolve_host_handles_ip_literals_and_numeric_forms() -> None:
    assert await resolve_host("127.0.0.1", 80) == ["127.0.0.1"]
    assert await resolve_host("[::1]", 80) == ["::1"]
    # Numeric host spellings resolve locally (no DNS) to the address they denote.
    assert await resolve_host("2130706433", 80) == ["127.0.0.1"]


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Inner backend that records connect attempts and never opens a socket."""

    def __init__(self) -> None:
        self.connects: list[str] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append(host)
        raise httpcore.ConnectError(f"refused {host}")


def fixed_resolver(*answers: str) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        return list(answers)

    return resolve


async def test_backend_blocks_before_connecting() -> None:
    inner = RecordingBackend()
    backend = GuardedBackend([], inner=inner, resolver=fixed_resolver("8.8.8.8", "10.0.0.1"))
    with pytest.raises(BlockedDestination, match=re.escape("10.0.0.1")):
        await backend.connect_tcp("rebind.test", 80, timeout=1)
    assert inner.connects == []


async def test_backend_connects_to_checked_ip_not_the_name() -> None:
    inner = RecordingBackend()
    backend = GuardedBackend(
        ["10.0.0.0/8"],
        inner=inner,
        resolver=fixed_resolver("10.0.0.1", "10.0.0.2"),
    )
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("svc.test", 80, timeout=1)
    # Each checked address is tried in order; the name itself is never handed on for resolving.
    assert inner.connects == ["10.0.0.1", "10.0.0.2"]


async def test_backend_refuses_unix_sockets() -> None:
    with pytest.raises(BlockedDestination):
        await GuardedBackend([]).connect_unix_socket("/var/run/docker.sock")


async def test_resolution_failure_is_a_connect_error() -> None:
    async def failing(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    backend = GuardedBackend([], inner=RecordingBackend(), resolver=failing)
    with pytest.raises(
        httpcore.ConnectError, match=re.escape("Could not resolve host nowhere.test")
    ):
        await backend.connect_tcp("nowhere.test", 80, timeout=1)


# --- HTTP_ALLOWLIST_ONLY: the allowlist alone, public addresses included ----------------------


@pytest.mark.parametrize("address", [*PUBLIC, "127.0.0.1", "10.0.0.1", "::1"])
def test_allowlist_only_blocks_what_is_not_listed(address: str) -> None:
    allow = parse_allowlist(["api.partner.test", "192.0.2.0/24"], only=True)
    with pytest.raises(BlockedDestination, match="not in HTTP_ALLOWLIST") as caught:
        check_destination("somewhere.test", [address], allow)
    assert "HTTP_ALLOWLIST_ONLY" in str(caught.value)
    assert isinstance(caught.value, NonRetryableStepError)


def test_allowlist_only_allows_listed_names_and_networks() -> None:
    allow = parse_allowlist(["API.Partner.test", "127.0.0.1", "2001:db8::/32"], only=True)
    check_destination("api.partner.test", ["8.8.8.8"], allow)  # by name: any address
    check_destination("api.partner.test.", ["10.0.0.1"], allow)
    check_destination("127.0.0.1", ["127.0.0.1"], allow)  # loopback, listed
    check_destination("local.test", ["127.0.0.1"], allow)  # a name resolving into the list
    check_destination("v6.test", ["2001:db8::5"], allow)


def test_allowlist_only_needs_every_address_listed() -> None:
    allow = parse_allowlist(["127.0.0.1"], only=True)
    with pytest.raises(BlockedDestination, match=re.escape("8.8.8.8")):
        check_destination("split.test", ["127.0.0.1", "8.8.8.8"], allow)


def test_allowlist_only_with_an_empty_list_blocks_everything() -> None:
    allow = parse_allowlist([], only=True)
    for host, address in (("example.com", "93.184.215.14"), ("127.0.0.1", "127.0.0.1")):
        with pytest.raises(BlockedDestination):
            check_destination(host, [address], allow)


def test_without_allowlist_only_public_addresses_still_pass() -> None:
    allow = parse_allowlist(["127.0.0.1"])
    assert not allow.only
    check_destination("example.com", ["93.184.215.14"], allow)


async def test_allowlist_only_refuses_an_unlisted_name_before_resolving_it() -> None:
    """Nothing about an unlisted host leaves the machine, not even a DNS query."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["93.184.215.14"]

    inner = RecordingBackend()
    backend = GuardedBackend(
        parse_allowlist(["api.partner.test"], only=True), inner=inner, resolver=resolve
    )
    with pytest.raises(BlockedDestination, match="not in HTTP_ALLOWLIST"):
        await backend.connect_tcp("example.com", 443, timeout=1)
    assert asked == [] and inner.connects == []
    # A listed name is resolved and connected to as usual.
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("api.partner.test", 443, timeout=1)
    assert asked == ["api.partner.test"] and inner.connects == ["93.184.215.14"]


async def test_allowlist_only_with_networks_resolves_then_checks() -> None:
    inner = RecordingBackend()
    backend = GuardedBackend(
        parse_allowlist(["127.0.0.0/8"], only=True),
        inner=inner,
        resolver=fixed_resolver("93.184.215.14"),
    )
    with pytest.raises(BlockedDestination, match=re.escape("93.184.215.14")):
        await backend.connect_tcp("public.test", 80, timeout=1)
    assert inner.connects == []


async def test_make_http_client_passes_allowlist_only_on() -> None:
    inner = RecordingBackend()
    client = make_http_client(["127.0.0.1"], allowlist_only=True, network_backend=inner)
    async with client:
        with pytest.raises(BlockedDestination):
            await client.get("http://93.184.215.14/")
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:9/")
    assert inner.connects == ["127.0.0.1"]


def test_parse_retry_after() -> None:
    assert parse_retry_after("2") == 2000
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now=now) == 30_000
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now=now) == 0
