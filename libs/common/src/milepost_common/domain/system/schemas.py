"""The system status an operator reads on the dashboard and from ``GET /system/status``."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field


class QueueDepth(BaseModel):
    name: str
    depth: int = Field(description="Messages waiting in the broker (all priorities).")


class WorkerHeartbeat(BaseModel):
    name: str
    last_seen_at: datetime
    age_s: float
    alive: bool = Field(description="Seen within the heartbeat tolerance.")


class IngestRate(BaseModel):
    window_minutes: int
    batches: int
    positions_accepted: int
    positions_rejected: int
    positions_per_minute: float


class ProcessingLag(BaseModel):
    pending_batches: int = Field(description="Received, queued or processing.")
    failed_batches: int
    oldest_pending_received_at: datetime | None
    lag_s: float = Field(description="Age of the oldest batch not processed yet (0 when none).")
    avg_processing_s: float | None = Field(
        description="Mean receive-to-processed time of the window's processed batches."
    )


class Partitions(BaseModel):
    count: int
    first_day: date | None
    last_day: date | None
    days_ahead: int = Field(description="Days covered after today (today + 2 expected).")
    total_bytes: int


class SystemStatus(BaseModel):
    checked_at: datetime
    queues: list[QueueDepth]
    workers: list[WorkerHeartbeat]
    ingest: IngestRate
    processing: ProcessingLag
    database_bytes: int
    positions_partitions: Partitions


class MinutePoint(BaseModel):
    minute: datetime
    positions: int = Field(description="Positions accepted in this minute.")
    batches: int
    lag_s: float | None = Field(description="Mean receive-to-processed time of its batches.")
