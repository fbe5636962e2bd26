"""`milepost-stack up`'s closing lines: the console, the first operator's login, the next step."""

from __future__ import annotations

from pathlib import Path

from milepost_devstack.cli import first_steps
from milepost_devstack.stack import Operator

CONSOLE = "http://127.0.0.1:8080/admin/"
SECRETS = Path("/var/lib/milepost/secrets.env")


class TestFirstSteps:
    def test_a_generated_password_is_shown_with_the_login(self) -> None:
        lines = first_steps(CONSOLE, "ops@x", Operator("ops@x", "s3cret"), SECRETS)

        text = "\n".join(lines)
        assert f"Console: {CONSOLE}" in text
        assert "email    ops@x" in text
        assert "password s3cret" in text
        assert lines[-1].startswith("Next: make demo")

    def test_later_runs_name_the_login_and_where_its_password_is_kept(self) -> None:
        lines = first_steps(CONSOLE, "ops@x", None, SECRETS)

        text = "\n".join(lines)
        assert "email    ops@x" in text
        assert f"MILEPOST_BOOTSTRAP_PASSWORD in {SECRETS}" in text
        assert lines[-1].startswith("Next: make demo")
