"""system feature: the platform's health as operators see it."""
