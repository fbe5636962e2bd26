"""The one-time links an operator hands to a person (invitation, password reset).

The token travels in the fragment: a browser opening the link never sends it, so it reaches
no access log, proxy or Referer header; the page reads it and posts it in a request body.
An organization's user gets the api's account pages (the settings' paths); an operator gets
the console's own (``console/accounts.py``), which redeem operators' links only.
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


OPERATOR_INVITE_PATH = "/admin/invitation"
OPERATOR_RESET_PATH = "/admin/password-reset"


def operator_invite_url(settings: AdminSettings, token: str) -> str:
    return _link(settings, OPERATOR_INVITE_PATH, token)


def operator_reset_url(settings: AdminSettings, token: str) -> str:
    return _link(settings, OPERATOR_RESET_PATH, token)
