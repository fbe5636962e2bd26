"""Pages for the holder of an account (not operators): accept an invitation, choose a new
password from a reset link. The token is in the link's fragment, which browsers never send:
``static/account.js`` reads it and posts it with the password to the JSON routes of
``routes/auth.py``. The same pages work through the gateway and on the api's own port."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from milepost_common.web.pages import html_page

INVITATION_PAGE = "/api/account/invitation"
PASSWORD_RESET_PAGE = "/api/account/password-reset"  # noqa: S105 - a path
STATIC = "/api/static"

router = APIRouter(prefix="/account", include_in_schema=False)


def account_html(*, title: str, intro: str, endpoint: str, button: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Milepost</title>
<link rel="stylesheet" href="{STATIC}/site.css">
<link rel="icon" href="/favicon.ico">
<script src="{STATIC}/account.js" defer></script>
</head>
<body>
<main class="card">
<h1>{escape(title)}</h1>
<form id="account-form" data-endpoint="{escape(endpoint)}" hidden>
<p>{escape(intro)}</p>
<label for="password">New password <span class="muted">(at least 12 characters)</span></label>
<input id="password" name="password" type="password" autocomplete="new-password"
 minlength="12" maxlength="128" required>
<label for="confirm">Repeat the password</label>
<input id="confirm" name="confirm" type="password" autocomplete="new-password"
 minlength="12" maxlength="128" required>
<p id="form-error" class="error" role="alert" hidden></p>
<button type="submit">{escape(button)}</button>
</form>
<section id="link-error" class="error-box" role="alert" hidden>
<h2>This link cannot be used</h2>
<p id="link-error-text"></p>
<p>Ask the person who sent it (your organization's owner, or Milepost's support) for a new
one: links work once, for 48 hours.</p>
</section>
<section id="done" role="status" hidden>
<h2>Done: your password is set</h2>
<p>Now log in with your app, with your email address and this password.</p>
</section>
<noscript><p class="error">This page needs JavaScript to read the link.</p></noscript>
</main>
</body>
</html>
"""


INVITATION_HTML = account_html(
    title="Accept your invitation",
    intro="You were invited to an organization on Milepost. Choose the password of your account.",
    endpoint="/api/v1/auth/invitations/accept",
    button="Set password",
)
PASSWORD_RESET_HTML = account_html(
    title="Choose a new password",
    intro="Choose a new password for your Milepost account. Your apps will have to log in again.",
    endpoint="/api/v1/auth/password-reset",
    button="Set new password",
)


@router.get("/invitation")
async def invitation_page() -> HTMLResponse:
    return html_page(INVITATION_HTML)


@router.get("/password-reset")
async def password_reset_page() -> HTMLResponse:
    return html_page(PASSWORD_RESET_HTML)
