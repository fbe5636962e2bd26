"""Postgres down → ``503 unavailable`` with ``Retry-After``, never a 500.

Connection failures surface in several shapes (the socket's ``OSError`` at connect, a pool
timeout, asyncpg's errors wrapped by SQLAlchemy once connected); all of them mean "retry
shortly". Nothing is half-written: the transaction that failed is rolled back by Postgres.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc

from milepost_common.errors import AppError, Unavailable
from milepost_common.logging import get_logger

log = get_logger("milepost.ingest")

# SQLSTATE classes: connection exception, insufficient resources, operator intervention
# (shutdown, statement timeout).
_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57"})
_CHECK_VIOLATION = "23514"
_NUMBER_OUT_OF_RANGE = "22003"


class DatabaseUnavailable(Unavailable):
    default_message = "The database is unavailable; retry shortly."


def _sqlstate(exc: BaseException) -> str:
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    return str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached or refuses work for now."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(
            exc, sa_exc.InterfaceError | sa_exc.OperationalError
        ):
            return True
        return _sqlstate(exc)[:2] in _UNAVAILABLE_CLASSES
    if isinstance(exc, sa_exc.TimeoutError | OSError | TimeoutError):
        return True
    # asyncpg's own errors (raised unwrapped while connecting) carry their SQLSTATE too.
    return _sqlstate(exc)[:2] in _UNAVAILABLE_CLASSES


def is_number_out_of_range(exc: BaseException) -> bool:
    """A number the statement's types cannot hold (numeric_value_out_of_range)."""
    return _sqlstate(exc) == _NUMBER_OUT_OF_RANGE


def is_missing_partition(exc: BaseException) -> bool:
    """An insert outside every partition (the cached partition window was stale)."""
    return _sqlstate(exc) == _CHECK_VIOLATION and "no partition" in str(exc)


@contextmanager
def database_errors(on_missing_partition: Callable[[], None] | None = None) -> Iterator[None]:
    """Raise DatabaseUnavailable for connection trouble inside the block; a stale partition
    window is refreshed (``on_missing_partition``) and answered 503 with a short Retry-After,
    so the retry meets the up-to-date filters."""
    try:
        yield
    except AppError:
        raise
    except Exception as exc:
        if is_missing_partition(exc):
            log.warning("partition_window_stale")
            if on_missing_partition is not None:
                on_missing_partition()
            raise DatabaseUnavailable(retry_after_s=1) from exc
        if is_unavailable(exc):
            log.warning("database_unavailable", error=type(exc).__name__)
            raise DatabaseUnavailable() from exc
        raise
