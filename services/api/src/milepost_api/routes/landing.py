"""The front door: a small page at ``/`` linking the docs and the console, and the favicon.

Served by the api app at the root (outside its ``/api`` prefix); the gateway routes exactly
``/`` and ``/favicon.ico`` here and nothing else at the root."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from milepost_api.routes.account import STATIC
from milepost_common.web.pages import html_page

router = APIRouter(include_in_schema=False)
FAVICON = (files("milepost_api") / "static" / "favicon.ico").read_bytes()

LANDING_HTML = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Milepost</title>
<link rel="stylesheet" href="{STATIC}/site.css">
<link rel="icon" href="/favicon.ico">
</head>
<body>
<main class="card wide">
<h1>Milepost</h1>
<p>Fleet telematics: trackers and gateways push positions, Milepost turns them into trips,
stops and alerts, and your apps read them.</p>
<h2>APIs</h2>
<ul class="links">
<li><a href="/api/docs">Public API</a> for fleet owners' apps, dashboards and scripts
 (<a href="/api/redoc">reference</a>, <a href="/api/openapi.json">OpenAPI</a>)</li>
<li><a href="/ingest/docs">Ingest API</a> for telematics gateways, trackers and OsmAnd
 clients (<a href="/ingest/redoc">reference</a>, <a href="/ingest/openapi.json">OpenAPI</a>)</li>
<li><a href="/admin/docs">Admin API</a> for platform operators
 (<a href="/admin/redoc">reference</a>, <a href="/admin/openapi.json">OpenAPI</a>)</li>
</ul>
<h2>Operators</h2>
<ul class="links">
<li><a href="/admin/">Console</a>: organizations, users, devices, API keys, ingest batches,
 the audit log and the system's status</li>
</ul>
</main>
</body>
</html>
"""


@router.get("/")
async def landing_page() -> HTMLResponse:
    return html_page(LANDING_HTML)


@router.get("/favicon.ico")
async def favicon() -> Response:
    return Response(
        FAVICON, media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"}
    )
