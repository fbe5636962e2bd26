"""trips feature."""
