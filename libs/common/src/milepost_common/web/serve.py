"""Run one app with uvicorn: one server process per app instance (metrics stay per process)."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from milepost_common.settings import HttpSettings


def run(app_factory: Callable[[], FastAPI], http: HttpSettings) -> None:
    uvicorn.run(
        app_factory(),
        host=http.host,
        port=http.port,
        workers=1,
        access_log=False,  # the request middleware logs route templates, never raw paths
        proxy_headers=True,
        forwarded_allow_ips=http.forwarded_allow_ips,
        server_header=False,
        log_config=None,
    )
