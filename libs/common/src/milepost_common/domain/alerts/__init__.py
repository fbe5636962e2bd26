"""alerts feature."""
