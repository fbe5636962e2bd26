"""``python -m bench.api`` (what ``make bench-api`` runs): the same as run.py."""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).with_name("run.py")), run_name="__main__")
