"""deploy/monitoring: the Prometheus scrape configuration, alert rules, Grafana dashboard and
their Kubernetes component, checked without a running Prometheus.

promtool (Debian's `prometheus` package, which `make test` installs) checks the rules and the
scrape configuration and runs the rules' unit tests (deploy/monitoring/tests/*.yml); outside
CI a machine without it skips those tests only. The other tests hold everything to the metric
names that exist (defined by Milepost's metrics modules, or seen on the exporters:
deploy/monitoring/tests/exporter-metrics.txt), to docker-compose.yml's components and to the
Kubernetes pods (what scrapes what, in compose and in Kubernetes: test_monitoring_targets.py).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from monitoring_support import MONITORING, REPO, RULE_FILES, dashboard, rule_groups, run
from prometheus_client.metrics import MetricWrapperBase

import milepost_common.metrics
import milepost_ingest.metrics
import milepost_worker.metrics

RULE_TESTS = sorted((MONITORING / "tests").glob("*.yml"))
OPERATIONS = REPO / "docs" / "operations.md"
METRICS_MODULES = (milepost_common.metrics, milepost_ingest.metrics, milepost_worker.metrics)
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
