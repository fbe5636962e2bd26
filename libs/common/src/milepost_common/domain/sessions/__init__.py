"""Sessions: logins, token pairs, refresh rotation, one-time tokens."""
