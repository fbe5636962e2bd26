"""The README and docs/ against the code they describe: every ``MILEPOST_*`` variable they name
exists with the default they give, every setting an operator tunes is named there, and every
relative link and anchor resolves. Cheap (no database, no stack): a renamed setting or a moved
heading fails here instead of in a reader's first hour."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from milepost_admin.settings import AdminSettings
from milepost_api.settings import ApiSettings
from milepost_common.settings import DownloadSettings, HttpSettings
from milepost_devstack.config import PORT_VARIABLES, Ports
from milepost_ingest.settings import IngestSettings
from milepost_worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
SETTINGS = (ApiSettings, AdminSettings, IngestSettings, WorkerSettings)
APP_GROUPS = ("API", "ADMIN", "INGEST")
# Read outside the settings classes: by `make up` (deploy/local), Traefik's configuration,
# the simulator, the test plugin and the benchmarks. Each must appear in that code.
OTHER_VARIABLE_HOMES = ("deploy", "tools", "bench", "libs/common/src/milepost_common/testing")
# Settings documented by their class only: internals a deployment does not change, or knobs
# whose right value follows from another setting. An operator's setting belongs in the docs.
CLASS_ONLY = frozenset(
    {
        "MILEPOST_AUTH__ISSUER",
        "MILEPOST_AUTH__PRINCIPAL_CACHE_S",
        "MILEPOST_DB__CONNECT_TIMEOUT_S",
        "MILEPOST_DB__ECHO",
        "MILEPOST_DB__PLAN_CACHE_MODE",
        "MILEPOST_REDIS__SOCKET_TIMEOUT_S",
        "MILEPOST_ADMIN__SESSION_COOKIE",
        "MILEPOST_API__LATEST_POSITIONS_CACHE_S",
        "MILEPOST_API__SUMMARY_CACHE_S",
        "MILEPOST_API__STREAM_AUTH_TIMEOUT_S",
        "MILEPOST_API__STREAM_PING_INTERVAL_S",
        "MILEPOST_API__STREAM_QUEUE_SIZE",
        "MILEPOST_API__STREAM_SEND_TIMEOUT_S",
        "MILEPOST_INGEST__FILTERS_CACHE_S",
        "MILEPOST_INGEST__PARTITIONS_CACHE_S",
        "MILEPOST_INGEST__KEY_USAGE_FLUSH_S",
        "MILEPOST_INGEST__OSMAND_LINGER_S",
        "MILEPOST_INGEST__OSMAND_MAX_FIXES",
        "MILEPOST_INGEST__TUNE_GC",
        "MILEPOST_WORKER__BATCH_MAX_RETRIES",
        "MILEPOST_WORKER__MAINTENANCE_INTERVAL_S",
        "MILEPOST_WORKER__OFFLINE_INTERVAL_S",
        "MILEPOST_WORKER__RETRY_BACKOFF_BASE_S",
        "MILEPOST_WORKER__RETRY_BACKOFF_MAX_S",
        "MILEPOST_WORKER__SOFT_SHUTDOWN_TIMEOUT_S",
        "MILEPOST_WORKER__WEBHOOK_CLAIM_S",
        "MILEPOST_WORKER__WEBHOOK_SWEEP_INTERVAL_S",
    }
)
SHARED_APP_FIELDS = frozenset({*HttpSettings.model_fields, *DownloadSettings.model_fields})


def settings_defaults() -> dict[str, set[object]]:
    """Every variable the services read, with its defaults (one per service that reads it)."""
    found: dict[str, set[object]] = {}
    for cls in SETTINGS:
        for group, field in cls.model_fields.items():
            model = field.annotation
            if isinstance(model, type) and issubclass(model, BaseModel):
                for name, setting in model.model_fields.items():
                    variable = f"MILEPOST_{group.upper()}__{name.upper()}"
                    found.setdefault(variable, set()).add(_default(setting.default))
            else:
                found.setdefault(f"MILEPOST_{group.upper()}", set()).add(_default(field.default))
    return found


def other_defaults() -> dict[str, set[object]]:
    """The defaults of the variables `make up` and Traefik's configuration read themselves."""
    found: dict[str, set[object]] = {
        PORT_VARIABLES[port.name]: {port.default} for port in fields(Ports)
    }
    traefik = (ROOT / "deploy/traefik/dynamic/milepost.toml").read_text()
    for variable, value in re.findall(r'env "(MILEPOST_\w+)" \| default "([^"]*)"', traefik):
        found.setdefault(variable, set()).add(value)
    return found


def _default(value: object) -> object:
    if value is PydanticUndefined or isinstance(value, (list, dict)):
        return None
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return getattr(value, "value", value)


def named_variables(text: str) -> Iterator[tuple[int, str]]:
    """(line, variable) for every variable named, shorthand expanded: a `` `__POOL_SIZE` ``
    after `MILEPOST_DB__URL` on the same line is `MILEPOST_DB__POOL_SIZE`."""
    for number, line in enumerate(text.splitlines(), 1):
        group = None
        for match in re.finditer(
            r"MILEPOST_(?:([A-Z0-9]+)__)?([A-Z0-9_]*[A-Z0-9])|(?<![A-Z0-9_])__([A-Z0-9_]*[A-Z0-9])",
            line,
        ):
            full_group, name, short = match.groups()
            if short is not None:
                if group is not None:
                    yield number, f"MILEPOST_{group}__{short}"
                continue
            if full_group is not None:
                group = full_group
                yield number, f"MILEPOST_{full_group}__{name}"
            else:
                yield number, f"MILEPOST_{name}"


def documented() -> dict[str, str]:
    """Every variable the README and docs/ name, with where it is first named."""
    found: dict[str, str] = {}
    for path in DOCS:
        for number, variable in named_variables(path.read_text()):
            found.setdefault(variable, f"{path.relative_to(ROOT)}:{number}")
    return found


def code_outside_settings() -> str:
    homes = [ROOT / home for home in OTHER_VARIABLE_HOMES]
    files = [ROOT / "docker-compose.yml", ROOT / "Makefile"]
    for home in homes:
        files += [p for p in home.rglob("*") if p.suffix in {".py", ".toml", ".yml", ".yaml"}]
    return "\n".join(p.read_text() for p in files if "/tests/" not in p.as_posix())


def test_every_variable_the_docs_name_exists() -> None:
    known = settings_defaults()
    other_code = code_outside_settings()

    missing = [
        f"{where}: {variable}"
        for variable, where in documented().items()
        if variable not in known and variable not in other_code
    ]

    assert not missing, "named in the docs, read by nothing:\n" + "\n".join(missing)


def test_every_operators_setting_is_documented() -> None:
    named = documented()

    def is_named(variable: str) -> bool:
        group, _, field = variable.removeprefix("MILEPOST_").partition("__")
        if variable in named:
            return True
        # "MILEPOST_API__PORT, ... (`__HOST` ... likewise)", "(same for admin, ingest)".
        return (
            group in APP_GROUPS
            and field.lower() in SHARED_APP_FIELDS
            and any(f"MILEPOST_{app}__{field}" in named for app in APP_GROUPS)
        )

    undocumented = sorted(v for v in settings_defaults() if v not in CLASS_ONLY and not is_named(v))
    stale = sorted(v for v in CLASS_ONLY if v in named or v not in settings_defaults())

    assert not undocumented, "settings no doc names (document them, or list them in CLASS_ONLY)"
    assert not stale, "CLASS_ONLY holds settings the docs name, or no class has"


def configuration_rows() -> Iterator[tuple[str, list[str], str]]:
    """(row, variables, default cell) of the README's Configuration table."""
    text = README.read_text()
    table = text[text.index("## Configuration") :]
    table = table[: table.index("\n## ")]
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`MILEPOST_"):
            continue
        variables = [v for _, v in named_variables(cells[0])]
        yield line, variables, cells[1]


# How the table writes a default that is not a value.
WORDS = {"empty": "", "unset": "None"}


def _as_doc(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@pytest.mark.parametrize(
    ("variables", "defaults"),
    [
        pytest.param(variables, cell, id=variables[0])
        for _, variables, cell in configuration_rows()
        if variables[0] in settings_defaults() | other_defaults()
        and re.fullmatch(r"(`[^`]*`|[\w.]+)(, (`[^`]*`|[\w.]+))*", cell)
    ],
)
def test_the_configuration_tables_defaults_are_the_settings(
    variables: list[str], defaults: str
) -> None:
    """Rows whose default cell is a plain list, one value a variable (after the parenthesised
    ones, which the meaning column explains)."""
    known = other_defaults() | settings_defaults()
    given = [WORDS.get(value, value.strip("`")) for value in defaults.split(", ")]
    checked = [v for v in variables if v in known][: len(given)]

    assert len(checked) == len(given), f"{variables}: {given}"
    for variable, value in zip(checked, given, strict=True):
        assert value in {_as_doc(d) for d in known[variable]}, f"{variable}: README says {value}"


def test_every_make_target_the_docs_show_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))
    shown = {
        (path.name, target)
        for path in DOCS
        # In code: `make up`, `make demo DEMO_ARGS=...`, a bash block's `make up && make ...`.
        for target in re.findall(r"(?:`|^|&& |; )make ([a-z][a-z-]*)", path.read_text(), re.M)
    }

    assert shown, "no make command found: the pattern is wrong"
    assert not {(name, target) for name, target in shown if target not in targets}


# Served, but in no OpenAPI document: the live stream is a WebSocket.
NOT_IN_OPENAPI = frozenset({"/api/v1/stream"})
ROUTE = re.compile(
    r"(?:\b(GET|POST|PUT|PATCH|DELETE)(?:\|(?:GET|POST|PUT|PATCH|DELETE))*`? `?)?"
    r"(/ingest/osmand/<[^>]*>|/(?:api|admin)/v1/[\w\-/{}.$…*]*|/ingest/(?:v1|osmand)/[\w\-/{}.$…*]*)"
)


def openapi_operations() -> dict[str, set[str]]:
    """Each path of the committed OpenAPI documents (parameters as ``{}``) with its methods."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "docs" / "openapi").glob("*.json")):
        for route, operations in json.loads(path.read_text())["paths"].items():
            methods = {method.upper() for method in operations}
            found.setdefault(re.sub(r"\{[^}]+\}", "{}", route), set()).update(methods)
    return found


def test_every_route_the_docs_show_is_served() -> None:
    """`POST /admin/v1/api-keys/{id}/revoke`, `/ingest/osmand/<api key>`, `/api/v1/reports/*.csv`:
    a path with its parameters written any way, and its method where one is given."""
    operations = openapi_operations()
    wrong = []
    for doc in DOCS:
        for match in ROUTE.finditer(doc.read_text()):
            method, shown = match.group(1), match.group(2).split("?")[0].rstrip(".")
            route = re.sub(r"\{[^}]*\}|<[^>]*>|\$\w+|…", "{}", shown)
            if route in NOT_IN_OPENAPI:
                continue
            paths = [
                p for p in operations if re.fullmatch(re.escape(route).replace(r"\*", r"[^/]*"), p)
            ]
            if not paths:
                wrong.append(f"{doc.name}: {shown}")
            elif method and not any(method in operations[p] for p in paths):
                wrong.append(f"{doc.name}: {method} {shown}")

    assert not wrong


def markdown_files() -> list[Path]:
    return [*DOCS, *sorted(ROOT.glob("bench/**/*.md"))]


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors (lower case, punctuation dropped, spaces as hyphens)."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.*)$", text, re.MULTILINE)
    }


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for link in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if re.match(r"[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        resolved = (path.parent / target).resolve() if target else path
        if not resolved.exists() or (
            anchor and resolved.suffix == ".md" and anchor not in anchors(resolved)
        ):
            broken.append(link)

    assert not broken
