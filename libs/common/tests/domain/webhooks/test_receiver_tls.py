"""Receivers behind one front end: a delivery is made over TLS checked for its own receiver's
name, never over a connection another receiver's delivery opened to the same address."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from milepost_common.domain.webhooks import sending


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    """A certificate for the host name ``subject``, or a CA's when it is its own issuer."""
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
    )
    if subject == issuer:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(the server's context, with a certificate for a.test only; a client's trusting its CA)."""
    folder: Path = tmp_path_factory.mktemp("tls")
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("receivers CA", ca_key, "receivers CA", ca_key)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "cert.pem").write_bytes(
        _certificate("a.test", key, "receivers CA", ca_key).public_bytes(serialization.Encoding.PEM)
    )
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return server, ssl.create_default_context(cafile=folder / "ca.pem")


@pytest.fixture
async def front_end(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[int]:
    """A TLS front end on loopback answering 200 on kept-alive connections; every receiver
    name resolves to it (DNS is outside the system)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    async def to_front_end(host: str, port: int, *, allow_private: bool) -> list[str]:
        return ["127.0.0.1"]

    monkeypatch.setattr(sending, "resolve_receiver", to_front_end)
    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=tls[0])
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_a_receiver_is_reached_only_over_tls_checked_for_its_name(
    front_end: int, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    async def deliver(host: str) -> sending.Sent:
        return await sending.send_signed(
            client,
            f"https://{host}:{front_end}/hook",
            "secret",
            uuid.uuid4(),
            b"{}",
            allow_private=True,
            timeout_s=5,
            max_response_bytes=1024,
        )

    async with sending.receiver_client(verify=tls[1]) as client:
        first = await deliver("a.test")
        # Another organization's receiver at the same address, whose name the certificate
        # does not hold.
        other = await deliver("b.test")

    assert first.status_code == 200
    assert other.status_code is None
    assert other.error == "ConnectError: could not deliver"
