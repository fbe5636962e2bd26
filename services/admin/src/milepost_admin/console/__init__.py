"""The browser console under ``/admin/``: server-rendered pages (Jinja2 + htmx) whose
forms call the domain services, and SQLAdmin's read-only model views."""
