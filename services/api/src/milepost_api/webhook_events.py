"""The events webhook endpoints receive, documented as the OpenAPI document's ``webhooks``:
one POST per event type with its body model (``domain/webhooks/events.py``) and headers.

No ``from __future__ import annotations`` here: FastAPI reads each receiver's body type from
its signature, which names a model chosen at run time.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header
from pydantic import BaseModel

from milepost_common.domain.webhooks import events as webhook_events
from milepost_common.domain.webhooks.schemas import WebhookEventType

DELIVERY = """\
Sent to every enabled endpoint subscribed to the event type, as a signed `POST` (JSON).
Answer with a `2xx` within 10 s; anything else (or no answer) is retried with exponential
backoff and jitter, 8 attempts in all. Delivery is at least once: deduplicate on `id` (also
in `Milepost-Event-Id`), which is stable — one happening is one event, whatever recomputes
it. Events are not ordered: a retried one can arrive after later ones of the same vehicle
(order by the times in `data`). Verify `Milepost-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
"{t}.{raw body}">` with the endpoint's secret, comparing in constant time; `t` is when this
attempt was signed: refuse one more than 5 minutes from your clock (a replayed request).
`410 Gone` disables the endpoint.
"""

EVENT_ID = "The event's `id`, the same on every attempt."
SIGNATURE = 't=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{raw body}" with the secret>'


def _receiver(model: type[BaseModel]) -> Callable[..., Awaitable[None]]:
    async def receive(
        event: Annotated[model, Body()],  # type: ignore[valid-type]
        milepost_event_id: Annotated[str, Header(description=EVENT_ID)],
        milepost_signature: Annotated[str, Header(description=SIGNATURE)],
    ) -> None:
        """Documentation only: the receiver is the customer's."""

    return receive


def document_webhook_events(app: FastAPI) -> None:
    """Add every ``WebhookEventType`` to ``app.webhooks`` (the OpenAPI ``webhooks`` map)."""
    responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "Any `2xx`: received (the body is ignored)."},
        410: {"description": "Gone: the endpoint is disabled, nothing more is sent."},
    }
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        # What a receiver answers is up to it: not FastAPI's 422 nor a JSON body.
        schema = generate()
        for path_item in schema.get("webhooks", {}).values():
            for operation in path_item.values():
                operation["responses"].pop("422", None)
                operation["responses"]["200"].pop("content", None)
        return schema

    # FastAPI's documented way to extend the schema; it caches what `generate` returns.
    app.openapi = openapi  # type: ignore[method-assign]
    for event_type in WebhookEventType:
        model, when = webhook_events.EVENT_MODELS[event_type]
        app.webhooks.add_api_route(
            event_type.value,
            _receiver(model),
            methods=["POST"],
            summary=when.split(". ")[0].rstrip("."),
            description=f"{when}\n\n{DELIVERY}",
            operation_id=f"webhook_{event_type.value.replace('.', '_')}",
            tags=["webhooks"],
            responses=responses,
        )
