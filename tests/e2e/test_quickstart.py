"""The README's quickstart, run as written against the e2e stack (which `make up`'s code path
started: its first command is skipped), with the stack's own gateway URL and login, and
names made unique so that it can run on a stack that other tests share."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from milepost_devstack.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- quickstart:"
DEFAULT_GATEWAY = "http://127.0.0.1:8080"


def quickstart_steps() -> dict[int, str]:
    """The quickstart's commands by their number (`# N. …` comment lines start each)."""
    text = README.read_text()
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARKER) :], re.DOTALL)
    assert block is not None, "the quickstart's bash block is missing"
    steps: dict[int, list[str]] = {}
    for line in block.group(1).splitlines():
        numbered = re.match(r"# (\d)\. ", line)
        if numbered:
            steps[int(numbered.group(1))] = []
        elif not line.startswith("#"):
            steps[max(steps)].append(line)
    return {number: "\n".join(lines) for number, lines in steps.items()}


def test_readme_has_six_commands() -> None:
    steps = quickstart_steps()

    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    assert steps[1] == "make up"


def test_quickstart_ends_with_a_trip(stack: Stack, tmp_path: Path) -> None:
    steps = quickstart_steps()
    marker = uuid.uuid4().hex[:8]
    credentials = stack.credentials()
    script = "\n".join(steps[n] for n in (2, 3, 4, 5))
    # Step 6 until the worker has closed the trip (it processes in the background).
    script += f"""
for attempt in $(seq 60); do
{steps[6]} > trips.json
jq -e 'length > 0 and .[0].end_time != null' trips.json > /dev/null && break
sleep 0.5
done
"""
    for old, new in (
        (DEFAULT_GATEWAY, stack.gateway_url),
        ("admin@example.com", credentials.operator_email),
        ("owner@acme.example", f"owner-{marker}@acme.example"),
        ("van-1", f"van-{marker}"),
        ("Acme Logistics", f"Acme Logistics {marker}"),
    ):
        assert old in script
        script = script.replace(old, new)
    env = {"PATH": os.environ["PATH"], "OPERATOR_PASSWORD": credentials.operator_password}

    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    trips = (tmp_path / "trips.json").read_text()
    pushed = json.loads(run.stdout.splitlines()[0])
    assert (pushed["accepted"], pushed["rejected"]) == (6, 0)
    [trip] = json.loads(trips)
    assert trip["vehicle_name"] == "Van 1"
    assert trip["end_time"] is not None, trips
    assert (trip["start_lat"], trip["end_lat"]) == (52.52, 52.538)
    assert trip["duration_s"] == 240
    assert 2000 < trip["distance_m"] < 2003
    assert trip["max_speed"] == 30
