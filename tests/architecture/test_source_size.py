"""No source file over 500 lines (DECISIONS.md, "Order and size"): every package, bench/,
tools/, deploy/ and the tests included. Exempt: the migrations' versions (one per schema
change, written once) and vendored third-party files; tool state and build output hold no
source."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 500
SOURCE_SUFFIXES = frozenset({".py", ".js", ".css", ".html", ".lua", ".sh"})
NOT_SOURCE = frozenset({"node_modules", "__pycache__", "vendor", "test-artifacts", "dist", "build"})


def exempt(directories: tuple[str, ...]) -> bool:
    """Tool state (``.venv``, ``.git``, caches), build output, vendored files, and the
    migrations' versions."""
    if any(part.startswith(".") or part in NOT_SOURCE for part in directories):
        return True
    return ("migrations", "versions") in pairwise(directories)


def source_files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if path.suffix in SOURCE_SUFFIXES and path.is_file() and not exempt(relative.parts[:-1]):
            yield relative


def line_count(path: Path) -> int:
    with path.open("rb") as source:
        return sum(1 for _ in source)


def test_the_walk_finds_the_packages_bench_and_tests() -> None:
    found = {path.as_posix() for path in source_files(ROOT)}
    assert "libs/common/src/milepost_common/domain/devices/service.py" in found
    assert "bench/ingest/run.py" in found
    assert "tests/architecture/test_source_size.py" in found
    assert not any("/migrations/versions/" in path for path in found)


def test_no_source_file_is_over_500_lines() -> None:
    too_long = {
        path.as_posix(): lines
        for path in source_files(ROOT)
        if (lines := line_count(ROOT / path)) > MAX_LINES
    }
    assert too_long == {}, f"split these by topic (at most {MAX_LINES} lines each): {too_long}"
