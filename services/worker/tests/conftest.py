"""Fixtures of the worker's tests: a WorkerContext on the test transaction, an organization
with a device, and helpers shared with the real-worker tests (``worker_support``)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from milepost_common.crypto import SecretBox
from milepost_common.db import Database
from milepost_worker.runtime import WorkerContext
from milepost_worker.settings import WorkerSettings

# pytest's import mode leaves this directory off sys.path; the shared helpers live here.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
async def ctx(
    database: Database, redis: Redis, settings_factory: Callable[..., Any]
) -> AsyncIterator[WorkerContext]:
    """Handlers' context on the test's transaction (rolled back) and the test's cache Redis."""
    settings: WorkerSettings = settings_factory(
        WorkerSettings,
        worker={"webhook_backoff_base_s": 1.0},
        webhooks={"allow_private": True},
    )
    key = settings.auth.secrets_key
    assert key is not None
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
        yield WorkerContext(settings, database, redis, SecretBox(key.get_secret_value()), http)
