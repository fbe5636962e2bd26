"""The JSON API under ``/admin/v1``."""
