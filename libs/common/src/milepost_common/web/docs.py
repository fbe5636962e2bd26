"""Swagger UI (``/<app>/docs``) and ReDoc (``/<app>/redoc``) served by each app itself.

FastAPI's own pages load both from a CDN and start Swagger UI with an inline script: a white
page without internet access, and no strict CSP. Here the files come from the vendored npm
packages in ``static/vendor/`` (pinned, with their licences and SHA-256 sums; see the README
there), Swagger UI is started by ``static/swagger-init.js`` reading its settings from the
page's ``data-`` attributes, and both pages allow nothing but the app's own origin.
"""

from __future__ import annotations

import secrets
from html import escape

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from milepost_common.web.pages import KIT_STATIC, html_page

SWAGGER_UI = "vendor/swagger-ui-dist-5.36.0"
REDOC = "vendor/redoc-2.5.4"


def docs_static_path(prefix: str) -> str:
    return f"{prefix}/docs/static"


def swagger_ui_html(title: str, openapi_url: str, static: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} - API docs</title>
<link rel="stylesheet" href="{static}/{SWAGGER_UI}/swagger-ui.css">
<link rel="icon" href="/favicon.ico">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{escape(openapi_url)}"
 data-oauth2-redirect-url="{static}/{SWAGGER_UI}/oauth2-redirect.html"></div>
<script src="{static}/{SWAGGER_UI}/swagger-ui-bundle.js"></script>
<script src="{static}/swagger-init.js"></script>
</body>
</html>
"""


def redoc_html(title: str, openapi_url: str, static: str, nonce: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} - API reference</title>
<link rel="icon" href="/favicon.ico">
</head>
<body>
<div id="redoc" data-openapi-url="{escape(openapi_url)}" data-nonce="{nonce}"></div>
<script src="{static}/{REDOC}/redoc.standalone.js"></script>
<script src="{static}/redoc-init.js"></script>
</body>
</html>
"""


def install_docs(app: FastAPI, prefix: str, title: str, openapi_url: str) -> None:
    """``{prefix}/docs``, ``{prefix}/redoc`` and their files under ``{prefix}/docs/static``."""
    static = docs_static_path(prefix)
    swagger = swagger_ui_html(title, openapi_url, static)

    async def swagger_ui() -> HTMLResponse:
        return html_page(swagger)

    async def redoc_page() -> HTMLResponse:
        # ReDoc styles itself at run time (styled-components <style> elements): they carry
        # this answer's nonce, the only style the CSP lets in besides the app's own files.
        nonce = secrets.token_urlsafe(18)
        return html_page(redoc_html(title, openapi_url, static, nonce), style_nonce=nonce)

    app.add_api_route(f"{prefix}/docs", swagger_ui, include_in_schema=False)
    app.add_api_route(f"{prefix}/redoc", redoc_page, include_in_schema=False)
    app.mount(static, StaticFiles(directory=KIT_STATIC), name=f"{prefix.strip('/')}-docs-static")


def install_index(app: FastAPI, prefix: str, title: str, openapi_url: str) -> None:
    """``{prefix}`` and ``{prefix}/``: a browser is sent to the docs, any other client gets
    where they are in JSON (no operation lives there; a bare 404 would say nothing)."""
    links = {
        "name": title,
        "docs": f"{prefix}/docs",
        "redoc": f"{prefix}/redoc",
        "openapi": openapi_url,
        "health": f"{prefix}/health",
    }

    async def index(request: Request) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(links["docs"], status_code=307)
        return JSONResponse(links)

    for path in (prefix, f"{prefix}/"):
        app.add_api_route(path, index, methods=["GET", "HEAD"], include_in_schema=False)
