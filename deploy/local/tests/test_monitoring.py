"""deploy/monitoring: the Prometheus scrape configuration, alert rules, Grafana dashboard and
their Kubernetes component, checked without a running Prometheus.

promtool (Debian's `prometheus` package, which `make test` installs) checks the rules and the
scrape configuration and runs the rules' unit tests (deploy/monitoring/tests/*.yml); outside
CI a machine without it skips those tests only. The other tests hold everything to the metric
names that exist (defined by Milepost's metrics modules, or seen on the exporters:
deploy/monitoring/tests/exporter-metrics.txt), to docker-compose.yml's components and to the
Kubernetes pods.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sysconfig
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import milepost_common.metrics
import milepost_ingest.metrics
import milepost_worker.metrics

REPO = Path(__file__).resolve().parents[3]
MONITORING = REPO / "deploy" / "monitoring"
RULE_FILES = sorted((MONITORING / "rules").glob("*.yml"))
RULE_TESTS = sorted((MONITORING / "tests").glob("*.yml"))
DASHBOARD = MONITORING / "grafana" / "milepost.json"
OPERATIONS = REPO / "docs" / "operations.md"
KUBERNETES = REPO / "deploy" / "kubernetes"
METRICS_MODULES = (milepost_common.metrics, milepost_ingest.metrics, milepost_worker.metrics)
# docker-compose.yml's services that serve no metrics, and why.
NOT_SCRAPED = {
    "migrate": "one-shot",
    "beat": "serves no metrics: its heartbeat through the workers is the worker's gauge",
    "postgres": "scraped through postgres-exporter",
    "redis": "scraped through redis-exporter",
    "grafana": "reads Prometheus",
}
MONITORING_SERVICES = {"prometheus", "grafana", "postgres-exporter", "redis-exporter"}
# What the dashboard must show (issue 14, item 3), by a series each panel group reads.
DASHBOARD_MUST_READ = {
    "ingest rate": "milepost_ingest_fixes_accepted_total",
    "processing lag": "milepost:processing_lag_seconds",
    "requests by route": "milepost_http_requests_total",
    "latency by route": "milepost_http_request_duration_seconds_bucket",
    "queue depth": "milepost:queue_depth",
    "webhook outcomes": "milepost_worker_webhook_attempts_total",
    "Postgres health": "pg_up",
    "Redis health": "redis_up",
}


# --- PromQL: the metric names an expression reads ----------------------------------------

_STRINGS = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS |= {"offset", "bool", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (functions, keywords and labels left out)."""
    stripped = _STRINGS.sub('""', expr)
    stripped = _MATCHERS.sub(" ", stripped)
    stripped = _RANGES.sub(" ", stripped)
    stripped = _GROUPING.sub(" ", stripped)
    return {
        name
        for name, call in _IDENTIFIER.findall(stripped)
        if not call and name.lower() not in _KEYWORDS
    }


def test_metric_names_leave_out_functions_labels_and_durations() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (app, le) (rate(a_bucket{app=~"$app", le!="x y"}'
        "[$__rate_interval]))) / on (app) group_left b:c or vector(0) and d offset 5m"
    )

    assert metric_names(expr) == {"a_bucket", "b:c", "d"}


# --- what exists ---------------------------------------------------------------------------


def code_metric_names(module: ModuleType) -> set[str]:
    """The series names a metrics module's collectors expose."""
    names: set[str] = set()
    for value in vars(module).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        for family in value.describe():
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("_sum", "_count", ""),
            }.get(family.type, ("",))
            names |= {family.name + suffix for suffix in suffixes}
    return names


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in RULE_FILES:
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


@pytest.fixture(scope="module")
def known_metrics() -> set[str]:
    exporters = {
        line.strip()
        for line in (MONITORING / "tests" / "exporter-metrics.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    code = set().union(*(code_metric_names(module) for module in METRICS_MODULES))
    return exporters | recorded | code


def test_code_metric_names_are_read_from_the_modules() -> None:
    names = code_metric_names(milepost_worker.metrics)

    assert {
        "milepost_worker_tasks_total",
        "milepost_worker_task_duration_seconds_bucket",
        "milepost_worker_queue_depth",
        "milepost_worker_heartbeat_timestamp_seconds",
    } <= names


# --- promtool ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: `make test` installs Debian's prometheus package")
        pytest.skip("promtool is missing (Debian's prometheus package; make test installs it)")
    return found


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=REPO)


class TestPromtool:
    def test_rules_are_valid(self, promtool: str) -> None:
        result = run(promtool, "check", "rules", *map(str, RULE_FILES))

        assert result.returncode == 0, result.stdout + result.stderr

    def test_rules_pass_their_unit_tests(self, promtool: str) -> None:
        assert RULE_TESTS
        result = run(promtool, "test", "rules", *map(str, RULE_TESTS))

        assert result.returncode == 0, result.stdout + result.stderr

    def test_scrape_configuration_is_valid(self, promtool: str) -> None:
        result = run(promtool, "check", "config", str(MONITORING / "prometheus.yml"))

        assert result.returncode == 0, result.stdout + result.stderr

    def test_dashboard_queries_are_valid_promql(self, promtool: str, tmp_path: Path) -> None:
        # Grafana's variables as Prometheus would receive them.
        queries = [
            expr.replace("$__rate_interval", "5m").replace("$app", ".*")
            for expr in dashboard_queries()
        ]
        as_rules = {
            "groups": [
                {
                    "name": "dashboard",
                    "rules": [
                        {"record": f"dashboard:query_{i}", "expr": expr}
                        for i, expr in enumerate(queries)
                    ],
                }
            ]
        }
        path = tmp_path / "dashboard.yml"
        path.write_text(yaml.safe_dump(as_rules))

        result = run(promtool, "check", "rules", str(path))

        assert result.returncode == 0, result.stdout + result.stderr


# --- rules ---------------------------------------------------------------------------------


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings."""
    anchors, fenced = set(), False
    for line in markdown.splitlines():
        fenced ^= line.lstrip().startswith("```")
        if not fenced and (match := re.match(r"#{1,6}\s+(.*)", line)):
            text = re.sub(r"[`*_]", "", match.group(1)).strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


class TestRules:
    def test_every_alert_has_a_severity_a_summary_and_its_runbook(self) -> None:
        anchors = github_anchors(OPERATIONS.read_text())
        problems = []
        for alert in alerts():
            name, annotations = alert["alert"], alert.get("annotations", {})
            if alert.get("labels", {}).get("severity") not in {"warning", "critical"}:
                problems.append(f"{name}: severity")
            if not annotations.get("summary") or not annotations.get("description"):
                problems.append(f"{name}: summary and description")
            url = annotations.get("runbook_url", "")
            if url != f"docs/operations.md#{name.lower()}" or name.lower() not in anchors:
                problems.append(f"{name}: runbook {url!r} (a heading `{name}` in operations.md)")

        assert problems == []

    def test_every_alert_is_unit_tested_firing(self) -> None:
        fired = {
            case["alertname"]
            for path in RULE_TESTS
            for test in yaml.safe_load(path.read_text())["tests"]
            for case in test.get("alert_rule_test", [])
            if case.get("exp_alerts")
        }

        assert {alert["alert"] for alert in alerts()} <= fired

    def test_rules_read_only_metrics_that_exist(self, known_metrics: set[str]) -> None:
        unknown = {
            (rule.get("alert") or rule["record"], name)
            for rule in rules()
            for name in metric_names(rule["expr"])
            if name not in known_metrics
        }

        assert unknown == set()

    def test_kubernetes_prometheusrule_is_rendered_from_the_rules(self) -> None:
        spec = importlib.util.spec_from_file_location(
            "prometheusrule", MONITORING / "prometheusrule.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        rendered = (MONITORING / "kubernetes" / "prometheusrule.yaml").read_text()

        assert rendered == module.render(), "run: uv run python deploy/monitoring/prometheusrule.py"
        assert yaml.safe_load(rendered)["spec"]["groups"] == rule_groups()


# --- dashboard -----------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> list[str]:
    queries = [target["expr"] for panel in panels() for target in panel.get("targets", [])]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            label_values = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert label_values, variable["definition"]
            queries.append(label_values.group(1))
    return queries


class TestDashboard:
    def test_queries_read_only_metrics_that_exist(self, known_metrics: set[str]) -> None:
        read = set().union(*map(metric_names, dashboard_queries()))

        assert read - known_metrics == set()

    def test_shows_what_operators_need(self) -> None:
        read = set().union(*map(metric_names, dashboard_queries()))

        missing = {topic for topic, metric in DASHBOARD_MUST_READ.items() if metric not in read}
        assert missing == set()

    def test_every_query_asks_the_chosen_prometheus(self) -> None:
        sources = {
            (target.get("datasource") or panel.get("datasource") or {}).get("uid")
            for panel in panels()
            for target in panel.get("targets", [])
        }

        assert sources == {"${datasource}"}
        assert "datasource" in {v["name"] for v in dashboard()["templating"]["list"]}

    def test_panel_ids_are_unique(self) -> None:
        ids = [panel["id"] for panel in panels()]

        assert len(ids) == len(set(ids))


# --- compose -------------------------------------------------------------------------------


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
