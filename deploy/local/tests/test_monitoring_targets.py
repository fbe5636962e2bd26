"""deploy/monitoring where it runs: in docker-compose.yml (a profile of its own, every component
scraped where it serves metrics, the exporters on the stack's Postgres and Redis, the
repository's files mounted) and in Kubernetes (the production overlay takes the component, a
PodMonitor for every pod that serves metrics and reachable by Prometheus, strict schemas, the
dashboard and rules as they are in the repository)."""

from __future__ import annotations

import json
import subprocess
import sysconfig
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_support import MONITORING, REPO, dashboard, rule_groups, run

KUBERNETES = REPO / "deploy" / "kubernetes"
# docker-compose.yml's services that serve no metrics, and why.
NOT_SCRAPED = {
    "migrate": "one-shot",
    "beat": "serves no metrics: its heartbeat through the workers is the worker's gauge",
    "postgres": "scraped through postgres-exporter",
    "redis": "scraped through redis-exporter",
    "grafana": "reads Prometheus",
}
MONITORING_SERVICES = {"prometheus", "grafana", "postgres-exporter", "redis-exporter"}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def scrape_targets() -> dict[str, str]:
    """``host:port`` -> job, from the compose Prometheus configuration (static targets, and
    the names it resolves to every container of a service)."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    targets = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets |= dict.fromkeys(static["targets"], job["job_name"])
        for dns in job.get("dns_sd_configs", []):
            targets |= {f"{name}:{dns['port']}": job["job_name"] for name in dns["names"]}
    return targets


def metrics_address(name: str, service: dict[str, Any]) -> str:
    """Where a compose service serves its metrics (``host:port``)."""
    environment = service.get("environment", {})
    if name == "traefik":
        static = tomllib.loads((REPO / "deploy" / "traefik" / "traefik.toml").read_text())
        assert static["metrics"]["prometheus"]["entryPoint"] == "metrics"
        return name + static["entryPoints"]["metrics"]["address"]
    if "MILEPOST_WORKER__METRICS_PORT" in environment:
        # Reachable from the Prometheus container only when bound to every interface.
        assert environment.get("MILEPOST_WORKER__METRICS_HOST") == "0.0.0.0"  # noqa: S104
        return f"{name}:{environment['MILEPOST_WORKER__METRICS_PORT']}"
    port = environment[f"MILEPOST_{name.upper()}__PORT"]
    return f"{name}:{port}"


class TestCompose:
    def test_monitoring_is_a_profile_of_its_own(self, services: dict[str, dict[str, Any]]) -> None:
        profiled = {name for name, service in services.items() if service.get("profiles")}

        assert profiled == MONITORING_SERVICES
        assert all(services[name]["profiles"] == ["monitoring"] for name in profiled)

    def test_every_component_is_scraped_where_it_serves_metrics(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        targets = scrape_targets()
        expected = {
            metrics_address(name, service)
            for name, service in services.items()
            if name not in NOT_SCRAPED and not service.get("profiles")
        }
        exporters = {"postgres-exporter:9187", "redis-exporter:9121"}

        assert expected | exporters <= set(targets)
        assert len(expected) == 6  # three apps, two worker groups, the gateway

    def test_exporters_watch_the_stack_s_postgres_and_redis(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        postgres = services["postgres-exporter"]["environment"]
        redis = services["redis-exporter"]["environment"]

        assert postgres["DATA_SOURCE_URI"].startswith("postgres:5432/milepost")
        assert postgres["DATA_SOURCE_USER"] == services["postgres"]["environment"]["POSTGRES_USER"]
        assert redis["REDIS_ADDR"] == "redis://redis:6379"

    def test_prometheus_and_grafana_run_the_repository_s_files(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        prometheus, grafana = services["prometheus"], services["grafana"]
        provider = yaml.safe_load(
            (MONITORING / "grafana" / "provisioning" / "dashboards" / "milepost.yml").read_text()
        )["providers"][0]
        datasource = yaml.safe_load(
            (MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
        )["datasources"][0]

        assert "./deploy/monitoring:/etc/prometheus:ro" in prometheus["volumes"]
        assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
        assert (
            "./deploy/monitoring/grafana/provisioning:/etc/grafana/provisioning:ro"
            in grafana["volumes"]
        )
        assert (
            f"./deploy/monitoring/grafana/milepost.json:{provider['options']['path']}"
            "/milepost.json:ro"
        ) in grafana["volumes"]
        assert datasource["url"] == "http://prometheus:9090"


# --- Kubernetes ----------------------------------------------------------------------------


PRODUCTION = KUBERNETES / "overlays" / "production"


@pytest.fixture(scope="module")
def kubernetes() -> list[dict[str, Any]]:
    """The production overlay, which takes the monitoring component."""
    kubectl = str(Path(sysconfig.get_path("scripts")) / "kubectl")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(PRODUCTION)], capture_output=True, text=True, check=True
    ).stdout
    return [document for document in yaml.safe_load_all(rendered) if document]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        inside = labels.get(expression["key"]) in expression["values"]
        if inside != (expression["operator"] == "In"):
            return False
    return True


def pods_serving_metrics(
    resources: list[dict[str, Any]],
) -> dict[str, tuple[dict[str, str], set[str]]]:
    """Deployment -> (pod labels, names of its container ports), for pods with a port."""
    pods = {}
    for resource in resources:
        if resource["kind"] != "Deployment":
            continue
        template = resource["spec"]["template"]
        ports = {
            port["name"]
            for container in template["spec"]["containers"]
            for port in container.get("ports", [])
        }
        if ports:
            pods[resource["metadata"]["name"]] = (template["metadata"]["labels"], ports)
    return pods


class TestKubernetes:
    def test_the_production_overlay_takes_the_component(self) -> None:
        kustomization = yaml.safe_load((PRODUCTION / "kustomization.yaml").read_text())

        assert kustomization["components"] == ["../../components/monitoring"]

    def test_a_podmonitor_scrapes_every_pod_that_serves_metrics(
        self, kubernetes: list[dict[str, Any]]
    ) -> None:
        monitors = [r for r in kubernetes if r["kind"] == "PodMonitor"]
        pods = pods_serving_metrics(kubernetes)
        scraped = {}
        for name, (labels, ports) in pods.items():
            for monitor in monitors:
                spec = monitor["spec"]
                if selects(spec["selector"], labels):
                    endpoint_ports = {e["port"] for e in spec["podMetricsEndpoints"]}
                    assert endpoint_ports <= ports, (monitor["metadata"]["name"], name)
                    assert spec["jobLabel"] in labels
                    scraped[name] = labels[spec["jobLabel"]]

        assert set(pods) == {"api", "admin", "ingest", "worker", "worker-webhooks"}
        # The job names of compose's Prometheus: the rules and the dashboard read both alike.
        assert scraped == {name: name for name in pods}
        assert set(scraped.values()) <= set(scrape_targets().values())

    def test_prometheus_may_reach_the_metrics_ports(self, kubernetes: list[dict[str, Any]]) -> None:
        [policy] = [
            r
            for r in kubernetes
            if r["kind"] == "NetworkPolicy" and r["metadata"]["name"] == "prometheus-scrape"
        ]
        allowed = {port["port"] for port in policy["spec"]["ingress"][0]["ports"]}

        for name, (labels, ports) in pods_serving_metrics(kubernetes).items():
            assert selects(policy["spec"]["podSelector"], labels), name
            assert ports & allowed, name

    def test_kubernetes_kinds_pass_strict_schema_validation(
        self, kubernetes: list[dict[str, Any]], tmp_path: Path
    ) -> None:
        # The component's own objects of Kubernetes' kinds (its PodMonitors and PrometheusRule
        # are the Prometheus operator's: test_kubernetes_manifests.py validates them against
        # the operator's schemas in deploy/kubernetes/schemas/).
        ours = [
            r
            for r in kubernetes
            if r["metadata"]["name"] in {"milepost-grafana-dashboard", "prometheus-scrape"}
        ]
        path = tmp_path / "monitoring.yaml"
        path.write_text(yaml.safe_dump_all(ours))
        validate = str(Path(sysconfig.get_path("scripts")) / "kubernetes-validate")

        result = run(validate, "--strict", "--quiet", "-k", "1.37.0", str(path))

        assert len(ours) == 2
        assert result.returncode == 0, result.stdout + result.stderr

    def test_dashboard_and_rules_ship_as_they_are_in_the_repository(
        self, kubernetes: list[dict[str, Any]]
    ) -> None:
        [dashboard_map] = [
            r
            for r in kubernetes
            if r["kind"] == "ConfigMap" and r["metadata"]["name"] == "milepost-grafana-dashboard"
        ]
        [rule] = [r for r in kubernetes if r["kind"] == "PrometheusRule"]

        assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert dashboard_map["metadata"]["namespace"] == "milepost"
        assert json.loads(dashboard_map["data"]["milepost.json"]) == dashboard()
        assert rule["spec"]["groups"] == rule_groups()
