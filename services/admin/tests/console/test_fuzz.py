"""The console fuzzed as the OpenAPI fuzzing cannot: its pages and forms are not in the admin's
OpenAPI document. Every console route gets requests from a logged-in superadmin with random
values in the fields its pages' forms send, in its query and in its path's ids (most of them
ids of rows that exist), and so does every read-only table (SQLAdmin's list and details
pages): none answers 5xx, and every error is an HTML page, never JSON.

Seeded like ``testing/fuzz.py``: ``MILEPOST_FUZZ_SEED`` (0 in ``make test``, a new one in
``make fuzz``) fixes every request, ``MILEPOST_FUZZ_EXAMPLES`` raises the requests per route
and method; a failure names the seed and the requests that reproduce it.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Mapping
from pathlib import Path

import httpx
from admin_support import Staff, console_routes, log_in, one_of_everything
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

import milepost_admin
from milepost_admin.console.tables import BASE_URL, VIEWS
from milepost_common.testing import fuzz
from milepost_common.testing.factories import make_organization

TEMPLATES = Path(milepost_admin.__file__).parent / "templates"
# A field as the pages write it: name="…" or the text_field macro's second argument.
FIELD = re.compile(r'name="([a-z_]+)"|_field\(\s*\'[a-z_]+\',\s*\'([a-z_]+)\'')
# Ends the session every later request needs.
SKIPPED = frozenset({"/admin/logout"})
TRICKY = (
    *("", " ", "0", "-1", "1.5", "-0", "1e400", "nan", "inf", "99999999999999999999"),
    *("\x00", "a" * 5000, "é", "🚗", "<script>", "' OR 1=1", "null", "[]", "{}", "%00", "\n"),
    *("2026-13-45", "0001-01-01", "9999-12-31T23:59:59", "2026-03-01", "Europe/Berlin"),
    *("Nowhere/Zone", "UTC", "viewer", "owner", "superadmin", "ingest", "x@y", "a@b.c"),
    *("https://example.com", "../../etc", "each", "day", "name", "-name", "100000"),
    "00000000-0000-0000-0000-000000000000",
)


def console_fields() -> list[str]:
    """Every field name a console page's forms send."""
    names = {
        name
        for page in TEMPLATES.glob("*.html")
        for match in FIELD.finditer(page.read_text())
        for name in match.groups()
        if name
    }
    return sorted(names - {"csrf_token"})


def a_value(rng: random.Random, ids: list[str]) -> str:
    draw = rng.random()
    if draw < 0.5:
        return rng.choice(TRICKY)
    if draw < 0.7:
        return rng.choice(ids)
    return "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(0, 20)))


def a_path(rng: random.Random, template: str, ids: Mapping[str, str]) -> str:
    """The route's path with an id of its kind that exists, mostly; else something else."""

    def one(match: re.Match[str]) -> str:
        if rng.random() < 0.8:
            return ids.get(match.group(1), str(uuid.UUID(int=rng.getrandbits(128))))
        value = a_value(rng, list(ids.values()))
        return value if value.isprintable() and not set(value) & set("/?#%") else "x"

    return re.sub(r"{(\w+)[^}]*}", one, template)


async def problems_of(
    client: httpx.AsyncClient, method: str, path: str, sent: dict[str, str], csrf: str = ""
) -> list[str]:
    """Send the request (a POST as a form with the session's CSRF token); what is wrong with
    its answer: a 5xx (or the app's exception, raised through ASGI), or an error that is
    not a page."""
    try:
        if method == "GET":
            response = await client.get(path, params=sent)
        else:
            response = await client.post(path, data={**sent, "csrf_token": csrf})
    except Exception as exc:  # noqa: BLE001 - reported with the request that raised it
        return [f"{method} {path} {sent!r}: {exc!r}"]
    kind = response.headers.get("content-type", "")
    if response.status_code >= 500 or (
        response.status_code >= 400 and not kind.startswith("text/html")
    ):
        return [f"{method} {path} {sent!r}: {response.status_code} {kind}"]
    return []


async def test_no_console_route_answers_a_server_error_or_json(
    admin_app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
) -> None:
    ids = {name: str(row) for name, row in (await one_of_everything(session)).items()}
    values = [*ids.values(), str((await make_organization(session)).id)]
    csrf = await log_in(client, staff.superadmin)
    fields = console_fields()
    base_seed, count = fuzz.fuzz_seed(), fuzz.examples(default=4)

    routes = [r for r in console_routes(admin_app) if r[1] not in SKIPPED]
    problems: list[str] = []
    for method, template, route in routes:
        rng = random.Random(fuzz.operation_seed(base_seed, f"{method} {template}", "console"))
        declared = [p.alias for p in (*route.dependant.body_params, *route.dependant.query_params)]
        for _ in range(count):
            path = a_path(rng, template, ids)
            names = dict.fromkeys([*declared, *rng.sample(fields, 3)])  # in a fixed order
            sent = {name: a_value(rng, values) for name in names if rng.random() < 0.85}
            problems += await problems_of(client, method, path, sent, csrf)

    assert len(routes) > 50
    assert not problems, f"MILEPOST_FUZZ_SEED={base_seed}:\n" + "\n".join(problems[:20])


async def test_no_table_page_answers_a_server_error(
    client: httpx.AsyncClient, session: AsyncSession, staff: Staff
) -> None:
    ids = [str(row) for row in (await one_of_everything(session)).values()]
    await log_in(client, staff.support)
    base_seed, count = fuzz.fuzz_seed(), fuzz.examples(default=4)

    problems: list[str] = []
    for view in VIEWS:
        rng = random.Random(fuzz.operation_seed(base_seed, view.identity, "tables"))
        for _ in range(count):
            sent = {
                name: a_value(rng, ids)
                for name in ("page", "pageSize", "search", "sortBy", "sort")
                if rng.random() < 0.7
            }
            listing = f"{BASE_URL}/{view.identity}/list"
            row = a_path(rng, f"{BASE_URL}/{view.identity}/details/{{pk}}", {"pk": rng.choice(ids)})
            problems += await problems_of(client, "GET", listing, sent)
            problems += await problems_of(client, "GET", row, {})

    assert not problems, f"MILEPOST_FUZZ_SEED={base_seed}:\n" + "\n".join(problems[:20])
