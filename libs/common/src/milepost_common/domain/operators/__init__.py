"""operators feature."""
