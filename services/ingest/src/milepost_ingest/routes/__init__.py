"""The ingest app's routers."""
