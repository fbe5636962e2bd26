"""`make demo` as a first-time user meets it: the operator `make up` made, and one line when
no stack answers."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from stand_in import StandInIngest

from milepost_devstack.net import free_ports
from milepost_sim import cli, demo

REPOSITORY = Path(__file__).resolve().parents[3]


def stack_environ(state: Path, **extra: str) -> dict[str, str]:
    """What `make up` left in ``state`` (its secrets.env) and the environment given to it."""
    state.mkdir(parents=True, exist_ok=True)
    (state / "secrets.env").write_text(
        "MILEPOST_BOOTSTRAP_EMAIL='admin@example.com'\n"
        "MILEPOST_BOOTSTRAP_PASSWORD='generated-by-make-up'\n"
    )
    return {"MILEPOST_STATE_DIR": str(state), **extra}


@pytest.mark.parametrize(
    ("given", "login"),
    [
        (
            {"MILEPOST_BOOTSTRAP_EMAIL": "me@corp.example"},
            ("me@corp.example", "generated-by-make-up"),
        ),
        ({"MILEPOST_BOOTSTRAP_PASSWORD": "my own one"}, ("admin@example.com", "my own one")),
        ({}, ("admin@example.com", "generated-by-make-up")),
    ],
)
def test_the_demo_logs_in_as_the_operator_make_up_made(
    tmp_path: Path, given: dict[str, str], login: tuple[str, str]
) -> None:
    # `make up` takes each of the two from the environment, else its file: the demo took
    # both from the file unless both were given, and logged in as an operator that was not.
    settings = demo.settings_from_environ(stack_environ(tmp_path / "state", **given), operator=True)

    assert (settings.operator_email, settings.operator_password) == login


def test_no_stack_is_one_line_saying_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    [port] = free_ports(1)  # nothing listens there
    for name, value in stack_environ(tmp_path / "state", MILEPOST_GATEWAY_PORT=str(port)).items():
        monkeypatch.setenv(name, value)

    status = cli.main(["demo"])

    assert status == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"milepost-sim: no Milepost gateway answers at http://127.0.0.1:{port}")
    assert "make up" in line


def test_the_prefix_the_demo_suggests_is_one_it_takes() -> None:
    # "choose another prefix (--prefix)", said the demo, which had no such option.
    args = cli._parser().parse_args(["demo", "--prefix", "mine-"])

    assert args.prefix == "mine-"


@pytest.fixture
def demo_without_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ingest: type[StandInIngest]
) -> Iterator[demo.DemoSettings]:
    """`make demo`'s environment with a stand-in gateway that defers every push: the
    organization's setup (which needs a stack, tests/e2e/test_sim.py) is taken as done, and
    the real fleet starts detached and keeps retrying. Stopped at the end."""
    ingest.mode, ingest.retry_after = "defer", "1"
    port = ingest.base_url.rsplit(":", 1)[1]
    for name, value in stack_environ(tmp_path / "state", MILEPOST_GATEWAY_PORT=port).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(demo, "setup", lambda _settings: demo.DemoState(api_key="mpk_demo"))
    settings = demo.settings_from_environ()
    try:
        yield settings
    finally:
        demo.stop(settings)


def test_a_second_demo_with_other_arguments_restarts_the_fleet_with_them(
    demo_without_stack: demo.DemoSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    # It said "already running: 50 vehicles" while the 10 of the first run kept going.
    assert cli.main(["demo"]) == 0
    first = demo.running_pid(demo_without_stack)
    capsys.readouterr()

    assert cli.main(["demo", "--vehicles", "3"]) == 0

    printed = capsys.readouterr().out
    second = demo.running_pid(demo_without_stack)
    assert first is not None
    assert second is not None
    assert not Path(f"/proc/{first}").exists()
    assert b"--vehicles=3" in Path(f"/proc/{second}/cmdline").read_bytes()
    assert printed.startswith("Demo fleet restarted with the new arguments: 3 vehicles")


def test_a_second_demo_with_the_same_arguments_leaves_the_fleet_alone(
    demo_without_stack: demo.DemoSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["demo", "--vehicles", "3"]) == 0
    first = demo.running_pid(demo_without_stack)
    capsys.readouterr()

    assert cli.main(["demo", "--vehicles", "3"]) == 0

    assert demo.running_pid(demo_without_stack) == first
    assert capsys.readouterr().out.startswith("Demo fleet already running: 3 vehicles")


def test_make_down_stops_the_demo_fleet(demo_without_stack: demo.DemoSettings) -> None:
    # `make down` stopped the stack and left the fleet retrying against it, forever.
    assert cli.main(["demo"]) == 0
    pid = demo.running_pid(demo_without_stack)
    assert pid is not None
    # Once `make demo` has exited, init reaps the fleet; here its parent is this test.
    reaper = threading.Thread(target=os.waitpid, args=(pid, 0), daemon=True)
    reaper.start()

    done = subprocess.run(
        ["make", "-C", str(REPOSITORY), "down"],
        env=dict(os.environ),  # MILEPOST_STATE_DIR: this test's, never a real stack's
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert f"demo fleet stopped (pid {pid})" in done.stdout
    reaper.join(timeout=5)
    assert not Path(f"/proc/{pid}").exists()
    assert not demo_without_stack.pid_file.exists()
