"""A CSV export holds a database connection until its client has read the last row: an api
process streams only a few at once (503 with Retry-After past them), and a client that stops
reading is cut off, its turn and connection given back. Real sockets: the held export's
client reads nothing, so the server's sends fill the socket's buffers and wait."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from datetime import date

import httpx
from asgi_lifespan import LifespanManager

from milepost_api.main import create_app
from milepost_api.settings import ApiSettings
from milepost_common.auth import Realm
from milepost_common.domain.users.models import OrgRole
from milepost_common.testing.factories import make_organization, make_user
from services.api.tests.api_support import serving, vehicles_that_drove

TRIPS = "/api/v1/reports/trips.csv"
# 150 vehicles × 300 days: ~9 MB of CSV, more than loopback's buffers hold for a client that
# reads nothing (~4 MB: the server's send buffer at its largest, the client's kept small).
VEHICLES, DAYS = 150, 300
RANGE = {"from": "2026-01-01", "to": "2027-01-01"}


async def stalled_client(address: str, headers: dict[str, str]) -> socket.socket:
    """A client that asks for the export and never reads its answer."""
    host, port = address.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    lines = [f"GET {TRIPS}?from={RANGE['from']}&to={RANGE['to']} HTTP/1.1", f"Host: {address}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    await asyncio.get_running_loop().sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


async def until(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "not within the wait"
        await asyncio.sleep(0.02)


class TestExportTurns:
    async def test_a_busy_process_says_so_and_a_stalled_client_is_cut_off(
        self, settings_factory: Callable[..., ApiSettings], committed_database: str
    ) -> None:
        # An app of its own on a database of its own: the export's rows are read on one
        # connection while other requests use others, as in production.
        settings = settings_factory(
            ApiSettings,
            db={"url": committed_database},
            auth={"principal_cache_s": 0},
            api={"exports_at_once": 1, "export_send_timeout_s": 1.0},
        )
        app = create_app(settings)
        async with LifespanManager(app):
            async with app.state.db.sessionmaker() as session:
                org = await make_organization(session)
                viewer = await make_user(session, org, role=OrgRole.VIEWER)
                await vehicles_that_drove(
                    session, org.id, vehicles=VEHICLES, days=DAYS, first=date(2026, 1, 1)
                )
                await session.commit()
            token, _ = app.state.ctx.codec.issue(viewer.id, Realm.API, 600)
            headers, turns = {"Authorization": f"Bearer {token}"}, app.state.ctx.exports

            async with (
                serving(app) as address,
                httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http,
            ):
                stalled = await stalled_client(address, headers)
                try:
                    await until(lambda: turns.taken == 1)
                    busy = await http.get(TRIPS, params=RANGE, headers=headers)
                    other_reads = await http.get("/api/v1/vehicles", headers=headers)
                    started = time.monotonic()
                    # Its client reads nothing: cut off once a chunk has waited a second.
                    await until(lambda: turns.taken == 0)
                    cut_off_after = time.monotonic() - started
                    whole = await http.get(TRIPS, params=RANGE, headers=headers)
                finally:
                    stalled.close()

        assert busy.status_code == 503
        assert busy.headers["Retry-After"] == "5"
        assert busy.json()["error"]["code"] == "unavailable"
        assert "as many downloads as it may at once (1)" in busy.json()["error"]["message"]
        assert other_reads.status_code == 200
        assert cut_off_after < 5
        assert whole.status_code == 200
        assert whole.text.count("\r\n") == 1 + VEHICLES * DAYS
        assert turns.taken == 0
