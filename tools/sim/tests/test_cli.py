"""`milepost-sim run` and `backfill` as a script or CI step meets them: the exit status says
whether the ingest took anything. The command runs as a process against a stand-in ingest
on a loopback port that answers as the real one does (202 with counts, 400 for an unknown
phone, 503 with Retry-After); the real ingest is exercised in tests/e2e/test_sim.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stand_in import StandInIngest


def sim(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`milepost-sim <args>` with a key of its own, three vehicles (one a phone)."""
    env = {"PATH": "/usr/bin:/bin", "MILEPOST_STATE_DIR": str(tmp_path / "state")}
    env["MILEPOST_SIM_API_KEY"] = "mpk_stand_in"
    argv = [sys.executable, "-m", "milepost_sim", *args, f"--gateway={url}", "--vehicles=3"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


RUN = ("run", "--rate=20", "--duration=1")
BACKFILL = ("backfill", "--date=2026-03-01")


@pytest.mark.parametrize(
    ("args", "mode", "why"),
    [
        (RUN, "reject", "rejected (unknown_device: "),
        (RUN, "defer", " 0 rejected, "),
        (BACKFILL, "reject", "rejected (unknown_device: "),
    ],
    ids=["run-all-rejected", "run-all-deferred", "backfill-all-rejected"],
)
def test_nothing_accepted_fails_with_one_line_saying_why(
    tmp_path: Path, ingest: type[StandInIngest], args: tuple[str, ...], mode: str, why: str
) -> None:
    ingest.mode = mode

    done = sim(tmp_path, ingest.base_url, *args)

    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("milepost-sim: no fix was accepted: "), done.stderr
    assert why in last


def test_some_rejected_beside_accepted_passes_with_a_summary(
    tmp_path: Path, ingest: type[StandInIngest]
) -> None:
    ingest.mode = "phones"

    done = sim(tmp_path, ingest.base_url, *RUN)

    assert done.returncode == 0, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert " fixes accepted; " in last
    assert "rejected (unknown_device: " in last


@pytest.mark.parametrize("args", [RUN, BACKFILL], ids=["run", "backfill"])
def test_no_gateway_fails_at_once_saying_so(tmp_path: Path, args: tuple[str, ...]) -> None:
    # Each push's ten attempts against nothing took about 90 s before the run gave up, and
    # the line then said nothing of the stack.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens there
    started = time.monotonic()

    done = sim(tmp_path, url, *args)

    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 20
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"milepost-sim: no Milepost gateway answers at {url} ("), last
