"""geofences feature."""
