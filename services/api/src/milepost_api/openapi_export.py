"""Write the api's OpenAPI document to ``docs/openapi/api.json`` (or the path given).

The committed file is what client generators use; a test fails when it is stale, so run
``uv run python -m milepost_api.openapi_export`` after changing a route or a schema.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from milepost_api.main import create_app
from milepost_api.settings import ApiSettings
from milepost_common.settings import Environment

DEFAULT_PATH = Path(__file__).resolve().parents[4] / "docs" / "openapi" / "api.json"


def document() -> dict[str, Any]:
    """The OpenAPI document of an app built with default settings (nothing is started)."""
    schema: dict[str, Any] = create_app(ApiSettings(env=Environment.LOCAL)).openapi()
    return schema


def render(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render(document()))
    print(f"wrote {path}")  # noqa: T201 - a command's one line of output


if __name__ == "__main__":
    main()
