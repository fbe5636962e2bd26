"""`make bench`'s report writer: the benchmarks' figures in, latest.json and the table out."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _load_report() -> ModuleType:
    """bench/report.py (the benchmarks run from the checkout's root and are not installed)."""
    path = Path(__file__).resolve().parents[2] / "bench" / "report.py"
    spec = importlib.util.spec_from_file_location("bench_report", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


report = _load_report()

FIGURES: dict[str, Any] = {
    "ingest": {
        "target": "own stack",
        "fixes_per_s": {"gateway": 78_000.0, "dedupe": 150_000.0, "copy": 226_000.0},
        "peak_rss_kib": {"ingest app": 204_800, "Traefik": 102_400},
    },
    "worker": {
        "celery": 1_800.0,
        "in_process": 2_300.0,
        "p95": 55.0,
        "peak_rss_kib": {"worker (main)": 150_000, "worker (child 1)": 180_000},
    },
    "api": {
        "rps": {
            "bare": 9_800.0,
            "positions": 570.0,
            "direct": 3_150.0,
            "latest": 590.0,
            "summary": 210.0,
            "health": 4_200.0,
        },
        "peak_rss_kib": {"api": 256_000},
    },
}


def by_name(rows: list[Any], start: str) -> Any:
    return next(row for row in rows if row.name.startswith(start))


class TestRows:
    def test_each_bar_is_the_ratio_of_the_benchmarks_own_figures(self) -> None:
        rows = report.rows(FIGURES)

        ingest = by_name(rows, "ingest through the gateway")
        assert (ingest.figure, ingest.baseline) == (78_000.0, 150_000.0)
        assert ingest.ratio == pytest.approx(0.52)
        assert by_name(rows, "positions read").ratio == pytest.approx(570 / 3_150)
        assert by_name(rows, "cached read: the fleet").baseline == 4_200.0
        assert by_name(rows, "/api/health").ratio == pytest.approx(4_200 / 9_800)

    def test_pass_and_fail_follow_the_targets(self) -> None:
        rows = report.rows(FIGURES)

        assert by_name(rows, "ingest through the gateway").passed is True
        assert by_name(rows, "positions read").passed is False
        assert by_name(rows, "/api/health").passed is False
        assert by_name(rows, "worker through Celery").passed is True
        assert by_name(rows, "ingest-to-alert-stored p95").passed is True
        assert by_name(rows, "plain COPY").passed is None

    def test_a_benchmark_without_figures_leaves_its_rows_not_measured(self) -> None:
        rows = report.rows({**FIGURES, "api": None}, {"api": "bench/api failed (exit 1)"})

        health = by_name(rows, "/api/health")
        assert (health.figure, health.ratio, health.passed) == (None, None, None)
        assert health.missing == "bench/api failed (exit 1)"
        assert by_name(rows, "worker through Celery").missing == ""

    def test_a_missing_baseline_is_not_measured_rather_than_guessed(self) -> None:
        api = {**FIGURES["api"], "rps": {**FIGURES["api"]["rps"], "direct": None}}

        positions = by_name(report.rows({**FIGURES, "api": api}), "positions read")

        assert positions.figure == 570.0
        assert positions.ratio is None
        assert positions.missing


class TestToJson:
    def test_a_list_of_name_figure_baseline_ratio_target(self) -> None:
        records = json.loads(report.to_json(report.rows({**FIGURES, "worker": None})))

        assert all(
            set(record) == {"name", "figure", "baseline", "ratio", "target"} for record in records
        )
        celery = next(r for r in records if r["name"].startswith("worker through Celery"))
        assert celery["figure"] is None
        assert celery["target"] == "ratio >= 0.5"


class TestToMarkdown:
    def test_table_says_pass_or_fail_and_lists_each_process_peak_rss(self) -> None:
        rows = report.rows({**FIGURES, "worker": None}, {"worker": "bench/worker failed"})

        text = report.to_markdown(rows, report.processes(FIGURES), ["# Benchmark report"])

        lines = text.splitlines()
        assert lines[0] == "# Benchmark report"
        assert "| pass |" in by_line(lines, "| ingest through the gateway")
        assert "| **FAIL** |" in by_line(lines, "| positions read")
        assert "not measured: bench/worker failed" in by_line(lines, "| worker through Celery")
        assert "| 250.0 |" in by_line(lines, "| api |")
        assert "| 100.0 |" in by_line(lines, "| Traefik |")
        assert "| 175.8 |" in by_line(lines, "| worker (child 1) |")
        assert "not measured" in by_line(lines, "| admin |")


def by_line(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.startswith(start))
