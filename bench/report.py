"""One benchmark report from the figures the three benchmarks write (``--figures``).

Pure: figures in, ``latest.json`` and ``README.md`` text out. ``rows`` holds the bars of
DESIGN.md ("Bars", performance), each from figures a benchmark measured; a figure that was not
measured stays ``None`` and its row says why, nothing is estimated. Standard library only, so
the report can be rebuilt and tested without the benchmarks' dependencies.

Figures, by benchmark (what ``bench/<name>/run.py --figures`` writes):

- ingest: ``fixes_per_s`` by path (``gateway``, ``dedupe``, ``unnest``, ``staging``, ``copy``)
- worker: ``celery``, ``in_process``, ``pure`` (fixes/s), ``p50``, ``p95`` (ms)
- api: ``rps`` by endpoint (``bare``, ``positions``, ``latest``, ``summary``, ``health``,
  ``direct``: the positions statement straight from asyncpg)
- each: ``peak_rss_kib`` by process it started (VmHWM read after the load)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

BENCHES = ("ingest", "worker", "api")

Figures = Mapping[str, Any] | None


@dataclass(frozen=True)
class Row:
    """One bar: ``figure`` against ``baseline`` (``ratio`` = figure / baseline), and the
    target: ``ratio >= x``, ``figure <= x <unit>``, or None for a row printed for context."""

    name: str
    figure: float | None
    baseline: float | None
    ratio: float | None
    target: str | None
    # Why a figure is missing (the report's table only; not in latest.json).
    missing: str = field(default="", compare=False)

    @property
    def passed(self) -> bool | None:
        """True or False against the target; None without a target or a figure."""
        if self.target is None or self.figure is None:
            return None
        subject, operator, bound = self.target.split()[:3]
        value = self.ratio if subject == "ratio" else self.figure
        if value is None:
            return None
        return value >= float(bound) if operator == ">=" else value <= float(bound)

    def as_json(self) -> dict[str, Any]:
        """The row for latest.json: rates to 0.1, ratios to 0.001."""
        record = asdict(self)
        del record["missing"]
        for key, digits in (("figure", 1), ("baseline", 1), ("ratio", 3)):
            if record[key] is not None:
                record[key] = round(record[key], digits)
        return record


@dataclass(frozen=True)
class Process:
    """One service process's peak RSS under a benchmark's load (KiB; None: not measured)."""

    name: str
    bench: str | None
    peak_rss_kib: int | None


def _pick(figures: Figures, *path: str) -> float | None:
    value: Any = figures
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) else None


def _row(
    name: str, figure: float | None, baseline: float | None, target: str | None, why: str
) -> Row:
    ratio = figure / baseline if figure is not None and baseline else None
    # A ratio bar needs both figures; a bar on the figure itself, or context, only the figure.
    needs_ratio = target is not None and target.startswith("ratio")
    measured = figure is not None and (ratio is not None or not needs_ratio)
    return Row(name, figure, baseline, ratio, target, "" if measured else why)


def rows(figures: Mapping[str, Figures], missing: Mapping[str, str] | None = None) -> list[Row]:
    """The bars of DESIGN.md from each benchmark's figures (None: that benchmark gave none;
    ``missing`` says why, by benchmark)."""
    missing = missing or {}

    def why(bench: str) -> str:
        return missing.get(bench) or f"not measured by bench/{bench}"

    ingest, worker, api = (figures.get(name) for name in BENCHES)
    dedupe = _pick(ingest, "fixes_per_s", "dedupe")
    health = _pick(api, "rps", "health")
    return [
        _row(
            "ingest through the gateway vs the direct asyncpg write of the same rows with the"
            " same dedupe statement (fixes/s)",
            _pick(ingest, "fixes_per_s", "gateway"),
            dedupe,
            "ratio >= 0.5",
            why("ingest"),
        ),
        _row(
            "plain COPY of the same rows, no dedupe: the floor, for context (fixes/s)",
            _pick(ingest, "fixes_per_s", "copy"),
            dedupe,
            None,
            why("ingest"),
        ),
        _row(
            "positions read through the api vs the same statement sent straight from asyncpg"
            " (req/s vs queries/s)",
            _pick(api, "rps", "positions"),
            _pick(api, "rps", "direct"),
            "ratio >= 0.5",
            why("api"),
        ),
        _row(
            "cached read: the fleet's latest positions vs /api/health (req/s)",
            _pick(api, "rps", "latest"),
            health,
            "ratio >= 0.5",
            why("api"),
        ),
        _row(
            "cached read: the 7-day summary report vs /api/health (req/s)",
            _pick(api, "rps", "summary"),
            health,
            "ratio >= 0.5",
            why("api"),
        ),
        _row(
            "/api/health vs a bare FastAPI endpoint, one uvicorn process each (req/s)",
            health,
            _pick(api, "rps", "bare"),
            "ratio >= 0.7",
            why("api"),
        ),
        _row(
            "worker through Celery vs the same handlers called in-process on the same"
            " database (fixes/s)",
            _pick(worker, "celery"),
            _pick(worker, "in_process"),
            "ratio >= 0.5",
            why("worker"),
        ),
        _row(
            "ingest-to-alert-stored p95 on an idle worker (ms; ingest's commit and publish"
            " as ingest runs them, not through the gateway)",
            _pick(worker, "p95"),
            None,
            "figure <= 500 ms",
            why("worker"),
        ),
    ]


def processes(figures: Mapping[str, Figures]) -> list[Process]:
    """The peak RSS of each process a benchmark started under load, by benchmark; admin,
    which no benchmark loads, and a benchmark that gave no figures say not measured."""
    found: list[Process] = []
    for bench in BENCHES:
        measured = (figures.get(bench) or {}).get("peak_rss_kib") or {}
        if not measured:
            found.append(Process(f"{bench} (every process)", bench, None))
        found += [Process(name, bench, kib) for name, kib in measured.items()]
    found.append(Process("admin", None, None))
    return found


def to_json(report_rows: list[Row]) -> str:
    return json.dumps([row.as_json() for row in report_rows], indent=2) + "\n"


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.0f}"


def _result(row: Row) -> str:
    if row.missing:
        return f"not measured: {row.missing}"
    return {True: "pass", False: "**FAIL**", None: "context (no bar)"}[row.passed]


def to_markdown(report_rows: list[Row], report_processes: list[Process], heading: list[str]) -> str:
    """The report: ``heading`` lines, the bars with pass or fail, each service process's
    peak RSS under load."""
    lines = [*heading, "", "| bar | figure | baseline | ratio | target | result |"]
    lines.append("|---|---:|---:|---:|---|---|")
    for row in report_rows:
        ratio = "–" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append(
            f"| {row.name} | {_number(row.figure)} | {_number(row.baseline)} | {ratio}"
            f" | {row.target or '–'} | {_result(row)} |"
        )
    lines += [
        "",
        "Peak resident memory (VmHWM, read from `/proc` once the benchmark's load is over) of"
        " each service process the benchmarks start:",
        "",
        "| process | under the load of | peak RSS MiB |",
        "|---|---|---:|",
    ]
    for process in report_processes:
        bench = f"bench/{process.bench}" if process.bench else "no benchmark"
        rss = (
            f"{process.peak_rss_kib / 1024:,.1f}"
            if process.peak_rss_kib is not None
            else "not measured"
        )
        lines.append(f"| {process.name} | {bench} | {rss} |")
    return "\n".join(lines) + "\n"
