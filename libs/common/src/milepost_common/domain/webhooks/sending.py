"""One signed POST to a customer's receiver, shared by the api's test ping and the worker.

Every attempt has one deadline for all of it (resolving, connecting, sending, reading the
answer), so a receiver that drips its answer byte by byte is cut off like one that never
answers; at most ``max_response_bytes`` of the answer body are read and dropped. Receivers
are reached only at public addresses unless ``allow_private``: the check runs on every
resolved address at connect time, connections go to those checked addresses only (the next
one when one takes no connection), and an IPv4 address carried inside an IPv6 one (NAT64,
6to4, Teredo, IPv4-mapped and -compatible) is judged as that IPv4 address.

Nothing here logs: the URL's path and query often carry the receiver's own token.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

from milepost_common.domain.webhooks import resolving, signing
from milepost_common.domain.webhooks.errors import AddressRefused

_MASK32 = 0xFFFF_FFFF
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_UNJUDGEABLE = ipaddress.IPv4Address("0.0.0.0")  # noqa: S104 - never public: refused
# Not globally reachable (IANA special-purpose registries) yet ``is_global`` on the Python
# the services run (3.11 before its 2024 security releases) says they are.
_NOT_GLOBAL = (
    ipaddress.IPv4Network("192.0.0.0/24"),  # IETF protocol assignments (but .9 and .10)
    ipaddress.IPv6Network("fec0::/10"),  # site-local, deprecated yet routed in old networks
    ipaddress.IPv6Network("3fff::/20"),  # documentation
    ipaddress.IPv6Network("5f00::/16"),  # segment routing SIDs
    ipaddress.IPv6Network("100:0:0:1::/64"),  # dummy prefix
)
_GLOBAL_ANYCAST = (ipaddress.IPv4Address("192.0.0.9"), ipaddress.IPv4Address("192.0.0.10"))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a packet to ``ip`` ends up at through a translator or a tunnel
    (empty when ``ip`` carries none)."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        # (server, client); the client's address is stored bit-inverted, ipaddress undoes it.
        return list(ip.teredo)
    low = ipaddress.IPv4Address(int(ip) & _MASK32)
    if ip in _NAT64_WELL_KNOWN or ip in _IPV4_TRANSLATED or ip in _IPV4_COMPATIBLE:
        return [low]
    if ip in _NAT64_LOCAL_USE:
        # Where the IPv4 sits depends on the operator's prefix length (RFC 6052): only the
        # /96 form, with the bits between prefix and address zero, can be judged.
        return [low] if (int(ip) >> 32) & ((1 << 48) - 1) == 0 else [_UNJUDGEABLE]
    return []


def _is_global_unicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if ip in _GLOBAL_ANYCAST:
        return True
    if any(ip in net for net in _NOT_GLOBAL if net.version == ip.version):
        return False
    return ip.is_global and not ip.is_multicast


def is_public_address(address: str) -> bool:
    """A globally reachable unicast address, judged by the IPv4 it carries if it carries one."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner:
            return all(_is_global_unicast(v4) for v4 in inner)
    return _is_global_unicast(ip)


def is_private_literal(host: str) -> bool:
    """True for a host that is plainly not public without asking DNS: an IP literal
    (``[…]`` for IPv6) that is not public, or a ``localhost`` name (RFC 6761). Other names
    are judged at connect time, on every attempt, by what they resolve to."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return not is_public_address(name)
    except ValueError:  # a name, not an address
        return False


async def resolve_receiver(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses to connect to, in the resolver's order, every one checked; raises
    AddressRefused if any is not public (unless allowed).

    Resolved in the receivers' own threads (``resolving``), never the loop's shared ones: a
    name whose DNS never answers holds one of those, not the process's other work."""
    addresses = await resolving.resolver.addresses(host, port)
    if not addresses:
        raise AddressRefused(f"{host} does not resolve")
    if not allow_private and not all(is_public_address(a) for a in addresses):
        raise AddressRefused(f"{host} resolves to a non-public address")
    return list(dict.fromkeys(addresses))


def receiver_client(
    *, timeout_s: float | None = None, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    """The client that reaches customers' receivers (one per process). It keeps no connection
    for a later request: each is made to the address checked for that request, in place of
    the receiver's name, and a kept one would be reused for any other name at that address
    and port, over TLS checked for the first name only (another receiver, maybe another
    organization's, behind the same front end)."""
    return httpx.AsyncClient(
        timeout=timeout_s,
        follow_redirects=False,
        trust_env=False,
        verify=verify,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


@dataclass(frozen=True, slots=True)
class Sent:
    """What one attempt came to: the receiver's status, or why there is none."""

    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def _post(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    allow_private: bool,
    timeout_s: float,
    max_response_bytes: int,
) -> int:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolve_receiver(host, port, allow_private=allow_private)
    # As clients do (curl, browsers): an address that takes no connection (an AAAA record
    # whose service is down) gives way to the next checked one; nothing was sent to it.
    for address in addresses[:-1]:
        with suppress(httpx.ConnectError):
            return await _post_to(
                client, address, parts, headers, body, timeout_s, max_response_bytes
            )
    return await _post_to(
        client, addresses[-1], parts, headers, body, timeout_s, max_response_bytes
    )


async def _post_to(
    client: httpx.AsyncClient,
    address: str,
    parts: SplitResult,
    headers: dict[str, str],
    body: bytes,
    timeout_s: float,
    max_response_bytes: int,
) -> int:
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    async with client.stream(
        "POST",
        target,
        content=body,
        headers={**headers, "Host": parts.netloc},
        timeout=timeout_s,
        follow_redirects=False,
        # TLS still verifies the certificate against the URL's host name.
        extensions={"sni_hostname": host},
    ) as response:
        read = 0
        # Raw (still compressed) bytes: a small gzip answer cannot inflate past the cap.
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read >= max_response_bytes:
                break  # the rest is never read: closing drops the connection
        return response.status_code


async def send_signed(
    client: httpx.AsyncClient,
    url: str,
    secret: str,
    event_id: uuid.UUID,
    body: bytes,
    *,
    allow_private: bool,
    timeout_s: float,
    max_response_bytes: int,
) -> Sent:
    """POST ``body`` signed to the receiver, all of it within ``timeout_s``. Never raises for
    the receiver's failures (refused address, network error, timeout): they are the outcome."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Milepost-Webhooks/1.0",
        signing.EVENT_ID_HEADER: str(event_id),
        signing.SIGNATURE_HEADER: signing.sign(secret, body),
    }
    started = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    try:
        async with asyncio.timeout(timeout_s):
            status_code = await _post(
                client,
                url,
                headers,
                body,
                allow_private=allow_private,
                timeout_s=timeout_s,
                max_response_bytes=max_response_bytes,
            )
    except AddressRefused as exc:
        error = f"refused: {exc}"
    except (TimeoutError, httpx.TimeoutException):
        error = f"timeout: no complete answer within {timeout_s:g} s"
    except (httpx.HTTPError, httpx.InvalidURL, OSError, UnicodeError) as exc:
        # The type only: some exceptions' messages carry the URL.
        error = f"{type(exc).__name__}: could not deliver"
    if status_code is not None and not 200 <= status_code < 300:
        error = f"receiver answered {status_code}"
    return Sent(status_code, error, (time.perf_counter() - started) * 1000)
