"""Errors of the webhooks feature: endpoints, deliveries, and the receiver address check."""

from __future__ import annotations

from milepost_common.errors import Conflict, LimitReached, NotFound, ValidationFailed

# The setting that lets receivers be private (``WebhooksSettings.allow_private``).
ALLOW_PRIVATE_SETTING = "MILEPOST_WEBHOOKS__ALLOW_PRIVATE"


class WebhookNotFound(NotFound):
    default_message = "Webhook not found."


class WebhookLimitReached(LimitReached):
    noun = "webhooks"


class WebhookReceiverPrivate(ValidationFailed):
    default_message = (
        "The webhook URL points at a private or loopback address, which this server never"
        f" delivers to. Use a public receiver, or set {ALLOW_PRIVATE_SETTING}=true on the api"
        " and the worker to allow private receivers (local development)."
    )


class DeliveryNotFound(NotFound):
    default_message = "Webhook delivery not found."


class DeliveryNotDead(Conflict):
    default_message = "Only a dead delivery can be retried."


class EndpointDisabled(Conflict):
    default_message = (
        "The delivery's endpoint is disabled: it would be given up unsent. The organization"
        " enables it again first (PATCH /api/v1/webhooks/{id} with enabled true)."
    )


class AddressRefused(Exception):
    """The receiver resolves to a private, loopback or otherwise non-public address (or
    does not resolve): nothing is sent, and the attempt records it as its error."""
