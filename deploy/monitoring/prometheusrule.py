"""Render kubernetes/prometheusrule.yaml from rules/milepost.yml: the same groups as a
PrometheusRule, for clusters with the Prometheus operator. Run it after editing the rules:

    uv run python deploy/monitoring/prometheusrule.py

deploy/local/tests/test_monitoring.py fails while the rendered file is stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "rules" / "milepost.yml"
TARGET = HERE / "kubernetes" / "prometheusrule.yaml"
HEADER = (
    "# Generated from deploy/monitoring/rules/milepost.yml by deploy/monitoring/prometheusrule.py:"
    "\n# edit the rules there and run it again.\n"
)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the longer expressions) as literal blocks, as in the rules file."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def render() -> str:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "milepost", "labels": {"app.kubernetes.io/part-of": "milepost"}},
        "spec": {"groups": groups},
    }
    return HEADER + yaml.dump(rule, Dumper=_Dumper, sort_keys=False, width=100)


if __name__ == "__main__":
    TARGET.write_text(render())
