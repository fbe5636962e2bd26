"""``make bench`` (``python -m bench``): the ingest, worker and API benchmarks in turn, then one
report, ``bench/results/latest.json`` and ``bench/results/README.md`` (bench/report.py).

    uv run python -m bench [--smoke]

Each benchmark runs as its ``make bench-<name>`` runs it — the processes it measures started on
this machine from the local binaries (each app one server process, on its own port), a
throwaway Redis, a scratch database — and writes its RESULTS.md and its figures as JSON
(``--figures``), from which the report is built. One throwaway Postgres serves the three
unless MILEPOST_BENCH_DATABASE_URL or MILEPOST_TEST_DATABASE_URL names a server. Every process
a benchmark starts is stopped by that benchmark before the next one begins.

``--smoke``: small sizes and short phases, to check the whole chain on a loaded machine. The
benchmarks' RESULTS.md are left as they are and the report says it is a smoke run: its figures
say nothing about the bars. A benchmark that fails leaves its rows "not measured" and the run
exits 1 once the report is written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from milepost_common.testing import services

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_DIR = HERE / "results"
FULL: dict[str, list[str]] = {"ingest": [], "worker": [], "api": []}
SMOKE: dict[str, list[str]] = {
    "ingest": ["--duration", "3", "--direct-batches", "20", "--rounds", "1", "--no-write"],
    "worker": ["--vehicles", "30", "--minutes", "3", "--samples", "10"],
    "api": ["--vehicles", "50", "--days", "2", "--duration", "3", "--rounds", "1"],
}


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run_bench(name: str, argv: list[str], env: dict[str, str], work: Path) -> tuple[Any, str]:
    """Run one benchmark; its figures (None when it failed) and why they are missing."""
    figures_path = work / f"{name}.json"
    command = [sys.executable, "-m", f"bench.{name}", "--figures", str(figures_path), *argv]
    log(f"running {' '.join(command[1:])}")
    completed = subprocess.run(command, cwd=ROOT, env=env, check=False)
    if completed.returncode != 0 or not figures_path.exists():
        return None, f"bench/{name} failed (exit {completed.returncode})"
    return json.loads(figures_path.read_text()), ""


def heading(smoke: bool, load: float, started: datetime) -> list[str]:
    kind = (
        "a **smoke run** (`make bench SMOKE=1`: small sizes, one short round; the figures check"
        " the chain, not the bars, and the benchmarks' RESULTS.md were left as they were)"
        if smoke
        else "a full run (`make bench`)"
    )
    return [
        "# Benchmark report",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} cores,"
        f" load average {load:.1f} at the start, shared with other work): {kind}.",
        "",
        "Bars from DESIGN.md (Bars, performance), each ratio measured side by side in one run"
        " of its benchmark. How each figure is measured, and every other figure:"
        " [ingest](../ingest/RESULTS.md), [worker](../worker/RESULTS.md),"
        " [api](../api/RESULTS.md). The same rows as data: [latest.json](latest.json)"
        " (`{name, figure, baseline, ratio, target}`; a figure not measured is null).",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes (see the docstring)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    started, load = datetime.now(UTC), os.getloadavg()[0]
    figures: dict[str, Any] = {}
    missing: dict[str, str] = {}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="milepost-bench-")))
        env = dict(os.environ)
        if not (env.get("MILEPOST_BENCH_DATABASE_URL") or env.get("MILEPOST_TEST_DATABASE_URL")):
            log("starting a throwaway Postgres for the three benchmarks")
            env["MILEPOST_BENCH_DATABASE_URL"] = stack.enter_context(services.provide_postgres())
        for name in report.BENCHES:
            extra = SMOKE[name] if args.smoke else FULL[name]
            if args.smoke and name in ("api", "worker"):
                extra = [*extra, "--results", str(work / f"{name}-RESULTS.md")]
            figures[name], missing[name] = run_bench(name, extra, env, work)
    rows = report.rows(figures, {name: why for name, why in missing.items() if why})
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "latest.json").write_text(report.to_json(rows))
    markdown = report.to_markdown(
        rows, report.processes(figures), heading(args.smoke, load, started)
    )
    (args.results_dir / "README.md").write_text(markdown)
    print(markdown)
    failed = [why for why in missing.values() if why]
    for why in failed:
        log(why)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
