"""deploy/kubernetes: every kustomization rendered by `kubectl kustomize`, every object validated
offline. Kubernetes' own kinds by kubernetes-validate (strict: unknown fields refused); the
custom resources (Traefik's IngressRoute and Middleware, KEDA's ScaledObject and
TriggerAuthentication, the Prometheus operator's PodMonitor and PrometheusRule, which the
production overlay takes from the monitoring component) against the JSON Schemas in
deploy/kubernetes/schemas/, generated from the models Traefik's, KEDA's and the Prometheus
operator's npm packages publish (schemas/generate.py says how)."""

from __future__ import annotations

import copy
import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes_support import (
    KUBERNETES,
    KUSTOMIZATIONS,
    OVERLAYS,
    Object,
    find,
    of_kind,
    render,
    tool,
)

KUBERNETES_VERSION = "1.37.0"
SCHEMAS = KUBERNETES / "schemas"
CUSTOM_RESOURCES = {
    ("traefik.io/v1alpha1", "IngressRoute"),
    ("traefik.io/v1alpha1", "Middleware"),
    ("traefik.io/v1alpha1", "ServersTransport"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
# The monitoring component's kinds: only the kustomizations that take it render them.
MONITORING = {"PodMonitor", "PrometheusRule"}
WITH_MONITORING = {"production"}


@cache
def custom_resource_validators() -> dict[tuple[str, str], jsonschema.Draft202012Validator]:
    validators = {}
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        key = (schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"])
        validators[key] = jsonschema.Draft202012Validator(schema)
    return validators


def custom_resource_errors(obj: Object) -> list[str]:
    validator = custom_resource_validators()[(obj["apiVersion"], obj["kind"])]
    return [
        f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}"
        for e in validator.iter_errors(obj)
    ]


def is_custom(obj: Object) -> bool:
    return (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES


@pytest.fixture(scope="module", params=sorted(KUSTOMIZATIONS))
def kustomization(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


class TestValidation:
    def test_every_custom_resource_kind_has_its_schema(self) -> None:
        assert set(custom_resource_validators()) == CUSTOM_RESOURCES

    def test_kubernetes_kinds_pass_strict_schema_validation(
        self, kustomization: str, tmp_path: Path
    ) -> None:
        core = [o for o in render(kustomization) if not is_custom(o)]
        path = tmp_path / f"{kustomization}.yaml"
        path.write_text(yaml.safe_dump_all(core))

        result = subprocess.run(
            [
                tool("kubernetes-validate"),
                "--strict",
                "--quiet",
                "-k",
                KUBERNETES_VERSION,
                str(path),
            ],
            capture_output=True,
            text=True,
            check=False,
        )

        # --quiet still prints warnings: a kind without a schema would be one.
        assert (result.returncode, result.stdout + result.stderr) == (0, "")

    def test_custom_resources_pass_their_schemas(self, kustomization: str) -> None:
        objects = [o for o in render(kustomization) if is_custom(o)]

        errors = [error for o in objects for error in custom_resource_errors(o)]

        expected = {kind for _, kind in CUSTOM_RESOURCES}
        if kustomization not in WITH_MONITORING:
            expected -= MONITORING
        assert {o["kind"] for o in objects} == expected
        assert errors == []

    @pytest.mark.parametrize(
        ("kind", "name", "path", "value"),
        [
            ("IngressRoute", "api", ("spec", "routes", 0, "midlewares"), []),
            ("Middleware", "rate-limit", ("spec", "rateLimit", "average"), "many"),
            ("ScaledObject", "worker", ("spec", "minReplicas"), 2),
            ("ScaledObject", "worker", ("spec", "triggers", 0, "metadata", "listLength"), 10),
            ("TriggerAuthentication", "milepost-redis", ("spec", "secretRef"), []),
            ("PodMonitor", "milepost-apps", ("spec", "podMetricsEndpoint"), []),
            ("PodMonitor", "milepost-apps", ("spec", "podMetricsEndpoints", 0, "port"), 8001),
            ("PodMonitor", "milepost-traefik", ("spec", "namespaceSelector", "any"), "yes"),
            ("PrometheusRule", "milepost", ("spec", "groups", 0, "rules", 0, "expresion"), "up"),
            ("PrometheusRule", "milepost", ("spec", "groups", 1, "rules", 0, "labels"), ["x"]),
        ],
    )
    def test_the_schemas_refuse_unknown_fields_and_wrong_types(
        self, kind: str, name: str, path: tuple[Any, ...], value: Any
    ) -> None:
        obj = copy.deepcopy(find(render("production"), kind, name))
        target = obj
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

        assert custom_resource_errors(obj)

    def test_the_schemas_are_the_generators_output(self) -> None:
        for path in SCHEMAS.glob("*.json"):
            schema = json.loads(path.read_text())
            assert schema["description"].startswith(
                "Generated by deploy/kubernetes/schemas/generate.py from @kubernetes-models/"
            ), path.name
            assert schema["additionalProperties"] is False


class TestOverlays:
    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_each_overlay_has_its_namespace_under_restricted_pod_security(
        self, overlay: str
    ) -> None:
        objects = render(overlay)
        (namespace,) = of_kind(objects, "Namespace")

        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
            "restricted"
        )
        namespaced = [o for o in objects if o["kind"] != "Namespace"]
        assert {o["metadata"].get("namespace") for o in namespaced} == {
            namespace["metadata"]["name"]
        }

    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_each_overlay_says_where_its_pod_network_is(self, overlay: str) -> None:
        (network,) = [
            o
            for o in of_kind(render(overlay), "ConfigMap")
            if o["metadata"]["name"].startswith("milepost-network-")
        ]

        assert set(network["data"]) == {"pod-cidr"}

    def test_production_pins_every_image_and_dev_uses_local_builds(self) -> None:
        images = {
            overlay: {
                c["image"]
                for o in render(overlay)
                if o["kind"] in {"Deployment", "Job"}
                for c in [
                    *o["spec"]["template"]["spec"]["containers"],
                    *o["spec"]["template"]["spec"].get("initContainers", []),
                ]
                if c["image"].startswith("milepost-")
            }
            for overlay in OVERLAYS
        }

        assert all(image.endswith(":0.1.0") for image in images["production"])
        assert all(image.endswith(":dev") for image in images["dev"])

    def test_production_serves_on_tls_only(self) -> None:
        routes = of_kind(render("production"), "IngressRoute")

        assert {tuple(r["spec"]["entryPoints"]) for r in routes} == {("websecure",)}
        assert all(r["spec"]["tls"]["secretName"] for r in routes)

    def test_production_brings_no_secret_and_dev_generates_them(self) -> None:
        assert of_kind(render("production"), "Secret") == []
        assert {
            s["metadata"]["name"].rsplit("-", 1)[0] for s in of_kind(render("dev"), "Secret")
        } == {
            "milepost-postgres",
            "milepost-redis",
            "milepost-api-tokens",
            "milepost-admin-tokens",
            "milepost-webhook-secrets",
            "milepost-api-keys",
        }
