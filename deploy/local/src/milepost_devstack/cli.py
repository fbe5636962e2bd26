"""`milepost-stack up|down|status|logs`: the whole stack on this machine (see stack.py).

Configured by the environment only (MILEPOST_STATE_DIR, the port variables of config.py,
MILEPOST_BOOTSTRAP_EMAIL / _PASSWORD). Exit status 0 on success, 1 with one message on
stderr otherwise; `status` exits 1 when anything is stopped or unhealthy. Running
components keep their ports: change port variables between `down` and `up`. `up` and
`down` take turns: a second one waits for the first, saying so (state.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from milepost_devstack.config import StackConfig
from milepost_devstack.errors import StackError
from milepost_devstack.process import tail
from milepost_devstack.stack import APPS, Operator, Stack


def _progress() -> Callable[[str], None]:
    """A reporter printing each step with the seconds since the command started."""
    started = time.monotonic()

    def report(message: str) -> None:
        elapsed = time.monotonic() - started
        print(f"milepost-stack: [{elapsed:5.1f}s] {message}", file=sys.stderr, flush=True)

    return report


def _up(stack: Stack, timeout: float) -> int:
    started = time.monotonic()
    operator = stack.up(timeout=timeout)
    ports = stack.config.ports
    print(f"Milepost is up ({time.monotonic() - started:.1f} s); state in {stack.config.state_dir}")
    print(f"  gateway  {stack.gateway_url}  (/api, /admin, /ingest; docs at /<app>/docs)")
    for app in APPS:
        print(f"  {app:<7}  {stack.app_url(app)}  (metrics at /metrics)")
    print(f"  worker   metrics at http://127.0.0.1:{ports.worker_metrics}/metrics")
    print(f"  webhooks metrics at http://127.0.0.1:{ports.worker_webhooks_metrics}/metrics")
    print(f"  traefik  metrics at http://127.0.0.1:{ports.gateway_metrics}/metrics")
    email = stack.operator_email(stack.credentials())
    for line in first_steps(stack.console_url, email, operator, stack.config.secrets_file):
        print(line)
    return 0


def first_steps(
    console_url: str, email: str, operator: Operator | None, secrets_file: Path
) -> list[str]:
    """What `up` ends with: the console, the first operator's login and the next command.
    The password only when `up` just generated it (`operator`); else where it is kept."""
    lines = [
        f"Console: {console_url}  (sign in as the first operator, a superadmin)",
        f"  email    {email}",
    ]
    if operator is not None:
        lines.append(f"  password {operator.password}  (shown once; kept in {secrets_file})")
    else:
        lines.append(
            "  password the one printed when it was created (MILEPOST_BOOTSTRAP_PASSWORD in "
            f"{secrets_file}, unless you gave your own)"
        )
    lines.append("Next: make demo  (a demo organization with a moving fleet on the console's map)")
    return lines


def _down(stack: Stack) -> int:
    stopped = stack.down()
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _status(stack: Stack) -> int:
    statuses = stack.status()
    for status in statuses:
        state = "healthy" if status.healthy else ("UNHEALTHY" if status.pid else "stopped")
        pid = str(status.pid) if status.pid else "-"
        print(f"{status.name:<9} {state:<9} pid {pid:<8} {status.detail}")
    return 0 if all(status.healthy for status in statuses) else 1


def _log_files(stack: Stack, components: list[str]) -> list[Path]:
    files = sorted(stack.config.log_dir.glob("*.log"))
    if components:
        files = [path for path in files if path.stem in components]
    return files


def _logs(stack: Stack, components: list[str], lines: int, follow: bool) -> int:
    files = _log_files(stack, components)
    if not files:
        print(f"no logs in {stack.config.log_dir}", file=sys.stderr)
        return 1
    if lines > 0:
        for path in files:
            print(f"==> {path.stem} <==")
            print(tail(path, lines))
    if follow:
        _follow(files)
    return 0


def _follow(files: list[Path]) -> None:
    """Print lines appended to `files`, prefixed with the component, until interrupted."""
    offsets = {path: path.stat().st_size for path in files}
    width = max(len(path.stem) for path in files)
    try:
        while True:
            for path, offset in offsets.items():
                offsets[path] = _print_new_lines(path, offset, f"{path.stem:<{width}} | ")
            time.sleep(0.5)
    except KeyboardInterrupt:
        return


def _print_new_lines(path: Path, offset: int, prefix: str) -> int:
    """Print the complete lines of `path` after byte `offset`; return the new offset."""
    size = path.stat().st_size
    if size < offset:  # truncated or replaced: start over
        offset = 0
    with path.open("rb") as handle:
        handle.seek(offset)
        complete, newline, _ = handle.read(size - offset).rpartition(b"\n")
    for line in complete.decode("utf-8", "replace").splitlines():
        print(f"{prefix}{line}", flush=True)
    return offset + len(complete) + len(newline)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="milepost-stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start everything not running; wait until healthy")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds (default 180)")
    commands.add_parser("down", help="stop every process the stack started")
    commands.add_parser("status", help="each component's pid and health")
    logs = commands.add_parser("logs", help="the last lines of each log")
    logs.add_argument("components", nargs="*", help="only these (e.g. api worker)")
    logs.add_argument("-n", "--lines", type=int, default=30)
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        # Only `up` binds ports; the others must work whatever the port variables say.
        config = StackConfig.from_environ(distinct_ports=args.command == "up")
        stack = Stack(config, report=_progress())
        if args.command == "up":
            return _up(stack, args.timeout)
        if args.command == "down":
            return _down(stack)
        if args.command == "status":
            return _status(stack)
        return _logs(stack, args.components, args.lines, args.follow)
    except StackError as error:
        print(f"milepost-stack: {error}", file=sys.stderr)
        return 1
