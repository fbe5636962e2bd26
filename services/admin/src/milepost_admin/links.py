"""The one-time links an operator hands to a person (invitation, password reset).

The token travels in the fragment: a browser opening the link never sends it, so it reaches
no access log, proxy or Referer header; the page reads it and posts it in a request body.
"""

from __future__ import annotations

from urllib.parse import quote

from milepost_admin.settings import AdminSettings


def _link(settings: AdminSettings, path: str, token: str) -> str:
    return f"{settings.admin.public_url.rstrip('/')}{path}#token={quote(token)}"


def invite_url(settings: AdminSettings, token: str) -> str:
    return _link(settings, settings.admin.invite_path, token)


def reset_url(settings: AdminSettings, token: str) -> str:
    return _link(settings, settings.admin.reset_path, token)
