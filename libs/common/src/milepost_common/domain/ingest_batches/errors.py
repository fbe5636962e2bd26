"""Errors of the ingest batch feature, with the DESIGN.md codes their statuses carry."""

from __future__ import annotations

from milepost_common.errors import Conflict, NotFound


class BatchNotFound(NotFound):
    default_message = "Batch not found."


class IdempotencyKeyReused(Conflict):
    default_message = "This Idempotency-Key was already used with another request body."


class BatchBusy(Conflict):
    default_message = "The batch is being processed; replay it once processing has ended."
