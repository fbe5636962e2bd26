"""Console scripts: ``milepost-worker``, ``milepost-beat``, ``milepost-worker-ping``.

``milepost-worker [celery worker args]``: prefork worker on the processing and maintenance
queues; ``milepost-worker -Q webhooks`` is the webhook delivery group, which must run too (and
the only one that needs ``MILEPOST_AUTH__SECRETS_KEY``: in production it refuses to start
without it).
Prometheus metrics of all children served from the main process on
``MILEPOST_WORKER__METRICS_PORT`` (multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR`` set to a
fresh temporary directory unless given; one directory per worker process, never shared).

``milepost-beat [celery beat args]``: the one beat process.

``milepost-worker-ping [--timeout S] [--queue Q]``: exit 0 once a worker consumed a
``system.ping`` sent now (to the maintenance queue, or to ``Q``).
``milepost-worker-ping --liveness [--node NAME] [--timeout S]``: exit 0 while this node
(``celery@%h`` unless named as the worker's ``--hostname`` named it, ``%h`` this host's name)
consumes: a ping sent now to its own queue, or, every child busy, a task lately
(``milepost_worker.health.check_node`` says how). Exit status 1 otherwise, with one line on
stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
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


def consumed_queues(args: list[str]) -> set[str] | None:
    """The queues named by celery's -Q/--queues arguments (None: none named)."""
    named: list[str] = []
    for i, arg in enumerate(args):
        if arg in QUEUE_ARGS and i + 1 < len(args):
            named.append(args[i + 1])
        elif arg.startswith("--queues="):
            named.append(arg.removeprefix("--queues="))
        elif arg.startswith("-Q") and len(arg) > 2:
            named.append(arg[2:])
    if not named:
        return None
    return {queue.strip() for value in named for queue in value.split(",") if queue.strip()}


def worker(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    _multiproc_dir()
    from milepost_common.tasks import QUEUE_WEBHOOKS
    from milepost_worker import metrics
    from milepost_worker.celery_app import PROCESSING_QUEUES, celery_app
    from milepost_worker.settings import get_settings

    settings = get_settings()
    queues = consumed_queues(args)
    if queues is None:
        args = ["--queues", ",".join(PROCESSING_QUEUES), *args]
    elif QUEUE_WEBHOOKS in queues and settings.auth.secrets_key is None:
        # Only production leaves it unset (elsewhere the development key is filled in).
        print(
            "milepost: invalid configuration: MILEPOST_AUTH__SECRETS_KEY: required in"
            " production by the workers of the webhooks queue (they sign deliveries)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if settings.worker.metrics_port:
        metrics.serve(settings.worker.metrics_host, settings.worker.metrics_port)
    # Mingle and gossip only add broker chatter here: revocations are not used.
    celery_app.worker_main(
        ["worker", "--pool", "prefork", "--without-mingle", "--without-gossip", *args]
    )


def beat(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    from milepost_worker.celery_app import celery_app

    celery_app.start(["beat", *args])


def ping_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="milepost-worker-ping", description="Check that a Milepost worker consumes tasks."
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="Seconds to wait (ping).")
    parser.add_argument(
        "--queue", default=None, help="Send the ping to this queue (e.g. webhooks)."
    )
    parser.add_argument(
        "--liveness", action="store_true", help="Check one node (this one) through its own queue."
    )
    parser.add_argument(
        "--node",
        default="celery@%h",
        help="The node --liveness checks, as the worker's --hostname named it (%%h: this host).",
    )
    return parser


def ping(argv: list[str] | None = None) -> None:
    args = ping_parser().parse_args(argv)

    from celery.utils.nodenames import host_format

    from milepost_common.tasks import Publisher
    from milepost_worker import health
    from milepost_worker.settings import get_settings

    settings = get_settings()
    timeout_s = settings.redis.socket_timeout_s
    publisher = Publisher(settings.redis, settings.celery)
    with (
        Redis.from_url(settings.redis.cache_url, socket_timeout=timeout_s) as cache,
        Redis.from_url(settings.redis.url, socket_timeout=timeout_s) as broker,
    ):
        try:
            if args.liveness:
                ok, message = health.check_node(
                    publisher,
                    cache,
                    broker,
                    host_format(args.node),
                    timeout_s=args.timeout,
                    longest_task_s=settings.longest_task_s,
                    # Its record is rewritten every interval: three missed, the process hangs.
                    silent_after_s=3 * settings.worker.heartbeat_interval_s,
                )
            else:
                ok, message = health.send_ping(publisher, cache, args.timeout, queue=args.queue)
        finally:
            publisher.close()
    if ok:
        print(message)
    else:
        print(f"milepost-worker-ping: {message}", file=sys.stderr)
    raise SystemExit(0 if ok else 1)
