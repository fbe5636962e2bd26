"""Write the api's OpenAPI document to ``docs/openapi/api.json`` (or the path given).

The committed file is what client generators use; a test fails when it is stale, so run
``make openapi`` (or ``uv run python -m milepost_api.openapi_export``) after changing a route
or a schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from milepost_api.main import create_app
from milepost_api.settings import ApiSettings
from milepost_common.settings import Environment
from milepost_common.web.openapi import export

DEFAULT_PATH = Path(__file__).resolve().parents[4] / "docs" / "openapi" / "api.json"


def document() -> dict[str, Any]:
    """The OpenAPI document of an app built with default settings (nothing is started)."""
    schema: dict[str, Any] = create_app(ApiSettings(env=Environment.LOCAL)).openapi()
    return schema


if __name__ == "__main__":
    export(document, DEFAULT_PATH)
