"""Work sent to the worker after the request's transaction has committed.

The rows are the durable record (a batch ``received``, a delivery ``pending`` and due);
these sends only make the worker start at once. Handed to FastAPI's background tasks,
which run after the response, so after the commit; when a send fails, the worker's beat
sweeps find the rows anyway.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from milepost_common.db import Database, unit_of_work
from milepost_common.domain.ingest_batches import service as ingest_service
from milepost_common.tasks import INGEST_BATCHES_PROCESS, WEBHOOKS_DELIVER, Publisher


async def process_batches(
    db: Database, publisher: Publisher, batch_ids: Sequence[uuid.UUID]
) -> None:
    for batch_id in batch_ids:
        if await publisher.send(INGEST_BATCHES_PROCESS, str(batch_id)):
            async with unit_of_work(db) as session:
                await ingest_service.mark_queued(session, batch_id)


async def deliver_webhook(publisher: Publisher, delivery_id: uuid.UUID) -> None:
    await publisher.send(WEBHOOKS_DELIVER, str(delivery_id))
