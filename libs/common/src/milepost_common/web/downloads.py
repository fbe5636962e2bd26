"""Long downloads (the CSV and NDJSON exports): each holds a database connection until its
client has read the last row, so a process streams only a few at once (one more answers 503
with ``Retry-After``), and one whose client takes no chunk for a while is cut off, its
connection given back. A client that stops reading (a paused download, a zero TCP window)
would otherwise hold a connection of the pool every other request needs, for ever."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from milepost_common.errors import Unavailable
from milepost_common.logging import get_logger

# A refused download is asked again after this long: turns free up as downloads end.
RETRY_AFTER_S = 5

log = get_logger("milepost.web.downloads")


@dataclass(slots=True)
class Turns:
    """How many downloads the process streams at once, against a limit read each time one
    more is asked for (a setting)."""

    taken: int = 0

    def take(self, limit: int) -> bool:
        if self.taken >= limit:
            return False
        self.taken += 1
        return True

    def give_back(self) -> None:
        self.taken -= 1


class Download(StreamingResponse):
    """A download's stream, holding one of the process's turns until it ends however it
    ends: sent, failed, its client gone, or its client too slow (a chunk not taken within
    ``send_timeout_s`` cuts it off: the rows' transaction and connection go back)."""

    def __init__(
        self,
        content: AsyncIterator[Any],
        *,
        turns: Turns,
        send_timeout_s: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(content, **kwargs)
        self._send_timeout_s = send_timeout_s
        # The turn goes back once, when the answer ends, or when the response is dropped
        # unsent (the request failed after the route returned it: its commit, a middleware).
        self._give_back = weakref.finalize(self, turns.give_back)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cut_off = False

        async def send_in_time(message: Message) -> None:
            nonlocal cut_off
            try:
                async with asyncio.timeout(self._send_timeout_s):
                    await send(message)
            except TimeoutError:
                cut_off = True
                raise

        try:
            await super().__call__(scope, receive, send_in_time)
        except TimeoutError:
            if not cut_off:
                raise
            # The server closes the connection: the answer was not completed.
            log.warning("download_cut_off", waited_s=self._send_timeout_s)
        finally:
            self._give_back()
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()


def download(
    content: AsyncIterator[Any],
    *,
    turns: Turns,
    at_once: int,
    send_timeout_s: float,
    media_type: str,
    filename: str,
) -> Download:
    """``content`` as an attachment named ``filename``. Raises Unavailable (503) while the
    process streams ``at_once`` downloads already; take it last, once the request is known
    to be good (its errors come first)."""
    if not turns.take(at_once):
        raise Unavailable(
            f"This server is streaming as many downloads as it may at once ({at_once}); try"
            " again in a few seconds.",
            retry_after_s=RETRY_AFTER_S,
        )
    return Download(
        content,
        turns=turns,
        send_timeout_s=send_timeout_s,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
