"""The receiver address filter: an IPv4 address carried inside an IPv6 one is judged as IPv4."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from milepost_common.domain.webhooks.sending import is_public_address


def nat64(v4: str) -> str:
    return str(ipaddress.IPv6Address(f"64:ff9b::{v4}"))


def nat64_local(v4: str) -> str:
    return str(ipaddress.IPv6Address(f"64:ff9b:1::{v4}"))


def sixtofour(v4: str) -> str:
    packed = int(ipaddress.IPv4Address(v4))
    return str(ipaddress.IPv6Address((0x2002 << 112) | (packed << 80) | 1))


def teredo(v4: str) -> str:
    """A Teredo address: server 65.54.227.120, flags 0x8000, port, the client bit-inverted."""
    server = int(ipaddress.IPv4Address("65.54.227.120"))
    client = int(ipaddress.IPv4Address(v4)) ^ 0xFFFF_FFFF
    return str(
        ipaddress.IPv6Address((0x2001_0000 << 96) | (server << 64) | (0x8000 << 48) | client)
    )


def mapped(v4: str) -> str:
    return f"::ffff:{v4}"


def compatible(v4: str) -> str:
    return f"::{v4}"


WRAPPERS = [nat64, nat64_local, sixtofour, teredo, mapped, compatible]
INTERNAL = ["127.0.0.1", "127.255.0.9", "10.0.0.1", "10.200.3.4", "169.254.169.254", "192.168.1.10"]
PUBLIC = "8.8.8.8"


@pytest.mark.parametrize("wrap", WRAPPERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("v4", INTERNAL)
def test_internal_ipv4_inside_ipv6_is_refused(wrap: Callable[[str], str], v4: str) -> None:
    address = wrap(v4)
    assert not is_public_address(address), address


@pytest.mark.parametrize("wrap", WRAPPERS, ids=lambda f: f.__name__)
def test_public_ipv4_inside_ipv6_passes(wrap: Callable[[str], str]) -> None:
    address = wrap(PUBLIC)
    assert is_public_address(address), address


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("ff02::1", False),
        # The local-use NAT64 prefix with bits between prefix and IPv4: where the IPv4 sits
        # depends on the operator's prefix length, so it is not judged public.
        ("64:ff9b:1:808:8:800::", False),
        # Not globally reachable by the IANA registries, whatever the interpreter's
        # ``ipaddress`` tables say (3.11 before its security releases calls these global).
        ("fec0::1", False),  # site-local (deprecated, still routed in old networks)
        ("192.0.0.8", False),  # IETF protocol assignments
        ("192.0.0.200", False),
        ("3fff::1", False),  # documentation
        ("5f00::1", False),  # segment routing
        ("100:0:0:1::1", False),  # dummy prefix
        ("192.0.0.9", True),  # PCP anycast: global
        ("192.0.0.10", True),  # TURN anycast: global
    ],
)
def test_plain_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public
