"""Fixtures of the worker's tests (real Celery worker processes live in ``celery_worker.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

# pytest's import mode leaves this directory off sys.path; the shared helpers live here.
sys.path.insert(0, str(Path(__file__).parent))
