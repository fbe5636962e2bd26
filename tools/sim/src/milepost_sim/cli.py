"""`milepost-sim run|backfill|demo|demo-stop`: the fleet through the gateway (see README).

The gateway and the state directory are those of `make up` (the same MILEPOST_* variables).
The API key comes from MILEPOST_SIM_API_KEY, else from the demo's state file. Exit status 0
on success, 1 with one message on stderr otherwise; SIGTERM or Ctrl-C ends a run cleanly.
`run` and `backfill` fail when the ingest took no fix (every one rejected, or no push
answered before the retries ran out), `backfill` also when any batch was never delivered;
fixes rejected or undelivered beside accepted ones are summarised in one line.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from types import FrameType

import httpx

from milepost_devstack.errors import ConfigError
from milepost_sim import demo
from milepost_sim.fleet import Fleet, Schedule, fleet_specs
from milepost_sim.push import Pusher, PushRefused, PushStats
from milepost_sim.runner import Progress, backfill, day_start, run_live, yesterday

# Working hours of a backfilled day (seconds after midnight UTC): out at 06:30-07:30.
WORKDAY = Schedule(park_s=(600, 2400), hours=(6.5 * 3600, 19 * 3600))


def _fleet_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", help="base URL (default: make up's gateway)")
    parser.add_argument("--vehicles", type=int, default=10, help="fleet size (default 10)")
    parser.add_argument("--prefix", default="demo-", help="unique_id prefix (default demo-)")
    parser.add_argument("--seed", type=int, default=1, help="the fleet's seed (default 1)")
    parser.add_argument("--format", choices=["json", "ndjson"], default="json")
    parser.add_argument("--gzip", action="store_true", help="gzip batch bodies")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="milepost-sim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="push the fleet's fixes live")
    _fleet_options(run)
    run.add_argument("--rate", type=float, default=2.0, help="fixes per second (fleet)")
    run.add_argument("--duration", type=float, default=60.0, help="seconds; 0 runs until stopped")
    past = commands.add_parser("backfill", help="write a past day of history at once")
    _fleet_options(past)
    past.add_argument("--date", help="the day, YYYY-MM-DD (UTC; default yesterday)")
    past.add_argument("--moving-interval", type=float, default=10.0, help="s between fixes")
    past.add_argument("--parked-interval", type=float, default=300.0, help="s while parked")
    past.add_argument("--batch-size", type=int, default=5000)
    start = commands.add_parser(
        "demo",
        help="set up the demo organization, start its fleet (a fleet running with other"
        " arguments is restarted with these)",
    )
    start.add_argument("--vehicles", type=int, default=10)
    start.add_argument("--seed", type=int, default=1)
    start.add_argument("--rate", type=float, default=2.0, help="fixes per second (fleet)")
    start.add_argument(
        "--prefix", default="demo-", help="unique_id prefix (default demo-): another when taken"
    )
    commands.add_parser("demo-stop", help="stop the demo's fleet")
    return parser


def _api_key(settings: demo.DemoSettings) -> str:
    key = os.environ.get(demo.API_KEY_VARIABLE, "").strip()
    key = key or demo.DemoState.load(settings.state_file).api_key
    if not key:
        raise demo.DemoError(f"no API key: set {demo.API_KEY_VARIABLE} or run `make demo`")
    return key


def _pusher(
    args: argparse.Namespace, settings: demo.DemoSettings, stop: threading.Event | None = None
) -> Pusher:
    gateway = args.gateway or settings.gateway_url
    # Waiting out a Retry-After ends early when the run is asked to stop.
    wait = stop.wait if stop is not None else time.sleep
    return Pusher(gateway, _api_key(settings), fmt=args.format, compress=args.gzip, sleep=wait)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def _finish(stats: PushStats, *, lost_fails: bool = False) -> int:
    """The exit status of a run or a backfill: 1 when the ingest took no fix (or, with
    ``lost_fails``, when any was never delivered), with one line on stderr saying what
    became of the fixes; that line is printed too when some were taken and others not."""
    # Duplicates were taken as well: already stored, as after a backfill run twice.
    taken = stats.accepted + stats.duplicates + stats.osmand
    codes = ", ".join(f"{code}: {count}" for code, count in stats.codes.most_common())
    lost = (
        f"{stats.rejected} rejected{f' ({codes})' if codes else ''}, {stats.failed} never "
        "delivered (no answer, or still deferred after every retry)"
    )
    if taken == 0:
        print(f"milepost-sim: no fix was accepted: {stats.sent} sent, {lost}", file=sys.stderr)
        return 1
    if stats.rejected or stats.failed:
        print(f"milepost-sim: {taken} of {stats.sent} fixes accepted; {lost}", file=sys.stderr)
    return 1 if lost_fails and stats.failed else 0


def _run(args: argparse.Namespace, settings: demo.DemoSettings) -> int:
    epoch = day_start(datetime.now(UTC))  # the same trajectories after a restart
    fleet = Fleet(fleet_specs(args.vehicles, args.prefix), args.seed, epoch)
    stop = _stop_on_signals()
    with _pusher(args, settings, stop) as pusher:
        result = run_live(
            pusher, fleet, rate=args.rate, duration_s=args.duration, progress=Progress(), stop=stop
        )
    return _finish(result.stats)


def _backfill(args: argparse.Namespace, settings: demo.DemoSettings) -> int:
    day = datetime.strptime(args.date, "%Y-%m-%d").replace(tzinfo=UTC) if args.date else yesterday()
    fleet = Fleet(fleet_specs(args.vehicles, args.prefix), args.seed, day, WORKDAY)
    with _pusher(args, settings) as pusher:
        result = backfill(
            pusher,
            fleet,
            day,
            min(day + timedelta(days=1), datetime.now(UTC)),
            moving_s=args.moving_interval,
            parked_s=args.parked_interval,
            batch_size=args.batch_size,
            progress=Progress(every_s=5.0),
        )
    # A day with a batch missing is incomplete, even when the others were stored.
    return _finish(result.stats, lost_fails=True)


def _demo(args: argparse.Namespace) -> int:
    settings = demo.settings_from_environ(
        operator=True, vehicles=args.vehicles, seed=args.seed, rate=args.rate, prefix=args.prefix
    )
    state = demo.setup(settings)
    pid, what = demo.start(settings, state)
    print(demo.describe(settings, state, pid, what))
    return 0


def _demo_stop() -> int:
    pid = demo.stop(demo.settings_from_environ())
    print(f"demo fleet stopped (pid {pid})" if pid else "the demo fleet was not running")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "demo-stop":
            return _demo_stop()
        settings = demo.settings_from_environ()
        return _run(args, settings) if args.command == "run" else _backfill(args, settings)
    except (demo.DemoError, PushRefused, ConfigError) as exc:
        print(f"milepost-sim: {exc}", file=sys.stderr)
        return 1
    except httpx.TransportError as exc:  # nothing answers (no stack, another port)
        where = getattr(args, "gateway", None) or demo.settings_from_environ().gateway_url
        print(
            f"milepost-sim: no Milepost gateway answers at {where} ({type(exc).__name__}): run"
            " `make up` first, with the MILEPOST_GATEWAY_PORT and MILEPOST_STATE_DIR it used",
            file=sys.stderr,
        )
        return 1
