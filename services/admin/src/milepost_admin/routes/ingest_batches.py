"""Ingest batches of every organization: find, inspect the rejected items, replay."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Query

from milepost_admin import enqueue
from milepost_admin.deps import AUTH_ERRORS, OperatorUser, SupportUser
from milepost_common.domain.ingest_batches import operators as batch_operators
from milepost_common.domain.ingest_batches.errors import BatchBusy, BatchNotFound
from milepost_common.domain.ingest_batches.models import IngestBatch
from milepost_common.domain.ingest_batches.schemas import (
    BatchDetail,
    BatchesReplayed,
    BatchFilters,
    BatchReplayed,
    BatchSummary,
)
from milepost_common.domain.organizations import service as org_service
from milepost_common.domain.organizations.errors import OrganizationNotFound
from milepost_common.pagination import Page
from milepost_common.web.deps import DatabaseDep, PublisherDep, SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1", tags=["ingest-batches"])


async def load_batch(batch_id: uuid.UUID, session: SessionDep) -> IngestBatch:
    return await batch_operators.get_batch_for_operator(session, batch_id)


BatchDep = Annotated[IngestBatch, Depends(load_batch)]


@router.get(
    "/ingest-batches",
    summary="List ingest batches (filter by organization, status, time)",
    responses=error_responses(*AUTH_ERRORS),
)
async def list_batches(
    _user: SupportUser, filters: Annotated[BatchFilters, Query()], session: SessionDep
) -> Page[BatchSummary]:
    page = await batch_operators.list_batches(session, filters)
    return Page(
        items=[BatchSummary.model_validate(b) for b in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/ingest-batches/{batch_id}",
    summary="Read a batch with its rejected items",
    responses=error_responses(*AUTH_ERRORS, BatchNotFound),
)
async def get_batch(_user: SupportUser, batch: BatchDep) -> BatchDetail:
    return BatchDetail.model_validate(batch)


@router.post(
    "/ingest-batches/{batch_id}/replay",
    status_code=202,
    summary="Replay a batch: re-validate its rejected items, store the valid, process again",
    responses=error_responses(*AUTH_ERRORS, BatchNotFound, BatchBusy),
)
async def replay_batch(
    user: OperatorUser,
    batch: BatchDep,
    session: SessionDep,
    db: DatabaseDep,
    publisher: PublisherDep,
    background: BackgroundTasks,
) -> BatchReplayed:
    replayed = await batch_operators.replay_batch(session, user, batch)
    background.add_task(enqueue.process_batches, db, publisher, [replayed.id])
    return BatchReplayed.model_validate(replayed)


@router.post(
    "/organizations/{org_id}/ingest-batches/replay-failed",
    status_code=202,
    summary="Replay every failed batch of an organization (up to 500 per call)",
    responses=error_responses(*AUTH_ERRORS, OrganizationNotFound),
)
async def replay_failed_batches(
    user: OperatorUser,
    org_id: uuid.UUID,
    session: SessionDep,
    db: DatabaseDep,
    publisher: PublisherDep,
    background: BackgroundTasks,
) -> BatchesReplayed:
    org = await org_service.get_organization(session, org_id)
    replayed = await batch_operators.replay_failed_batches(session, user, org.id)
    background.add_task(enqueue.process_batches, db, publisher, [b.id for b in replayed])
    return BatchesReplayed(items=replayed)
