"""`milepost-worker`'s arguments: which queues a process consumes, and the secrets key that only
the webhooks group needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from milepost_worker.cli import consumed_queues


@pytest.mark.parametrize(
    ("args", "queues"),
    [
        ([], None),
        (["--concurrency", "2"], None),
        (["-Q", "webhooks"], {"webhooks"}),
        (["--queues", "webhooks", "--concurrency", "8"], {"webhooks"}),
        (["--queues=processing,maintenance"], {"processing", "maintenance"}),
        (["-Qwebhooks"], {"webhooks"}),
    ],
)
def test_consumed_queues(args: list[str], queues: set[str] | None) -> None:
    assert consumed_queues(args) == queues


def test_the_webhooks_group_refuses_to_start_in_production_without_the_secrets_key(
    tmp_path: Path,
) -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MILEPOST_") and name not in ("DATABASE_URL", "REDIS_URL")
    }
    env |= {
        "MILEPOST_ENV": "production",
        "MILEPOST_WORKER__METRICS_PORT": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from milepost_worker.cli import worker; worker(['-Q', 'webhooks'])",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "milepost: invalid configuration: MILEPOST_AUTH__SECRETS_KEY: required in production"
        )
    )
