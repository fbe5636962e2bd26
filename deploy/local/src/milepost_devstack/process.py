"""Background processes tracked by pidfiles, so a later command can find and stop them.

Each process is started in its own session (so it outlives the command that started it and
its children share its process group) with stdout and stderr appended to `<logs>/<name>.log`
(moved to `<name>.log.1` first when over LOG_ROTATE_BYTES: one older generation is kept).
Its pidfile records the pid, the kernel's start time of that pid and the boot it ran in: a
process is only ever considered ours, and signalled, when all still match, so a reused pid
is never touched. Children left in its process group after it exited are stopped only in the
boot that started it (after a reboot the group's id may be any other session's).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from milepost_devstack.errors import ComponentError, StackError

# Unit of the start times in /proc/<pid>/stat.
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A log larger than this when its process starts replaces `<name>.log.1` (rotate_log).
LOG_ROTATE_BYTES = 50 * 1024 * 1024
# This boot's id: pids and start times are only comparable within one boot.
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@dataclass(frozen=True)
class ProcessSpec:
    """What to run for one named component."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path


@dataclass(frozen=True)
class ProcessRecord:
    """The identity of a started process, as stored in its pidfile."""

    pid: int
    start_ticks: int
    argv: tuple[str, ...]
    # "" in pidfiles written before boots were recorded.
    boot_id: str = _BOOT_ID


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of `pid`, or None when there is no such pid."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ProcessManager:
    """Starts, finds and stops the named processes whose pidfiles live in `run_dir`."""

    def __init__(self, run_dir: Path, log_dir: Path) -> None:
        self.run_dir = run_dir
        self.log_dir = log_dir
        # Handles of the processes this interpreter started: waited for when they stop, so
        # a long-lived caller (the e2e tests) leaves no zombies behind.
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _open_log(self, name: str) -> int:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        rotate_log(self.log_path(name))
        return _open_append(self.log_path(name))

    def start(self, spec: ProcessSpec) -> ProcessRecord:
        """Start `spec` in the background. Raises StackError when it is already running."""
        if self.running(spec.name) is not None:
            raise StackError(f"{spec.name} is already running")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_fd = self._open_log(spec.name)
        try:
            child = subprocess.Popen(
                list(spec.argv),
                cwd=spec.cwd,
                env=dict(spec.env),
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            os.close(log_fd)
        self._children[child.pid] = child
        stat = _proc_stat(child.pid)
        record = ProcessRecord(child.pid, stat[1] if stat else 0, tuple(spec.argv))
        self._write_pidfile(spec.name, record)
        return record

    def _write_pidfile(self, name: str, record: ProcessRecord) -> None:
        payload = {
            "pid": record.pid,
            "start_ticks": record.start_ticks,
            "argv": record.argv,
            "boot_id": record.boot_id,
        }
        temporary = self._pidfile(name).with_suffix(".tmp")
        temporary.write_text(json.dumps(payload))
        temporary.replace(self._pidfile(name))

    def _read_pidfile(self, name: str) -> ProcessRecord | None:
        try:
            payload = json.loads(self._pidfile(name).read_text())
            return ProcessRecord(
                int(payload["pid"]),
                int(payload["start_ticks"]),
                tuple(payload["argv"]),
                str(payload.get("boot_id", "")),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            # A torn or foreign file identifies nothing: treat the process as not running.
            return None

    def _is_ours(self, record: ProcessRecord) -> bool:
        """Whether `record.pid` is still the very process we started and has not exited."""
        stat = _proc_stat(record.pid)
        if stat is None or stat[1] != record.start_ticks or record.boot_id not in ("", _BOOT_ID):
            return False
        if stat[0] == "Z":
            self._reap(record.pid)
            return False
        return True

    def _reap(self, pid: int) -> None:
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            del self._children[pid]

    def running(self, name: str) -> ProcessRecord | None:
        """The record of `name` when its process is alive and still ours, else None."""
        record = self._read_pidfile(name)
        if record is None or not self._is_ours(record):
            return None
        return record

    def has_run_for(self, name: str, seconds: float) -> bool:
        """Whether `name` is running and started at least `seconds` ago."""
        record = self.running(name)
        if record is None:
            return False
        uptime_ticks = float(Path("/proc/uptime").read_text().split()[0]) * _CLOCK_TICKS
        return (uptime_ticks - record.start_ticks) / _CLOCK_TICKS >= seconds

    def stop(self, names: Sequence[str], timeout: float = 20.0) -> list[str]:
        """Stop the named processes and their children; return the names that were running.

        SIGTERM to each process group first (all at once, so shutdowns overlap), SIGKILL to
        any group still alive after `timeout`. A group whose leader exited is ours only in
        the boot that started it: the kernel never hands out a pid that is still some
        process group's id, but after a reboot that id may be any session's.
        """
        groups: dict[str, int] = {}
        for name in names:
            record = self._read_pidfile(name)
            if record is None:
                continue
            # _is_ours first: it reaps our exited leader, so that its pid is gone.
            if self._is_ours(record) or (
                record.boot_id == _BOOT_ID
                and _proc_stat(record.pid) is None
                and _group_exists(record.pid)
            ):
                groups[name] = record.pid
                self._signal_group(record.pid, signal.SIGTERM)
            else:
                self._pidfile(name).unlink(missing_ok=True)
        deadline = time.monotonic() + timeout
        for name, pgid in groups.items():
            if not self._wait_group_gone(pgid, deadline):
                self._signal_group(pgid, signal.SIGKILL)
                if not self._wait_group_gone(pgid, time.monotonic() + 5):
                    raise ComponentError(f"{name} (process group {pgid}) survived SIGKILL")
            self._pidfile(name).unlink(missing_ok=True)
        return list(groups)

    @staticmethod
    def _signal_group(pgid: int, signum: signal.Signals) -> None:
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            return

    def _wait_group_gone(self, pgid: int, deadline: float) -> bool:
        while True:
            self._reap(pgid)
            if not _group_exists(pgid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The last `lines` lines of `name`'s log (empty when there is none)."""
        return tail(self.log_path(name), lines)


def rotate_log(path: Path) -> None:
    """Move the log at `path` to `<path>.1` (replacing it) when over LOG_ROTATE_BYTES; call
    it only while nothing writes to `path`, so that nothing keeps writing to the old one."""
    try:
        if path.stat().st_size > LOG_ROTATE_BYTES:
            path.replace(path.with_name(f"{path.name}.1"))
    except FileNotFoundError:
        return


def _open_append(path: Path) -> int:
    """A write descriptor appending to `path`, created readable by its owner and group only."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)


def append_text(path: Path, text: str) -> None:
    """Append `text` to the log at `path` (the output of one-shot commands)."""
    fd = _open_append(path)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def tail(path: Path, lines: int) -> str:
    """The last `lines` lines of the text file at `path`, or "" when it does not exist."""
    if lines <= 0:
        return ""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def processes_in(directory: Path) -> list[str]:
    """`pid cmdline` of every process whose working directory or command line is in
    `directory`. Every process of a stack has one or the other: the apps, the worker and its
    children run in the state directory; Postgres in its data directory; Redis and Traefik
    name their configuration files there. What a stopped stack must have left: nothing."""
    found = []
    needle = str(directory)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if cwd.startswith(needle) or needle in cmdline:
            found.append(f"{proc.name} {cmdline.strip()}")
    return found
