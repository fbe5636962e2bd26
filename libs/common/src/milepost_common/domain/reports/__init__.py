"""reports feature: per-vehicle, per-day summaries and CSV exports."""
