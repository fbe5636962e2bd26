"""deploy/kubernetes: rendered by `kubectl kustomize`, validated offline by kubernetes-validate."""

from __future__ import annotations

import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

KUBERNETES = Path(__file__).resolve().parents[2] / "kubernetes"
KUSTOMIZATIONS = {"base": KUBERNETES / "base", "production": KUBERNETES / "overlays" / "production"}
KUBERNETES_VERSION = "1.37.0"
APPS = ("api", "admin", "ingest")


def tool(name: str) -> str:
    return str(Path(sysconfig.get_path("scripts")) / name)


def render(kustomization: Path, target: Path) -> list[dict[str, Any]]:
    rendered = subprocess.run(
        [tool("kubectl"), "kustomize", str(kustomization)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    target.write_text(rendered)
    return [document for document in yaml.safe_load_all(rendered) if document]


@pytest.fixture(scope="module", params=sorted(KUSTOMIZATIONS))
def rendered(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict[str, Any]]]:
    target = tmp_path_factory.mktemp("kustomize") / f"{request.param}.yaml"
    return target, render(KUSTOMIZATIONS[request.param], target)


def find(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def pod_specs(resources: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for resource in resources:
        if resource["kind"] in {"Deployment", "Job"}:
            yield resource["metadata"]["name"], resource["spec"]["template"]["spec"]


class TestRenderedManifests:
    def test_pass_strict_schema_validation(
        self, rendered: tuple[Path, list[dict[str, Any]]]
    ) -> None:
        path, _ = rendered

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

        assert result.returncode == 0, result.stdout + result.stderr

    @pytest.mark.parametrize("app", APPS)
    def test_app_probes_health_and_ready(
        self, rendered: tuple[Path, list[dict[str, Any]]], app: str
    ) -> None:
        (container,) = find(rendered[1], "Deployment", app)["spec"]["template"]["spec"][
            "containers"
        ]

        assert container["livenessProbe"]["httpGet"]["path"] == f"/{app}/health"
        assert container["readinessProbe"]["httpGet"]["path"] == f"/{app}/ready"

    @pytest.mark.parametrize("app", APPS)
    def test_app_is_autoscaled_and_exposed(
        self, rendered: tuple[Path, list[dict[str, Any]]], app: str
    ) -> None:
        resources = rendered[1]

        hpa = find(resources, "HorizontalPodAutoscaler", app)
        service = find(resources, "Service", app)

        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": app,
        }
        assert service["spec"]["selector"] == {"app.kubernetes.io/name": app}

    def test_exactly_one_beat_even_during_rollouts(
        self, rendered: tuple[Path, list[dict[str, Any]]]
    ) -> None:
        beat = find(rendered[1], "Deployment", "beat")

        assert beat["spec"]["replicas"] == 1
        assert beat["spec"]["strategy"] == {"type": "Recreate"}

    def test_migrations_run_as_a_job(self, rendered: tuple[Path, list[dict[str, Any]]]) -> None:
        job = find(rendered[1], "Job", "migrate")

        assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"

    def test_every_pod_reads_the_config_and_the_secret(
        self, rendered: tuple[Path, list[dict[str, Any]]]
    ) -> None:
        for name, spec in pod_specs(rendered[1]):
            sources = spec["containers"][0]["envFrom"]
            config_maps = [s["configMapRef"]["name"] for s in sources if "configMapRef" in s]
            secrets = [s["secretRef"]["name"] for s in sources if "secretRef" in s]
            # kustomize suffixes generated ConfigMaps with a content hash (rollout on change).
            assert [n.startswith("milepost-config-") for n in config_maps] == [True], name
            assert secrets == ["milepost-secrets"], name

    def test_no_pod_runs_as_root(self, rendered: tuple[Path, list[dict[str, Any]]]) -> None:
        for name, spec in pod_specs(rendered[1]):
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            for container in spec["containers"]:
                assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
