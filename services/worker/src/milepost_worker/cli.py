"""Console scripts: ``milepost-worker``, ``milepost-beat``, ``milepost-worker-ping``.

``milepost-worker [celery worker args]``: prefork worker on the processing, webhooks and
maintenance queues; Prometheus metrics of all children served from the main process on
``MILEPOST_WORKER__METRICS_PORT`` (multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR`` set to a
fresh temporary directory unless given).

``milepost-beat [celery beat args]``: the one beat process.

``milepost-worker-ping [--timeout S]``: exit 0 once a worker consumed a ``system.ping`` sent now.
``milepost-worker-ping --liveness [--max-age S]``: exit 0 when the heartbeat that beat sends
through the workers is fresh (key ``milepost:worker:heartbeat`` in the cache Redis, a JSON
``{"at": unix seconds, "hostname", "queues": {queue: depth}}``); a worker that stopped
consuming fails it. Exit status 1 otherwise, with one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from redis import Redis

QUEUE_ARGS = ("-Q", "--queues")


def _multiproc_dir() -> None:
    """prometheus-client reads this at import: set it before anything imports it."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        Path(configured).mkdir(parents=True, exist_ok=True)
        for stale in Path(configured).glob("*.db"):
            stale.unlink()
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="milepost-worker-metrics-")


def worker(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    _multiproc_dir()
    from milepost_common import tasks as names
    from milepost_worker import metrics
    from milepost_worker.celery_app import celery_app
    from milepost_worker.settings import get_settings

    settings = get_settings()
    if settings.worker.metrics_port:
        metrics.serve(settings.worker.metrics_host, settings.worker.metrics_port)
    if not any(a in QUEUE_ARGS or a.startswith("--queues=") for a in args):
        args = ["--queues", ",".join(names.QUEUES), *args]
    celery_app.worker_main(["worker", "--pool", "prefork", *args])


def beat(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    from milepost_worker.celery_app import celery_app

    celery_app.start(["beat", *args])


def ping(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="milepost-worker-ping", description="Check that a Milepost worker consumes tasks."
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="Seconds to wait (ping).")
    parser.add_argument(
        "--liveness",
        action="store_true",
        help="Check the beat heartbeat instead of sending a ping.",
    )
    parser.add_argument(
        "--max-age",
        type=float,
        default=None,
        help="Oldest acceptable heartbeat in seconds (liveness).",
    )
    args = parser.parse_args(argv)

    from milepost_worker.settings import get_settings

    settings = get_settings()
    with Redis.from_url(
        settings.redis.cache_url, socket_timeout=settings.redis.socket_timeout_s
    ) as cache:
        if args.liveness:
            ok, message = check_liveness(cache, args.max_age or settings.worker.liveness_max_age_s)
        else:
            ok, message = send_ping(cache, args.timeout)
    print(message, file=sys.stdout if ok else sys.stderr)
    raise SystemExit(0 if ok else 1)


def check_liveness(cache: Redis, max_age_s: float) -> tuple[bool, str]:
    import orjson
    from redis.exceptions import RedisError

    from milepost_worker.handlers.maintenance import HEARTBEAT_KEY

    try:
        raw = cache.get(HEARTBEAT_KEY)
    except RedisError as exc:
        return False, f"milepost-worker-ping: redis unavailable ({type(exc).__name__})"
    if raw is None:
        return False, "milepost-worker-ping: no heartbeat yet"
    assert isinstance(raw, bytes)  # noqa: S101 - a sync client returns bytes
    age = time.time() - float(orjson.loads(raw)["at"])
    if age > max_age_s:
        return False, f"milepost-worker-ping: heartbeat is {age:.0f}s old"
    return True, f"worker alive (heartbeat {age:.1f}s ago)"


def send_ping(cache: Redis, timeout_s: float) -> tuple[bool, str]:
    from redis.exceptions import RedisError

    from milepost_common import tasks as names
    from milepost_worker.handlers.maintenance import PING_KEY_PREFIX
    from milepost_worker.settings import get_settings

    settings = get_settings()
    nonce = uuid.uuid4().hex
    publisher = names.Publisher(settings.redis, settings.celery)
    deadline = time.monotonic() + timeout_s
    try:
        publisher.send_blocking(names.SYSTEM_PING, nonce)
    except Exception as exc:  # noqa: BLE001 - reported as one line
        return False, f"milepost-worker-ping: broker unavailable ({type(exc).__name__})"
    finally:
        publisher.close()
    while time.monotonic() < deadline:
        try:
            if cache.get(PING_KEY_PREFIX + nonce) is not None:
                cache.delete(PING_KEY_PREFIX + nonce)
                return True, "worker consumed a ping"
        except RedisError:
            pass
        time.sleep(0.1)
    return False, f"milepost-worker-ping: no worker answered within {timeout_s:g}s"
