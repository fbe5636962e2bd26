import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# pytest's import mode leaves this directory off sys.path; the shared helpers live here.
sys.path.insert(0, str(Path(__file__).parent))

import pytest
from kubernetes_support import OVERLAYS

from milepost_devstack.config import Ports, StackConfig
from milepost_devstack.process import processes_in
from milepost_devstack.stack import Stack


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A stack's state directory; at the end its stack is stopped and nothing may be left.

    Under /tmp directly: pytest's own temp root is private to root, and Postgres runs as
    the `postgres` user when the suite runs as root."""
    path = Path(tempfile.mkdtemp(prefix="milepost-stack-test-"))
    yield path
    Stack(StackConfig(path, Ports())).down()
    leftovers = processes_in(path)
    shutil.rmtree(path, ignore_errors=True)
    assert leftovers == [], "processes of the stack survived `down`"


@pytest.fixture
def real_stack(state_dir: Path) -> Iterator[Stack]:
    """A stack on free ports, stopped at the end by this same object (which reaps its
    children: another one would wait for their zombies)."""
    stack = Stack(StackConfig(state_dir, Ports.free(), durable=False))
    yield stack
    stack.down()
