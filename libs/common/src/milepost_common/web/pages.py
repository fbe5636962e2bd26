"""HTML the apps serve themselves (API docs, account pages, the landing page): one strict
Content-Security-Policy, no inline script or style, every file from the app's own origin."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi.responses import HTMLResponse

# Only the app's own origin. Images may also be `data:` URIs: Swagger UI's stylesheet draws
# its icons with them (an inline image cannot run code).
SELF_ONLY_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; worker-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
KIT_STATIC = Path(str(files("milepost_common.web") / "static"))


def html_page(
    content: str, *, status_code: int = 200, cache: str = "no-cache", style_nonce: str = ""
) -> HTMLResponse:
    """``content`` as an HTML answer under :data:`SELF_ONLY_CSP`; with ``style_nonce``, the
    page's scripts may also add ``<style>`` elements carrying that nonce."""
    csp = SELF_ONLY_CSP
    if style_nonce:
        csp = csp.replace("style-src 'self'", f"style-src 'self' 'nonce-{style_nonce}'")
    return HTMLResponse(
        content,
        status_code=status_code,
        headers={"Content-Security-Policy": csp, "Cache-Control": cache},
    )
