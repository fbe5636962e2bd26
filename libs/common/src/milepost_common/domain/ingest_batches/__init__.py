"""ingest batches feature."""
