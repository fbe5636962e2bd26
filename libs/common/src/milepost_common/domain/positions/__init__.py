"""positions feature."""
