"""Schemathesis over an app's own OpenAPI document, in process, as one of its real users.

The fuzz tests of ingest, api and admin share this: :func:`database_of_its_own` and
:func:`seeding` give the app a database with rows to find, :func:`serving` runs it as a
:class:`Target` whose user logs in or sends a key, :func:`asgi_schema` loads the document
from the app (``schemathesis.openapi.from_asgi``, the app's lifespan run once), :func:`fuzz`
sends each operation a bounded number of generated requests, positive and negative, a third
of them with the ids of rows that exist (``known`` path parameters), and
:func:`malformed_bodies` sends each operation that takes JSON one body that is not JSON.
Every answer is checked:

- no 5xx;
- conformance: the status code, the content type and the body are the ones documented;
- every error (4xx, 5xx) is the envelope ``{"error": {code, message, details, trace_id}}``
  with ``trace_id`` equal to ``X-Request-ID``.

Examples per operation: ``MILEPOST_FUZZ_EXAMPLES`` when set (``make fuzz`` raises it), else
each test's bounded default, so that ``make test`` stays fast.

The requests are generated from a seed: ``MILEPOST_FUZZ_SEED`` when set (``make fuzz`` draws
a new one each run and prints it), else 0, so that ``make test`` sends the same requests on
every run and every machine, whatever the hypothesis profile; each operation's seed derives
from it and the operation's label. A failure names the seed that reproduces it.
"""

from __future__ import annotations

import os
import socket
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.db import create_database, unit_of_work
from milepost_common.settings import CommonSettings, DbSettings
from milepost_common.testing.plugin import clone_database, drop_database
from milepost_common.web.openapi import render

EXAMPLES_VARIABLE = "MILEPOST_FUZZ_EXAMPLES"
SEED_VARIABLE = "MILEPOST_FUZZ_SEED"
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})

Check = Callable[[Any, Any, Any], bool | None]


@dataclass(frozen=True)
class Target:
    """One app to fuzz: its schema (:func:`asgi_schema`), the headers its user sends, the ids
    of rows that exist by path parameter name, and the hosts that may be resolved."""

    schema: Any
    headers: dict[str, str]
    known: dict[str, str]
    hosts: tuple[str | None, ...]

    def fuzz(self, default_examples: int, *, every_one_succeeds: bool = False) -> None:
        """:func:`fuzz` as the target's user, :func:`examples` per operation, the host names
        it generates (a webhook's) never resolved and nothing connecting out; then more than
        half of the operations (``every_one_succeeds``: all of them) must have answered a 2xx
        at least once: most requests get through, they are not all refused."""
        base = fuzz_seed()
        with resolving_only(self.hosts):
            answered = fuzz(
                self.schema,
                headers=self.headers,
                known=self.known,
                max_examples=examples(default=default_examples),
                base_seed=base,
            )
        succeeded = [label for label, statuses in answered.items() if min(statuses) < 300]
        rerun = f" ({SEED_VARIABLE}={base} sends the same requests)"
        if every_one_succeeds:
            problem = "every operation must get through" + rerun + ": " + str(answered)
            assert len(succeeded) == len(answered), problem
        else:
            problem = "most operations must get through" + rerun + ": " + str(answered)
            assert len(succeeded) > len(answered) / 2, problem

    def malformed_bodies(self) -> int:
        """:func:`malformed_bodies` as the target's user; how many operations were tried."""
        return malformed_bodies(self.schema, headers=self.headers, known=self.known)


@dataclass(frozen=True)
class LogIn:
    """A user who logs in as a client does (:func:`log_in`), for :func:`serving`."""

    token_path: str
    email: str
    password: str


@asynccontextmanager
async def database_of_its_own(template_database_url: str) -> AsyncIterator[str]:
    """The URL of a database cloned from the template for one module's fuzzing (what the
    generated requests write stays out of the other tests' database), dropped afterwards."""
    url = await clone_database(template_database_url, "milepost_fuzz")
    try:
        yield url
    finally:
        await drop_database(url)


@asynccontextmanager
async def seeding(database_url: str) -> AsyncIterator[AsyncSession]:
    """A session on ``database_url`` whose rows are committed when the block ends, before the
    app reads them."""
    db = create_database(DbSettings(url=database_url, pool_size=2))
    try:
        async with unit_of_work(db) as session:
            yield session
    finally:
        await db.dispose()


@contextmanager
def serving(
    app: FastAPI,
    openapi_path: str,
    settings: CommonSettings,
    known: Mapping[str, object],
    user: LogIn | Mapping[str, str],
) -> Iterator[Target]:
    """The :class:`Target` of ``app`` running (:func:`asgi_schema`): requests carry ``user``'s
    headers (a :class:`LogIn` logs in first), ``known`` ids as strings, and only the hosts of
    the app's own database and Redis resolve."""
    with asgi_schema(app, openapi_path) as schema:
        headers = (
            log_in(app, user.token_path, user.email, user.password)
            if isinstance(user, LogIn)
            else dict(user)
        )
        yield Target(
            schema,
            headers,
            {name: str(value) for name, value in known.items()},
            hosts_of(settings.db.url, settings.redis.url),
        )


def hosts_of(database_url: str, redis_url: str) -> tuple[str | None, ...]:
    """The test's own Postgres and Redis hosts: the only names :func:`resolving_only` lets
    through besides loopback."""
    return (urlsplit(database_url).hostname, urlsplit(redis_url).hostname)


def assert_errors_documented(doc: Mapping[str, Any], secured: Callable[[str], bool]) -> None:
    """Every operation has a summary and documents the gateway's 429/502/503/504, its 400
    ``malformed_body`` when it takes a body, the envelope for every JSON error, and — on the
    paths ``secured`` names — its 401, 403 and 429 as JSON."""
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            where = f"{method.upper()} {path}"
            responses = op["responses"]
            assert op.get("summary"), where
            assert {"429", "502", "503", "504"} <= set(responses), where
            if secured(path):
                for code in ("401", "403", "429"):
                    assert "application/json" in responses[code]["content"], (where, code)
            if "requestBody" in op:
                assert "`malformed_body`" in responses["400"]["description"], where
            for code, response in responses.items():
                if code.startswith(("4", "5")) and "application/json" in response["content"]:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema["$ref"].endswith("/ErrorEnvelope"), (where, code)


def assert_committed_current(path: Path, doc: dict[str, Any]) -> None:
    """The document committed at ``path`` (``docs/openapi/<app>.json``) is the app's own."""
    assert path.read_bytes() == render(doc), (
        f"docs/openapi/{path.name} is stale: run `make openapi`"
    )


def examples(default: int) -> int:
    """Examples per operation (or per property): ``MILEPOST_FUZZ_EXAMPLES``, else ``default``."""
    value = os.environ.get(EXAMPLES_VARIABLE, "").strip()
    return int(value) if value else default


def fuzz_seed() -> int:
    """The seed the generated requests derive from: ``MILEPOST_FUZZ_SEED``, else 0."""
    value = os.environ.get(SEED_VARIABLE, "").strip()
    return int(value) if value else 0


def operation_seed(base_seed: int, label: str, part: str) -> int:
    """The seed of one operation's run of requests (``part``: generated or known): fixed by
    the base seed and the label, and different from one operation to the next."""
    return zlib.crc32(f"{base_seed}:{label}:{part}".encode())


def envelope_problem(status: int, headers: Mapping[str, str], body: bytes) -> str | None:
    """Why an error answer is not DESIGN.md's envelope, or None when it is (or not an error).

    ``headers`` are looked up by lower-case name."""
    if status < 400:
        return None
    media = headers.get("content-type", "").split(";", 1)[0].strip()
    if media != "application/json":
        return f"{status} answered as {media or 'no content type'}, not the JSON envelope"
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"{status} answered with a body that is not JSON"
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict) or set(error) != {"code", "message", "details", "trace_id"}:
        return (
            f"{status} answered {document!r}, not {{'error': {{code, message, details, trace_id}}}}"
        )
    if not isinstance(error["code"], str) or not isinstance(error["message"], str):
        return f"{status}: code and message must be strings: {error!r}"
    if not isinstance(error["details"], list):
        return f"{status}: details must be a list: {error!r}"
    if error["trace_id"] != headers.get("x-request-id"):
        return f"{status}: trace_id {error['trace_id']!r} is not the X-Request-ID header"
    return None


def error_is_envelope(ctx: Any, response: Any, case: Any) -> bool | None:  # noqa: ARG001
    """A schemathesis check: every error answer of the app is the envelope."""
    headers = {name: values[0] for name, values in response.headers.items() if values}
    problem = envelope_problem(response.status_code, headers, response.content)
    if problem is not None:
        raise AssertionError(problem)
    return None


# No 5xx, status code, content type and body as documented, errors in the envelope.
CHECKS: list[Check] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_is_envelope,
]


@contextmanager
def asgi_schema(app: FastAPI, openapi_path: str) -> Iterator[Any]:
    """The app's OpenAPI as schemathesis loads it, the app's lifespan running meanwhile (in
    schemathesis' own event loop thread, so the app's database and Redis clients live there)."""
    schema = schemathesis.openapi.from_asgi(openapi_path, app)
    try:
        yield schema
    finally:
        asgi.shutdown_lifespans()


def log_in(app: FastAPI, token_path: str, email: str, password: str) -> dict[str, str]:
    """The ``Authorization`` header of a user logged in as a client does (OAuth2 password
    form to ``token_path``), through the app that :func:`asgi_schema` runs."""
    with asgi.get_client(cast(Any, app)) as client:
        response = client.post(token_path, data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@contextmanager
def resolving_only(hosts: Iterable[str | None]) -> Iterator[None]:
    """``socket.getaddrinfo`` answers for ``hosts`` and loopback only; any other name or
    address fails at once as unresolvable (DECISIONS.md: fuzzing never resolves the host
    names it generates, e.g. a webhook's, and never connects out)."""
    allowed = _LOOPBACK | {host for host in hosts if host}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is None or name in allowed:
            return real(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (fuzzing)")

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = real


def _operations(schema: Any) -> list[Any]:
    operations = [cast(Any, result).ok() for result in schema.get_all_operations()]
    # Deletes last: the rows the other operations are given ids of stay until then.
    return sorted(operations, key=lambda operation: operation.method.upper() == "DELETE")


def _parameter_names(operation: Any, location: str) -> list[str]:
    return [
        parameter["name"]
        for parameter in operation.definition.raw.get("parameters", [])
        if parameter.get("in") == location
    ]


def _known(operation: Any, location: str, known: Mapping[str, str]) -> dict[str, str]:
    return {name: known[name] for name in _parameter_names(operation, location) if name in known}


def fuzz(
    schema: Any,
    *,
    headers: Mapping[str, str],
    known: Mapping[str, str] | None = None,
    max_examples: int,
    base_seed: int = 0,
) -> dict[str, set[int]]:
    """``max_examples`` generated requests to every operation, sent with ``headers``; a third
    of them (at least one) with the ``known`` path and query parameters when it takes one
    (name → value of a row that exists: ``vehicle_id``, an OsmAnd ``id``), the others positive
    or negative. Generated from ``base_seed`` (:func:`operation_seed`). Fails listing every
    operation that failed a check; returns the statuses each operation answered (by label:
    ``GET /api/v1/vehicles``)."""
    answered: dict[str, set[int]] = {}
    failures: list[str] = []
    operations = _operations(schema)
    assert operations, "no operation to fuzz"
    for operation in operations:
        statuses = answered.setdefault(operation.label, set())
        try:
            _fuzz_operation(operation, headers, known or {}, max_examples, base_seed, statuses)
        except Exception as exc:  # noqa: BLE001 - every failing operation is reported together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, (
        f"{len(failures)} of {len(operations)} operations failed "
        f"({SEED_VARIABLE}={base_seed} sends the same requests):\n\n" + "\n\n".join(failures)
    )
    return answered


def _fuzz_operation(
    operation: Any,
    headers: Mapping[str, str],
    known: Mapping[str, str],
    max_examples: int,
    base_seed: int,
    statuses: set[int],
) -> None:
    # The known ids get a third of the requests, not a chance: drawn as one branch of three,
    # 6 examples missed them in (2/3)^6, about 9 %, of the draws, and as every operation drew from
    # the same seed (see _send), most of an app's operations then answered no 2xx together.
    path, query = _known(operation, "path", known), _known(operation, "query", known)
    generated = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )
    if path or query:
        with_known = max(1, round(max_examples / 3))
        _send(
            operation.as_strategy(
                GenerationMode.POSITIVE, path_parameters=path or None, query=query or None
            ),
            headers,
            with_known,
            operation_seed(base_seed, operation.label, "known"),
            statuses,
        )
        max_examples = max(1, max_examples - with_known)
    _send(
        generated,
        headers,
        max_examples,
        operation_seed(base_seed, operation.label, "generated"),
        statuses,
    )


def _send(
    cases: st.SearchStrategy[Any],
    headers: Mapping[str, str],
    max_examples: int,
    case_seed: int,
    statuses: set[int],
) -> None:
    """Up to ``max_examples`` of ``cases`` generated from ``case_seed`` (whatever the
    hypothesis profile: its ``derandomize`` or ``--hypothesis-seed`` would give every
    operation the same one), each sent and checked."""

    @seed(case_seed)
    @given(case=cases)
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Any) -> None:
        response = case.call_and_validate(headers=dict(headers), checks=CHECKS)
        statuses.add(response.status_code)

    call()


def malformed_bodies(
    schema: Any, *, headers: Mapping[str, str], known: Mapping[str, str] | None = None
) -> int:
    """Send every operation that takes JSON a body that is not JSON: each must answer a
    documented 400 ``malformed_body`` in the envelope. Returns how many were tried."""
    failures: list[str] = []
    tried = 0
    for operation in _operations(schema):
        content = operation.definition.raw.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            continue
        tried += 1
        path_parameters = {
            name: (known or {}).get(name, str(uuid.uuid4()))
            for name in _parameter_names(operation, "path")
        }
        case = operation.Case(path_parameters=path_parameters, media_type="application/json")
        try:
            response = case.call_and_validate(
                headers={**headers, "Content-Type": "application/json"},
                checks=CHECKS,
                data=b'{"unterminated',
            )
            code = orjson.loads(response.content)["error"]["code"]
            assert (response.status_code, code) == (400, "malformed_body"), (
                response.status_code,
                code,
            )
        except Exception as exc:  # noqa: BLE001 - every failing operation is reported together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, f"{len(failures)} of {tried} operations failed:\n\n" + "\n\n".join(
        failures
    )
    return tried
