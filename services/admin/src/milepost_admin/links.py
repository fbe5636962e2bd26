"""The one-time links an operator hands to a person (invitation, password reset)."""

from __future__ import annotations

from urllib.parse import quote

from milepost_admin.settings import AdminSettings


def invite_url(settings: AdminSettings, token: str) -> str:
    return f"{settings.admin.public_url.rstrip('/')}{settings.admin.invite_path}{quote(token)}"


def reset_url(settings: AdminSettings, token: str) -> str:
    return f"{settings.admin.public_url.rstrip('/')}{settings.admin.reset_path}{quote(token)}"
