"""Fixtures of the simulator's tests: the stand-in ingest (``stand_in.py``)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

# pytest's import mode leaves this directory off sys.path; the shared helpers live here.
sys.path.insert(0, str(Path(__file__).parent))

from stand_in import StandInIngest


@pytest.fixture
def ingest() -> Iterator[type[StandInIngest]]:
    class Handler(StandInIngest):  # this test's own mode
        pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Handler.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield Handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
