"""devices feature."""
