"""Prometheus metrics of ingest (served with the kit's on the app's /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

FIXES_ACCEPTED = Counter(
    "milepost_ingest_fixes_accepted_total", "Fixes newly stored, by source.", ["source"]
)
FIXES_REJECTED = Counter(
    "milepost_ingest_fixes_rejected_total",
    "Fixes rejected, by source and item code.",
    ["source", "code"],
)
FIXES_DUPLICATE = Counter(
    "milepost_ingest_fixes_duplicate_total",
    "Fixes repeated within their batch or already stored, by source.",
    ["source"],
)
BATCH_SIZE = Histogram(
    "milepost_ingest_batch_items",
    "Items per batch, by source.",
    ["source"],
    buckets=(1, 2, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000),
)
BATCH_LATENCY = Histogram(
    "milepost_ingest_batch_duration_seconds",
    "From the parsed body to the committed batch (validation, storage, commit), by source.",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCHES_UNQUEUED = Counter(
    "milepost_ingest_batches_unqueued_total",
    "Batches committed but not published (broker down): left `received` for the reconciler.",
)
