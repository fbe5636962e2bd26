"""The gateway of deploy/kubernetes, on the rendered overlays: the IngressRoutes and
Middlewares are deploy/traefik/dynamic/milepost.toml's routers and middlewares (the reference
that test_traefik_config.py runs the real Traefik on), with body limits equal to the apps'
own, and route nothing but the apps' prefixes: never /metrics. Who may reach the apps behind
it: test_kubernetes_network.py.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
from app_support import load_settings
from kubernetes_support import (
    APPS,
    REPO,
    SETTINGS,
    Object,
    container_env,
    find,
    of_kind,
    pod,
    render,
)

TRAEFIK_DYNAMIC = REPO / "deploy" / "traefik" / "dynamic" / "milepost.toml"
TEMPLATE = re.compile(r'\{\{\s*env\s+"([A-Z0-9_]+)"\s*\|\s*default\s+"([^"]*)"\s*\}\}')


def traefik_dynamic(environ: dict[str, str]) -> dict[str, Any]:
    """The file provider's configuration as Traefik renders its Go templates with `environ`."""
    text = TEMPLATE.sub(lambda m: environ.get(m[1], m[2]), TRAEFIK_DYNAMIC.read_text())
    return tomllib.loads(text)["http"]


# --- Traefik's rule language (the matchers the routes use) -------------------------------

RULE_TOKEN = re.compile(r"\s*(&&|\|\||!|\(|\)|(Path|PathPrefix|PathRegexp|Method)\(`([^`]*)`\))")


def rule_matches(rule: str, method: str, path: str) -> bool:
    """Whether a Traefik v3 rule made of Path, PathPrefix, PathRegexp and Method matches."""
    tokens: list[tuple[str, str | None, str | None]] = []
    position = 0
    while position < len(rule.rstrip()):
        match = RULE_TOKEN.match(rule, position)
        assert match, f"unsupported rule syntax at {rule[position:]!r}"
        tokens.append((match[1], match[2], match[3]))
        position = match.end()
    matchers: dict[str, Callable[[str], bool]] = {
        "Path": lambda v: path == v,
        "PathPrefix": lambda v: path.startswith(v),
        "PathRegexp": lambda v: re.match(v, path) is not None,
        "Method": lambda v: method == v,
    }

    def expression(i: int) -> tuple[bool, int]:  # or := and ("||" and)*
        value, i = conjunction(i)
        while i < len(tokens) and tokens[i][0] == "||":
            right, i = conjunction(i + 1)
            value = value or right
        return value, i

    def conjunction(i: int) -> tuple[bool, int]:
        value, i = unary(i)
        while i < len(tokens) and tokens[i][0] == "&&":
            right, i = unary(i + 1)
            value = value and right
        return value, i

    def unary(i: int) -> tuple[bool, int]:
        token, name, argument = tokens[i]
        if token == "!":
            value, i = unary(i + 1)
            return not value, i
        if token == "(":
            value, i = expression(i + 1)
            assert tokens[i][0] == ")"
            return value, i + 1
        assert name is not None
        assert argument is not None
        return matchers[name](argument), i + 1

    value, end = expression(0)
    assert end == len(tokens)
    return value


def route_for(routes: list[Object], method: str, path: str) -> str | None:
    """The IngressRoute Traefik picks: the highest priority (by default the rule's length)."""
    candidates = [
        (route["spec"]["routes"][0].get("priority", len(route["spec"]["routes"][0]["match"])), r)
        for r, route in ((route["metadata"]["name"], route) for route in routes)
        if rule_matches(route["spec"]["routes"][0]["match"], method, path)
    ]
    return max(candidates)[1] if candidates else None


class TestRoutes:
    def test_every_router_of_the_reference_is_an_ingress_route(self, overlay: str) -> None:
        routers = traefik_dynamic({})["routers"]
        routes = {r["metadata"]["name"]: r for r in of_kind(render(overlay), "IngressRoute")}

        assert set(routes) == set(routers)
        for name, router in routers.items():
            (route,) = routes[name]["spec"]["routes"]
            assert route["match"] == router["rule"], name
            assert route.get("priority") == router.get("priority"), name
            assert [m["name"] for m in route["middlewares"]] == router["middlewares"], name
            (service,) = route["services"]
            upstream = traefik_dynamic({})["services"][router["service"]]
            (server,) = upstream["loadBalancer"]["servers"]
            assert f"http://{service['name']}:{service['port']}" == server["url"], name
            assert service.get("serversTransport") == upstream["loadBalancer"]["serversTransport"]
            access_logs = router.get("observability", {}).get("accessLogs", True)
            assert route.get("observability", {}).get("accessLogs", True) == access_logs

    def test_servers_transports_are_the_references(self, overlay: str) -> None:
        # The wait for an app's answer to begin: a hung app is a 504 (deploy/traefik).
        reference = traefik_dynamic({})["serversTransports"]
        transports = {
            t["metadata"]["name"]: t["spec"] for t in of_kind(render(overlay), "ServersTransport")
        }

        assert transports == reference

    def test_middlewares_are_the_references(self, overlay: str) -> None:
        reference = traefik_dynamic({})["middlewares"]
        middlewares = {
            m["metadata"]["name"]: m["spec"] for m in of_kind(render(overlay), "Middleware")
        }

        assert set(middlewares) == set(reference)
        for name, spec in middlewares.items():
            expected = reference[name]
            if "rateLimit" in expected:
                expected = {"rateLimit": {**expected["rateLimit"], "period": "1s"}}
            assert spec == expected, name

    def test_body_limits_are_the_apps_own(
        self, overlay: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        objects = render(overlay)
        limits = {
            m["metadata"]["name"]: m["spec"]["buffering"]["maxRequestBodyBytes"]
            for m in of_kind(objects, "Middleware")
            if "buffering" in m["spec"]
        }
        http = {
            app: getattr(
                load_settings(
                    SETTINGS[app], container_env(objects, pod(objects, app).main), monkeypatch
                ),
                app,
            )
            for app in ("api", "admin")
        }

        assert limits == {
            "api-body-limit": http["api"].max_body_bytes,
            "admin-body-limit": http["admin"].max_body_bytes,
            "admin-import-body-limit": http["admin"].max_import_body_bytes,
        }

    def test_each_route_reaches_the_service_of_its_app(self, overlay: str) -> None:
        objects = render(overlay)

        for route in of_kind(objects, "IngressRoute"):
            (service_ref,) = route["spec"]["routes"][0]["services"]
            service = find(objects, "Service", service_ref["name"])
            (port,) = service["spec"]["ports"]
            assert port["port"] == service_ref["port"]
            target = pod(objects, service["spec"]["selector"]["app.kubernetes.io/name"])
            assert target.name in APPS
            assert port["targetPort"] in {p["name"] for p in target.main["ports"]}

    @pytest.mark.parametrize(
        ("method", "path", "expected"),
        [
            ("GET", "/metrics", None),
            ("GET", "/metrics/", None),
            ("POST", "/metrics", None),
            ("GET", "/ping", None),
            ("GET", "/docs", None),
            ("GET", "/apix", None),
            ("GET", "/", "landing"),
            ("POST", "/", None),
            ("GET", "/api", "api-reads"),
            ("POST", "/api/v1/auth/token", "api"),
            ("GET", "/api/v1/vehicles", "api-reads"),
            ("GET", "/admin/", "admin-reads"),
            ("PATCH", "/admin/v1/devices/1", "admin"),
            ("POST", "/admin/v1/organizations/o/devices/import", "admin-imports"),
            ("POST", "/admin/organizations/o/devices/import", "admin-imports"),
            ("POST", "/admin/organizations/o/export", "admin-exports"),
            ("POST", "/admin/v1/organizations/o/export", "admin-exports"),
            ("POST", "/ingest/v1/positions", "ingest"),
            ("GET", "/ingest/osmand/key", "ingest-osmand"),
        ],
    )
    def test_requests_reach_the_route_the_reference_gives_them(
        self, overlay: str, method: str, path: str, expected: str | None
    ) -> None:
        assert route_for(of_kind(render(overlay), "IngressRoute"), method, path) == expected

    def test_metrics_are_never_routed(self, overlay: str) -> None:
        routes = of_kind(render(overlay), "IngressRoute")

        for method in ("GET", "HEAD", "POST", "PUT", "DELETE"):
            for path in ("/metrics", "/metrics/", "/metrics?x=1", "/metrics/x"):
                assert route_for(routes, method, path) is None
