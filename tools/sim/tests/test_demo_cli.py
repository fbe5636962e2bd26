"""`make demo` as a first-time user meets it: the operator `make up` made, and one line when
no stack answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from milepost_devstack.net import free_ports
from milepost_sim import cli, demo


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
